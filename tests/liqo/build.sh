#!/usr/bin/env bash
# Builds Liqo v1.2's own NamespaceOffloading webhook, offloading controllers and the NamespaceMap
# copying of its crd-replicator (cmd/*: our mains around Liqo's unmodified packages, from
# github.com/liqotech/liqo@v1.2.0 on the Go module proxy), and liqoctl (liqoctl/: a module of its
# own), into a cache directory, once: a second call with the same inputs only prints the directory.
#
# Usage: build.sh   -> prints the bin directory, and nothing else, on stdout
#                      (default <repo>/target/liqo/bin, or $LIQO_BIN). Progress goes to stderr.
# Env:   LIQO_BIN           where the binaries live
#        LIQO_SKIP_LIQOCTL  1: do not build liqoctl (about 5 minutes and 1.7 GB of Go build cache
#                           cold); the tests that need it are skipped
#        GO                 the go command (default: go on PATH, else /usr/local/go/bin/go)
#        GO_BUILD_JOBS      go build -p (default 2, the machine's cores)
#
# Each part is rebuilt when its stamp ($bin/.stamp, $bin/.stamp-liqoctl) does not match a hash of
# its go.mod, go.sum, mains, build flags and the Go version. Concurrent calls are serialised with
# flock; binaries are built into a temporary directory and renamed into place, so a running
# process is never disturbed (tests/lib/build-cache.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/build-cache.sh
. "$repo/tests/lib/build-cache.sh"
bin=${LIQO_BIN:-$repo/target/liqo/bin}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
binaries=(liqo-webhook liqo-controllers liqo-replicator)
skip_liqoctl=${LIQO_SKIP_LIQOCTL:-0}

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || command -v "$go" >/dev/null || {
  echo "build.sh: Go is needed to build Liqo for the tests (go not on PATH)" >&2; exit 1
}
build_flags=(-trimpath -ldflags "-s -w")
goversion=$("$go" env GOVERSION)

stamp_main="$(cd "$here" && { cat go.mod go.sum cmd/*/main.go; echo "CGO_ENABLED=0 ${build_flags[*]}"; } | sha256sum | cut -c1-16) $goversion"
stamp_ctl="$(cd "$here/liqoctl" && { cat go.mod go.sum; echo "CGO_ENABLED=0 ${build_flags[*]}"; } | sha256sum | cut -c1-16) $goversion"

fresh_main() { cache_fresh "$bin" .stamp "$stamp_main" "${binaries[@]}"; }
fresh_ctl() { [ "$skip_liqoctl" = 1 ] || cache_fresh "$bin" .stamp-liqoctl "$stamp_ctl" liqoctl; }

if fresh_main && fresh_ctl; then echo "$bin"; exit 0; fi
cache_lock "$bin" build.sh
if fresh_main && fresh_ctl; then echo "$bin"; exit 0; fi
cache_tmp "$bin"
tmp=$cache_tmpdir

if ! fresh_main; then
  rm -f "$bin/.stamp"
  echo "build.sh: building ${binaries[*]} from github.com/liqotech/liqo@v1.2.0 into $bin (cold: about 2 minutes)" >&2
  start=$(date +%s)
  # One go build for all three: the packages they share compile once.
  (cd "$here" && CGO_ENABLED=0 "$go" build -p "${GO_BUILD_JOBS:-2}" "${build_flags[@]}" -o "$tmp/" ./cmd/...) >&2
  cache_install "$bin" .stamp "$stamp_main" "${binaries[@]}" || { echo "build.sh: a binary is missing" >&2; exit 1; }
  echo "build.sh: built ${binaries[*]} in $(( $(date +%s) - start ))s" >&2
fi

if ! fresh_ctl; then
  rm -f "$bin/.stamp-liqoctl"
  echo "build.sh: building liqoctl v1.2.0 into $bin (cold: about 5 minutes; LIQO_SKIP_LIQOCTL=1 skips it)" >&2
  start=$(date +%s)
  (cd "$here/liqoctl" && CGO_ENABLED=0 "$go" build -p "${GO_BUILD_JOBS:-2}" "${build_flags[@]}" -o "$tmp/liqoctl" github.com/liqotech/liqo/cmd/liqoctl) >&2
  cache_install "$bin" .stamp-liqoctl "$stamp_ctl" liqoctl || { echo "build.sh: liqoctl was not built" >&2; exit 1; }
  echo "build.sh: built liqoctl in $(( $(date +%s) - start ))s" >&2
fi
echo "$bin"
