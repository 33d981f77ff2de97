#!/usr/bin/env bash
# Reconcile-loop scale benchmark on a real control plane: NAMESPACES namespaces offloaded to NODES
# virtual nodes (default 500 x 10), release build. The API server keeps an audit log of every write;
# the webhook runs as its own user (offloading-webhook), so its writes are counted by the API server
# itself, not by our own metric alone. Prints:
#   - time to converge (every entry in every NamespaceMap, every status observed), from the first
#     create; the client's own creates through the same API server as a baseline;
#   - writes to converge, per namespace, by verb/resource, from the audit log (Lease renewals apart)
#     and from our own counter (they must agree);
#   - writes in a quiet minute after converging (target 0);
#   - peak RSS of the webhook and of kube-apiserver;
#   - a restart of the leader with everything stored: time from start to /readyz, to the end of
#     the first full resync, and the writes in the minute after (target 0: nothing rewritten).
# Usage: scripts/scale-bench.sh [NAMESPACES] [NODES]
# Env: CONTROLPLANE_BIN (as tests/controlplane/build.sh), SCALE_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-500}; m=${2:-10}
cargo build --quiet --release --bin offloading-webhook --example reconcile_scale
bin=$(tests/controlplane/build.sh)
work=$(mktemp -d)
cleanup() {
  [ -z "${whpid:-}" ] || kill "$whpid" 2>/dev/null || true
  wait 2>/dev/null || true
  tests/controlplane/down.sh "$work/cp"
  if [ "${SCALE_KEEP:-0}" = 1 ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

cat > "$work/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
EOF
kubeconfig=$(CONTROLPLANE_BIN=$bin UP_APISERVER_ARGS="--audit-policy-file=$work/audit-policy.yaml \
  --audit-log-path=$work/audit.log --audit-log-maxsize=0 --audit-log-format=json" \
  tests/controlplane/up.sh "$work/cp")
apiserver_pid=$(cat "$work/cp/kube-apiserver.pid")
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
kubectl apply -f manifests/crds.yaml >/dev/null
kubectl wait --for condition=Established --timeout 60s \
  crd/namespaceoffloadings.offloading.liqo.io crd/namespacemaps.virtualkubelet.liqo.io >/dev/null

# The webhook's own user, so that the audit log tells its writes from the client's.
pki="$work/cp/pki"
openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=offloading-webhook" \
  -keyout "$work/wh.key" -out "$work/wh.csr" >/dev/null 2>&1
printf 'extendedKeyUsage=clientAuth\n' > "$work/wh.ext"
openssl x509 -req -in "$work/wh.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/wh.ext" -out "$work/wh.crt" >/dev/null 2>&1
sed -e "s|client-certificate-data: .*|client-certificate-data: $(base64 -w0 < "$work/wh.crt")|" \
  -e "s|client-key-data: .*|client-key-data: $(base64 -w0 < "$work/wh.key")|" "$kubeconfig" > "$work/wh.kubeconfig"

target/release/offloading-webhook certs --out "$work/certs" --ip 127.0.0.1 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metrics=$(port); probe=$(port); hook=$(port)
start_webhook() {
  RUST_LOG=warn target/release/offloading-webhook serve --kubeconfig "$work/wh.kubeconfig" \
    --cluster-id b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a --lease-namespace default \
    --shutdown-delay-seconds 0 --drain-seconds 1 \
    --tls-cert-file "$work/certs/tls.crt" --tls-key-file "$work/certs/tls.key" \
    --webhook-addr "127.0.0.1:$hook" --probe-addr "127.0.0.1:$probe" --metrics-addr "127.0.0.1:$metrics" \
    2>>"$work/webhook.log" &
  whpid=$!
}
now() { date +%s.%N; }
wait_ready() { # seconds from $1 until /readyz answers ok
  until [ "$(curl -s "http://127.0.0.1:$probe/readyz" 2>/dev/null)" = "ok" ]; do
    kill -0 "$whpid" 2>/dev/null || { tail -20 "$work/webhook.log" >&2; echo "webhook exited" >&2; exit 1; }
    sleep 0.05
  done
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"
}
reconciles() { curl -s "http://127.0.0.1:$metrics/metrics" | awk '/^offloading_webhook_reconciles_total/ {s += $2} END {print s + 0}'; }
rss() { awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$1/status"; }

t0=$(now)
start_webhook
ready1=$(wait_ready "$t0")
echo "webhook ready (empty cluster) in ${ready1} s"
target/release/examples/reconcile_scale "$kubeconfig" "$metrics" "$n" "$m" "$work/marks"
echo "webhook peak RSS:                  $(rss "$whpid")"
echo "kube-apiserver peak RSS:           $(rss "$apiserver_pid")"

# A restart of the leader at scale: everything it needs is stored already.
before=$(reconciles)
kill -TERM "$whpid"; wait "$whpid" || true
echo "restart $(now)" >> "$work/marks"
t1=$(now)
start_webhook
ready2=$(wait_ready "$t1")
# The first full resync: one reconcile per NamespaceOffloading (the counter restarts at 0).
until [ "$(reconciles)" -ge "$n" ]; do sleep 0.2; done
resync=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$t1" "$(now)")
echo "restart at scale: /readyz in ${ready2} s, first full resync done in ${resync} s (reconciles before: $before)"
sleep 60
echo "end $(now)" >> "$work/marks"
echo "webhook peak RSS after restart:    $(rss "$whpid")"
sleep 1 # the audit log's last batch
scripts/audit_writes.py "$work/audit.log" "$work/marks" "$n" offloading-webhook admin
grep -c '"level":"\(WARN\|ERROR\)"\| WARN \| ERROR ' "$work/webhook.log" | sed 's/^/webhook log warnings\/errors: /' || true
