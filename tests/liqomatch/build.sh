#!/usr/bin/env bash
# Builds liqomatch (Liqo v1.2's clusterSelector matcher, k8s.io/component-helpers v0.35.2) once
# into a cache directory: a second call with the same inputs only prints the binary's path.
#
# Usage: build.sh -> prints the binary's path, and nothing else, on stdout
#                    (default <repo>/target/liqomatch/liqomatch, or $LIQOMATCH_BIN_DIR/liqomatch).
# Env:   GO  the go command (default: go on PATH, else /usr/local/go/bin/go)
# Rebuilt when the stamp (a hash of go.mod, go.sum, main.go and the Go version) changes. Cold:
# about 40 s on 2 cores, and a few MB of Go modules (k8s.io/api, apimachinery, component-helpers).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
dir=${LIQOMATCH_BIN_DIR:-$repo/target/liqomatch}
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
stamp_want="$(cd "$here" && cat go.mod go.sum main.go | sha256sum | cut -c1-16) $("$go" env GOVERSION)"
fresh() { [ -x "$dir/liqomatch" ] && [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp_want" ]; }
if fresh; then echo "$dir/liqomatch"; exit 0; fi
mkdir -p "$dir"
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  flock 9
  if fresh; then echo "$dir/liqomatch"; exit 0; fi
fi
echo "liqomatch/build.sh: building Liqo v1.2's selector matcher into $dir" >&2
start=$(date +%s)
(cd "$here" && CGO_ENABLED=0 "$go" build -trimpath -o "$dir/liqomatch.new" .) >&2
mv -f "$dir/liqomatch.new" "$dir/liqomatch"
echo "$stamp_want" > "$dir/.stamp"
echo "liqomatch/build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$dir/liqomatch"
