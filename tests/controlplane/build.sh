#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules into a cache
# directory, once: a second call with the same inputs only prints the directory.
#
# Usage: build.sh   -> prints the bin directory, and nothing else, on stdout
#                      (default <repo>/target/controlplane/bin, or $CONTROLPLANE_BIN).
#                      Progress and errors go to stderr.
# Env:   CONTROLPLANE_BIN  where the binaries live
#        GO                the go command (default: go on PATH, else /usr/local/go/bin/go)
#        GO_BUILD_JOBS     go build -p (default 2, the machine's cores)
#
# The binaries are rebuilt when the stamp file ($bin/.stamp) does not match: it holds the
# Kubernetes version and a hash of versions.env, go.mod, go.sum, cmd/*/main.go, the build flags
# and the Go version. Concurrent calls are serialised with flock; binaries are built into a
# temporary directory and renamed into place, so a running control plane is never disturbed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
bin=${CONTROLPLANE_BIN:-$repo/target/controlplane/bin}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
binaries=(etcd kube-apiserver kube-controller-manager kubectl)

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || command -v "$go" >/dev/null || {
  echo "build.sh: Go is needed to build the test control plane (go not on PATH)" >&2; exit 1
}

major=${KUBERNETES_VERSION#v}; minor=${major#*.}; major=${major%%.*}; minor=${minor%%.*}
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
build_flags=(-trimpath -ldflags "$ldflags")

# What the binaries are built from; any change rebuilds.
stamp_want="$KUBERNETES_VERSION $(
  cd "$here"
  { cat versions.env go.mod go.sum cmd/*/main.go; echo "CGO_ENABLED=0 ${build_flags[*]}"; } | sha256sum | cut -c1-16
) $("$go" env GOVERSION)"

fresh() {
  [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp_want" ] || return 1
  local b
  for b in "${binaries[@]}"; do [ -x "$bin/$b" ] || return 1; done
}

if fresh; then echo "$bin"; exit 0; fi

mkdir -p "$bin"
if command -v flock >/dev/null; then
  exec 9>"$bin/.lock"
  if ! flock -n 9; then
    echo "build.sh: another build.sh is building into $bin; waiting for it" >&2
    flock 9
  fi
  if fresh; then echo "$bin"; exit 0; fi
fi

tmp=$(mktemp -d "$bin/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
rm -f "$bin/.stamp"
echo "build.sh: building ${binaries[*]} $KUBERNETES_VERSION into $bin (a cold build takes several minutes)" >&2
start=$(date +%s)
# One go build for all four: the packages they share compile once. -p 2 matches the 2-core machines.
(cd "$here" && CGO_ENABLED=0 "$go" build -p "${GO_BUILD_JOBS:-2}" "${build_flags[@]}" -o "$tmp/" ./cmd/...) >&2
for b in "${binaries[@]}"; do
  [ -x "$tmp/$b" ] || { echo "build.sh: $b was not built" >&2; exit 1; }
done
# rename(2) within one directory: a binary that is running keeps its old inode.
for b in "${binaries[@]}"; do mv -f "$tmp/$b" "$bin/$b"; done
echo "$stamp_want" > "$bin/.stamp"
echo "build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
