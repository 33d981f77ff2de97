#!/usr/bin/env bash
# Builds celcost (the API server's CEL code, k8s.io/apiserver v0.37.2, measuring the cost of the
# ValidatingAdmissionPolicy that `offloading-webhook policy` prints) once into a cache directory:
# a second call with the same inputs only prints the binary's path.
#
# Usage: build.sh -> prints the binary's path, and nothing else, on stdout
#                    (default <repo>/target/celcost/celcost, or $CELCOST_BIN_DIR/celcost).
# Env:   GO  the go command (default: go on PATH, else /usr/local/go/bin/go)
# Rebuilt when the stamp (a hash of go.mod, go.sum, main.go and the Go version) changes. Cold:
# about a minute on 2 cores; it shares the Go modules of tests/go/controlplane (k8s.io/apiserver).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
dir=${CELCOST_BIN_DIR:-$repo/target/celcost}
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
stamp_want="$(cd "$here" && cat go.mod go.sum main.go | sha256sum | cut -c1-16) $("$go" env GOVERSION)"
fresh() { [ -x "$dir/celcost" ] && [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp_want" ]; }
if fresh; then echo "$dir/celcost"; exit 0; fi
mkdir -p "$dir"
if command -v flock >/dev/null; then
  exec 9>"$dir/.lock"
  flock 9
  if fresh; then echo "$dir/celcost"; exit 0; fi
fi
echo "celcost/build.sh: building the CEL cost meter into $dir" >&2
start=$(date +%s)
(cd "$here" && CGO_ENABLED=0 "$go" build -trimpath -o "$dir/celcost.new" .) >&2
mv -f "$dir/celcost.new" "$dir/celcost"
echo "$stamp_want" > "$dir/.stamp"
echo "celcost/build.sh: built in $(( $(date +%s) - start ))s" >&2
echo "$dir/celcost"
