#!/usr/bin/env bash
# Builds liqomatch (Liqo v1.2's clusterSelector matcher, k8s.io/component-helpers v0.35.2) once
# into a cache directory: a second call with the same inputs only prints the binary's path.
#
# Usage: build.sh -> prints the binary's path, and nothing else, on stdout
#                    (default <repo>/target/liqomatch/liqomatch, or $LIQOMATCH_BIN_DIR/liqomatch).
# Env:   GO  the go command (default: go on PATH, else /usr/local/go/bin/go)
# Rebuilt when the stamp (a hash of go.mod, go.sum, main.go, the build flags and the Go version)
# changes; concurrent calls are serialised with flock, and the binary is built aside and renamed
# into place (tests/go/build-cache.sh). Cold: about 40 s on 2 cores, and a few MB of Go modules
# (k8s.io/api, apimachinery, component-helpers).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=../build-cache.sh
. "$here/../build-cache.sh"
dir=${LIQOMATCH_BIN_DIR:-$repo/target/liqomatch}
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || command -v "$go" >/dev/null || {
  echo "build.sh: Go is needed to build Liqo's selector matcher (go not on PATH)" >&2; exit 1
}
build_flags=(-trimpath)
stamp_want="$(cd "$here" && { cat go.mod go.sum main.go; echo "CGO_ENABLED=0 ${build_flags[*]}"; } | sha256sum | cut -c1-16) $("$go" env GOVERSION)"

if cache_fresh "$dir" .stamp "$stamp_want" liqomatch; then echo "$dir/liqomatch"; exit 0; fi
cache_lock "$dir" build.sh
if cache_fresh "$dir" .stamp "$stamp_want" liqomatch; then echo "$dir/liqomatch"; exit 0; fi
cache_tmp "$dir"
rm -f "$dir/.stamp"
echo "build.sh: building Liqo v1.2's selector matcher into $dir" >&2
start=$(date +%s)
(cd "$here" && CGO_ENABLED=0 "$go" build "${build_flags[@]}" -o "$cache_tmpdir/liqomatch" .) >&2
cache_install "$dir" .stamp "$stamp_want" liqomatch || { echo "build.sh: liqomatch was not built" >&2; exit 1; }
echo "build.sh: built liqomatch in $(( $(date +%s) - start ))s" >&2
echo "$dir/liqomatch"
