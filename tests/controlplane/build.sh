#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from Go modules into a cache
# directory, once: a second call with the same inputs only prints the directory.
#
# Usage: build.sh [VERSION]  -> prints the bin directory, and nothing else, on stdout.
#                               Progress and errors go to stderr.
#   Without VERSION: the default release (versions.env, go.mod, go.sum here), into
#   <repo>/target/controlplane/bin or $CONTROLPLANE_BIN.
#   VERSION names a directory here holding that release's own versions.env, controlplane.mod and
#   controlplane.sum (e.g. v1.30, the oldest release the chart claims): cmd/*/main.go are built
#   against them (go build -modfile), but where VERSION/cmd/NAME/main.go exists (an entry point
#   that differs in that release), into <repo>/target/controlplane/<KUBERNETES_VERSION>/bin or
#   $CONTROLPLANE_BIN_<VERSION> (upper case, dots as underscores: CONTROLPLANE_BIN_V1_30).
# Env:   GO                the go command (default: go on PATH, else /usr/local/go/bin/go)
#        GO_BUILD_JOBS     go build -p (default 2, the machine's cores)
#
# The binaries are rebuilt when the stamp file ($bin/.stamp) does not match: it holds the
# Kubernetes version and a hash of versions.env, go.mod, go.sum, cmd/*/main.go, the build flags
# and the Go version. Concurrent calls are serialised with flock; binaries are built into a
# temporary directory and renamed into place, so a running control plane is never disturbed
# (tests/lib/build-cache.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/build-cache.sh
. "$repo/tests/lib/build-cache.sh"
version=${1:-}
if [ -z "$version" ]; then
  src=""
  # shellcheck source=versions.env
  . "$here/versions.env"
  bin=${CONTROLPLANE_BIN:-$repo/target/controlplane/bin}
else
  case $version in */* | .* | "") version="" ;; esac
  [ -n "$version" ] && [ -f "$here/$version/versions.env" ] && [ -f "$here/$version/controlplane.mod" ] || {
    echo "build.sh: no release '${1}' here (a directory with versions.env and controlplane.mod: $(cd "$here" && ls -d v*/ 2>/dev/null | tr -d / | tr '\n' ' '))" >&2
    exit 2
  }
  src="$version/"
  # shellcheck source=v1.30/versions.env
  . "$here/$version/versions.env"
  var=CONTROLPLANE_BIN_$(echo "$version" | tr 'a-z.-' 'A-Z__')
  bin=${!var:-$repo/target/controlplane/$KUBERNETES_VERSION/bin}
fi
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
# What to build: cmd/*, or for another release its own entry point where it has one.
if [ -z "$src" ]; then
  modfile=() packages=(./cmd/...)
else
  modfile=(-modfile "${src}controlplane.mod") packages=()
  for b in "${binaries[@]}"; do
    if [ -f "$here/${src}cmd/$b/main.go" ]; then packages+=("./${src}cmd/$b"); else packages+=("./cmd/$b"); fi
  done
fi
# What the binaries are built from; any change rebuilds.
stamp_want="$KUBERNETES_VERSION $(
  cd "$here"
  shopt -s nullglob
  if [ -z "$src" ]; then
    files=(versions.env go.mod go.sum cmd/*/main.go)
  else
    files=("${src}versions.env" "${src}controlplane.mod" "${src}controlplane.sum" cmd/*/main.go "${src}"cmd/*/main.go)
  fi
  { cat "${files[@]}"; echo "CGO_ENABLED=0 ${build_flags[*]}"; } | sha256sum | cut -c1-16
) $("$go" env GOVERSION)"

if cache_fresh "$bin" .stamp "$stamp_want" "${binaries[@]}"; then echo "$bin"; exit 0; fi
cache_lock "$bin" build.sh
if cache_fresh "$bin" .stamp "$stamp_want" "${binaries[@]}"; then echo "$bin"; exit 0; fi

cache_tmp "$bin"
rm -f "$bin/.stamp"
echo "build.sh: building ${binaries[*]} $KUBERNETES_VERSION into $bin (a cold build takes several minutes)" >&2
start=$(date +%s)
# One go build for all four: the packages they share compile once. -p 2 matches the 2-core machines.
(cd "$here" && CGO_ENABLED=0 "$go" build ${modfile[@]+"${modfile[@]}"} -p "${GO_BUILD_JOBS:-2}" "${build_flags[@]}" -o "$cache_tmpdir/" "${packages[@]}") >&2
cache_install "$bin" .stamp "$stamp_want" "${binaries[@]}" || { echo "build.sh: a binary is missing" >&2; exit 1; }
echo "build.sh: built $KUBERNETES_VERSION in $(( $(date +%s) - start ))s" >&2
echo "$bin"
