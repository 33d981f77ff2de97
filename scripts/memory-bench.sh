#!/usr/bin/env bash
# Memory under hostile reviews: one release `serve` answers, one at a time, the largest reviews a
# client can send (a CREATE whose one `In` lists 100 000 bad values, ~0.9 MB; CREATEs of 3 MiB - 1
# KiB made of many bad values, of one huge value, of many terms; an UPDATE with two 1.5 MiB objects)
# on both webhooks; after each, the process's peak RSS (VmHWM) and the answer's size, and the
# annotation the mutating webhook would set. Each kind of review goes to a fresh process (validate,
# then mutate), so each peak is that review's own. Baseline: the peak after a typical review,
# measured first in the same run. Then many clients at once (16, 48, 64), each posting the 3 MiB
# review whose decoding takes the most memory, all at the same moment, each count to a fresh
# process, over HTTP/1.1 (the API server's way to a `service:`) and over h2: the peak RSS, and
# what the clients saw (answers, HTTP 429 where the budget of bytes in flight had no room, and any
# other status: 408 when a body took longer than 10 s to arrive, as h2 uploads do on a busy machine).
# Usage: scripts/memory-bench.sh [CONCURRENCY...]   (default 16 48 64; targets: peak RSS < 64 MiB
#        at any concurrency, answer < 64 KiB, annotation < 1 KiB). Exits 1 when a peak under the
#        default budget of bytes in flight reaches 64 MiB.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --quiet --release --bin offloading-webhook
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/offloading-webhook certs --out "$work" --ip 127.0.0.1 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wh=$(port); probe=$(port)
pid=
concurrency=("${@:-16 48 64}"); read -ra concurrency <<< "${concurrency[*]}"
start() { # [SERVE FLAGS...]: a fresh process per review kind: its peak RSS is that review's
  target/release/offloading-webhook serve "$@" --no-cluster --cluster-id b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a \
    --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" --webhook-addr "127.0.0.1:$wh" \
    --probe-addr "127.0.0.1:$probe" --metrics-addr "127.0.0.1:$(port)" --shutdown-delay-seconds 0 2>>"$work/webhook.log" &
  pid=$!
  until curl -sf "http://127.0.0.1:$probe/readyz" >/dev/null; do sleep 0.1; done
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; }
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
LIMIT = 3 * 1024 * 1024 - 1024
def review(spec, op="CREATE", old=None):
    obj = {"apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
           "metadata": {"name": "offloading", "namespace": "web"}, "spec": spec}
    req = {"uid": "mem-1", "kind": {"group": "offloading.liqo.io", "version": "v1alpha1", "kind": "NamespaceOffloading"},
           "resource": {"group": "offloading.liqo.io", "version": "v1alpha1", "resource": "namespaceoffloadings"},
           "operation": op, "userInfo": {"username": "admin"}, "name": "offloading", "namespace": "web", "object": obj}
    if old is not None:
        req["oldObject"] = dict(obj, spec=old)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
def sel(values=None, terms=None):
    if terms is not None:
        return {"clusterSelector": {"nodeSelectorTerms": terms}}
    return {"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "region", "operator": "In", "values": values}]}]}}
def fill(make, lo=1, hi=2_000_000):
    # the largest n whose review stays under LIMIT bytes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(json.dumps(make(mid))) <= LIMIT: lo = mid
        else: hi = mid - 1
    return make(lo)
cases = {
    "typical": review({"clusterSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "topology.liqo.io/region", "operator": "In", "values": ["eu-west"]}]}]}}),
    "100k-bad-values": review(sel([f"bad value {i}" for i in range(100_000)])),
    "3MiB-bad-values": fill(lambda n: review(sel([f"b {i}" for i in range(n)]))),
    "3MiB-one-value": fill(lambda n: review(sel(["x" * n]))),
    "3MiB-terms": fill(lambda n: review(sel(terms=[{"matchExpressions": [{"key": "k", "operator": "Equals"}]}] * n))),
    "3MiB-update": fill(lambda n: review(sel([f"b {i}" for i in range(n)]), "UPDATE", sel([f"c {i}" for i in range(n)]))),
}
for name, r in cases.items():
    with open(f"{work}/{name}.json", "w") as f:
        json.dump(r, f)
PY

hwm() { awk '/VmHWM/ {print $2}' "/proc/$pid/status"; }
printf '%-18s %-9s %10s %12s %12s %14s\n' review endpoint "body KiB" "answer B" "annot. B" "peak RSS MiB"
for name in typical 100k-bad-values 3MiB-bad-values 3MiB-one-value 3MiB-terms 3MiB-update; do
  start
  for ep in validate mutate; do
    curl -s --cacert "$work/ca.crt" -H 'content-type: application/json' --data-binary "@$work/$name.json" \
      -o "$work/answer.json" "https://127.0.0.1:$wh/$ep/namespace-offloading"
    annot=$(python3 -c '
import json, sys, base64
a = json.load(open(sys.argv[1]))["response"]
p = a.get("patch")
if not p: print(0); sys.exit()
ops = json.loads(base64.b64decode(p))
v = ops[0]["value"]
print(len(v if isinstance(v, str) else next(iter(v.values()))))' "$work/answer.json")
    printf '%-18s %-9s %10d %12d %12d %14.1f\n' "$name" "$ep" $(( $(stat -c %s "$work/$name.json") / 1024 )) \
      "$(stat -c %s "$work/answer.json")" "$annot" "$(echo "$(hwm) / 1024" | bc -l)"
  done
  stop
done
# The same process for everything, then four of the largest at once: what a hostile client can do.
start
for name in typical 100k-bad-values 3MiB-bad-values 3MiB-one-value 3MiB-terms 3MiB-update; do
  for ep in validate mutate; do
    curl -s --cacert "$work/ca.crt" -H 'content-type: application/json' --data-binary "@$work/$name.json" \
      -o /dev/null "https://127.0.0.1:$wh/$ep/namespace-offloading"
  done
done
printf 'all of the above in one process, one after another: peak RSS %.1f MiB\n' "$(echo "$(hwm) / 1024" | bc -l)"
for i in 1 2 3 4; do
  curl -s --cacert "$work/ca.crt" -H 'content-type: application/json' --data-binary "@$work/3MiB-update.json" \
    -o /dev/null "https://127.0.0.1:$wh/validate/namespace-offloading" &
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
printf 'then four 3 MiB updates at once: peak RSS %.1f MiB, RSS after %.1f MiB\n' "$(echo "$(hwm) / 1024" | bc -l)" \
  "$(awk '/VmRSS/ {print $2 / 1024}' "/proc/$pid/status")"
stop
# Many clients at once, each with its own connection and the same 3 MiB review, released together.
# Baseline, in the same run: the largest count again with a budget too large to matter (1Gi), as
# before the budget existed. The largest peak under the default budget is the verdict.
worst=0
for proto in http1.1 http2; do
  for run in "${concurrency[@]}" "${concurrency[-1]} unbudgeted"; do
    read -r n budget <<< "$run"
    label="$proto"; flags=()
    [ -n "${budget:-}" ] && label="$proto, budget 1Gi" && flags=(--max-review-bytes-in-flight 1Gi)
    start "${flags[@]}"
    rm -f "$work"/code.*
    for i in $(seq "$n"); do
      curl -s --"$proto" --cacert "$work/ca.crt" -H 'content-type: application/json' \
        --data-binary "@$work/3MiB-terms.json" -o /dev/null -w '%{http_code}\n' \
        "https://127.0.0.1:$wh/validate/namespace-offloading" >"$work/code.$i" &
    done
    wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
    ok=$(cat "$work"/code.* | grep -c '^200$' || true); busy=$(cat "$work"/code.* | grep -c '^429$' || true)
    # (grep finds nothing when every client got 200 or 429: not a failure of the script)
    other=$(cat "$work"/code.* | { grep -v '^200$\|^429$' || true; } | sort | uniq -c | awk '{printf " %s x%d", $2, $1}')
    peak=$(hwm)
    printf '%3d clients at once, 3 MiB each (%s): peak RSS %.1f MiB; %d answered, %d refused with 429, other:%s\n' \
      "$n" "$label" "$(echo "$peak / 1024" | bc -l)" "$ok" "$busy" "${other:- none}"
    [ -n "${budget:-}" ] || [ "$peak" -le "$worst" ] || worst=$peak
    stop
  done
done
echo "log lines: longest $(awk '{ if (length($0) > m) m = length($0) } END { print m }' "$work/webhook.log") bytes"
verdict=ok; [ "$worst" -lt $((64 * 1024)) ] || verdict=OVER
printf 'largest peak RSS with the default budget, up to %d clients at once: %.1f MiB (target < 64 MiB): %s\n' \
  "${concurrency[-1]}" "$(echo "$worst / 1024" | bc -l)" "$verdict"
[ "$verdict" = ok ]
