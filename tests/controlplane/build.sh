#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules into a cache
# directory, once: a second call with the same versions and go.sum only prints the directory.
# Usage: build.sh            -> prints the bin directory (default <repo>/target/controlplane/bin,
#                               or $CONTROLPLANE_BIN). Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
bin=${CONTROLPLANE_BIN:-$repo/target/controlplane/bin}
binaries=(etcd kube-apiserver kube-controller-manager kubectl)

# The stamp names what the binaries were built from; any change rebuilds.
stamp_want="$KUBERNETES_VERSION $(cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/main.go "$0" | sha256sum | cut -c1-16) $(go env GOVERSION)"
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp_want" ]; then
  ok=1
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || ok=0; done
  if [ "$ok" = 1 ]; then echo "$bin"; exit 0; fi
fi

mkdir -p "$bin"
major=${KUBERNETES_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
echo "build.sh: building ${binaries[*]} $KUBERNETES_VERSION into $bin (a cold build takes several minutes)" >&2
start=$(date +%s)
cd "$here"
# One go build for all four: shared packages compile once. -p 2 matches the 2-core machines.
CGO_ENABLED=0 go build -p "${GO_BUILD_JOBS:-2}" -trimpath -ldflags "$ldflags" -o "$bin/" ./cmd/... >&2
for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || { echo "build.sh: $b was not built" >&2; exit 1; }; done
echo "$stamp_want" > "$bin/.stamp"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
