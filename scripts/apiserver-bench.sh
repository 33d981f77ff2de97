#!/usr/bin/env bash
# The webhook under the API server's load, beside Liqo v1.2's own NamespaceOffloading webhook, in
# the same run: a fresh loopback control plane (tests/go/controlplane) with Liqo v1.2's CRDs
# (tests/go/liqo/crds.sh), its cluster-id ConfigMap and NODES remote clusters the v1.x way (tenant
# namespace, VirtualNode, Node); our `serve` (release build, reading those facts as on a Liqo v1.x
# cluster), validating and mutating as deployed; Liqo's `liqo-webhook` (tests/go/liqo), validating,
# under another webhook name so that the API server's metrics tell the two apart. Every create and
# update of a NamespaceOffloading passes through all three. Both are registered by `service:` as
# their charts do (aggregator routing resolves each Service through an EndpointSlice on loopback,
# as in tests/e2e_rollout.rs), so the API server calls them as in a cluster, over HTTP/1.1: it uses
# HTTP/2 only for a webhook registered by a loopback URL, which BENCH_TRANSPORT=url does instead.
# examples/apiserver_load.rs then drives the writes and reports, per round and as medians: reviews
# per webhook, CPU µs per review (/proc/PID/stat), the API server's admission latency per webhook
# (apiserver_admission_webhook_admission_duration_seconds), and peak RSS.
# Usage: scripts/apiserver-bench.sh [ROUNDS [CYCLES [CONCURRENCY [NODES]]]]
#        (default 3 rounds of 1000 cycles of 4 reviewed writes, 16 workers, 10 remote clusters)
# Env: CONTROLPLANE_BIN (as tests/go/controlplane/build.sh), LIQO_BIN (as tests/go/liqo/build.sh),
#      BENCH_KEEP=1 keeps the work directory (logs of all processes); BENCH_OURS_ENV, BENCH_LIQO_ENV:
#      extra environment for one webhook (e.g. "TOKIO_WORKER_THREADS=1", "GOMAXPROCS=1");
#      BENCH_WRAP: a command our `serve` runs under (e.g. "heaptrack -o FILE"; its CPU figures are
#      then the wrapper's, not `serve`'s); BENCH_OURS=baseline registers, in place of ours, the bare TLS server of scripts/bench.sh
#      (same TLS and HTTP stack, a handler that only parses the JSON and echoes the uid): the floor.
#      BENCH_MODES ("all", or some of "none policy webhook both"): instead of the comparison with Liqo's webhook,
#      the cost of each way to admit a NamespaceOffloading, without Liqo's webhook: none (nothing
#      of ours registered, the floor), policy (`offloading-webhook policy --liqo-api v1` applied
#      alone), webhook (ours, validating and mutating, as deployed: with matchConditions), both.
#      Each round runs every mode in turn, switching by applying and deleting the registrations;
#      per mode, per write: kube-apiserver's CPU, the client's latency (creates, all writes), the
#      API server's admission metrics; ratios against none in the same round. BENCH_VALID_ONLY=1
#      makes each cycle's last patch a valid one: nothing denied. BENCH_POLICY_ARGS: more arguments
#      to `policy` (e.g. "--cluster-id bench-consumer": one binding, no parameter); BENCH_POLICY_FILE:
#      another policy and its bindings in its place (e.g. a trivial one: the floor of any policy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rounds=${1:-3}; cycles=${2:-1000}; workers=${3:-16}; nodes=${4:-10}
transport=${BENCH_TRANSPORT:-service}
case $transport in service | url) ;; *) echo "BENCH_TRANSPORT is service or url" >&2; exit 2 ;; esac
modes=${BENCH_MODES:-}
[ "$modes" != all ] || modes="none policy webhook both"
[ -z "$modes" ] || export BENCH_MODES="$modes"
if [ -n "$modes" ] && [ "${BENCH_OURS:-serve}" = baseline ]; then
  echo "BENCH_MODES measures our webhook and policy: not with BENCH_OURS=baseline" >&2; exit 2
fi
examples=(--example apiserver_load)
[ "${BENCH_OURS:-serve}" != baseline ] || examples+=(--example bench_baseline_server)
cargo build --quiet --release --bin offloading-webhook "${examples[@]}"
bin=$(tests/go/controlplane/build.sh)
[ -n "$modes" ] || liqo_bin=$(LIQO_SKIP_LIQOCTL=1 tests/go/liqo/build.sh)
cluster_id=bench-consumer
# Webhook names as the API server's metrics label them: ours as deployed (manifests/webhooks.yaml);
# Liqo's chart calls its own nsoff.validate.liqo.io too, renamed here to be told apart.
export BENCH_OURS_VALIDATE=validate.offloading-webhook.io BENCH_OURS_MUTATE=mutate.offloading-webhook.io
export BENCH_LIQO=liqo.nsoff.validate.liqo.io
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

work=$(mktemp -d)
pids=()
cleanup() {
  [ ${#pids[@]} = 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  tests/go/controlplane/down.sh "$work/cp"
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

kubeconfig=$(CONTROLPLANE_BIN=$bin UP_APISERVER_ARGS=--enable-aggregator-routing=true tests/go/controlplane/up.sh "$work/cp")
kubectl() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
KUBECTL=$bin/kubectl tests/go/liqo/crds.sh --kubeconfig "$kubeconfig" 2>/dev/null

# Liqo v1.x's facts, as tests/support/liqo.rs stands them up: the cluster-id ConfigMap, and per
# remote cluster a tenant namespace, a VirtualNode and its Node (half in eu-west, half in us-east).
{
  printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: liqo\n---\n'
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: liqo-clusterid-configmap\n  namespace: liqo\n'
  printf '  labels:\n    app.kubernetes.io/name: clusterid-configmap\ndata:\n  CLUSTER_ID: %s\n' "$cluster_id"
  for i in $(seq "$nodes"); do
    id=provider-$i
    region=eu-west; [ $((i % 2)) = 0 ] && region=us-east
    cat <<YAML
---
apiVersion: v1
kind: Namespace
metadata:
  name: liqo-tenant-$id
  labels:
    liqo.io/tenant-namespace: "true"
    liqo.io/remote-cluster-id: $id
---
apiVersion: offloading.liqo.io/v1beta1
kind: VirtualNode
metadata:
  name: $id
  namespace: liqo-tenant-$id
  labels:
    liqo.io/remote-cluster-id: $id
spec:
  clusterID: $id
  createNode: true
  labels:
    topology.liqo.io/region: $region
  template:
    metadata:
      name: vk-$id
      namespace: liqo-tenant-$id
    spec:
      replicas: 0
      selector:
        matchLabels:
          app.kubernetes.io/name: vk-$id
      template:
        metadata:
          labels:
            app.kubernetes.io/name: vk-$id
        spec:
          containers:
          - name: virtual-kubelet
            image: ghcr.io/liqotech/virtual-kubelet:v1.2.0
---
apiVersion: v1
kind: Node
metadata:
  name: $id
  labels:
    liqo.io/type: virtual-node
    liqo.io/remote-cluster-id: $id
    topology.liqo.io/region: $region
YAML
  done
} | kubectl apply --server-side -f - >/dev/null

# Both webhooks, each with its own serving certificate.
target/release/offloading-webhook certs --out "$work/ours" --ip 127.0.0.1 \
  --dns offloading-webhook.offloading-webhook.svc >/dev/null
target/release/offloading-webhook certs --out "$work/liqo" --ip 127.0.0.1 --dns liqo-webhook.liqo.svc >/dev/null
ours_port=$(port); probe=$(port); metrics=$(port); liqo_port=$(port)
read -ra ours_env <<< "${BENCH_OURS_ENV:-}"; read -ra liqo_env <<< "${BENCH_LIQO_ENV:-}"
if [ "${BENCH_OURS:-serve}" = baseline ]; then
  # The floor: the same TLS and HTTP stack with a handler that only parses the JSON and echoes the
  # uid (examples/bench_baseline_server.rs), registered in our place. It has no metrics port.
  env ${ours_env[@]+"${ours_env[@]}"} target/release/examples/bench_baseline_server "127.0.0.1:$ours_port" \
    "$work/ours/tls.crt" "$work/ours/tls.key" 2>"$work/ours.log" &
  metrics=0
else
  env ${ours_env[@]+"${ours_env[@]}"} ${BENCH_WRAP:-} target/release/offloading-webhook serve --kubeconfig "$kubeconfig" --reconcile=false \
    --shutdown-delay-seconds 0 --drain-seconds 1 \
    --tls-cert-file "$work/ours/tls.crt" --tls-key-file "$work/ours/tls.key" \
    --webhook-addr "127.0.0.1:$ours_port" --probe-addr "127.0.0.1:$probe" --metrics-addr "127.0.0.1:$metrics" \
    2>"$work/ours.log" &
fi
ours_pid=$!; pids+=("$ours_pid")
liqo_pid=0
if [ -z "$modes" ]; then
  env ${liqo_env[@]+"${liqo_env[@]}"} "$liqo_bin/liqo-webhook" --host 127.0.0.1 --webhook-port "$liqo_port" --cert-dir "$work/liqo" \
    >"$work/liqo.log" 2>&1 &
  liqo_pid=$!; pids+=("$liqo_pid")
fi
liqo_up() { [ "$liqo_pid" = 0 ] || (exec 3<>"/dev/tcp/127.0.0.1/$liqo_port") 2>/dev/null; }
for _ in $(seq 300); do
  { [ "$metrics" = 0 ] && (exec 3<>"/dev/tcp/127.0.0.1/$ours_port") 2>/dev/null || \
    [ "$(curl -s "http://127.0.0.1:$probe/readyz" 2>/dev/null)" = ok ]; } && liqo_up && break
  kill -0 "$ours_pid" 2>/dev/null || { cat "$work/ours.log" >&2; echo "our webhook exited" >&2; exit 1; }
  [ "$liqo_pid" = 0 ] || kill -0 "$liqo_pid" 2>/dev/null || { cat "$work/liqo.log" >&2; echo "Liqo's webhook exited" >&2; exit 1; }
  sleep 0.1
done
grep -h "Liqo API\|cluster id" "$work/ours.log" | sed 's/^/ours: /' | head -3 || true

# Ours as deployed (manifests/webhooks.yaml), Liqo's as its chart registers it (tests/support/liqo.rs).
# (The baseline serves one path, and its answer, allowed without a patch, suits both.)
service_for() { # namespace name port: a Service whose one endpoint is 127.0.0.1:port
  kubectl get namespace "$1" >/dev/null 2>&1 || kubectl create namespace "$1" >/dev/null
  kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: $2, namespace: $1}
spec:
  type: ClusterIP
  ports: [{name: https, port: 443, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: $2-bench
  namespace: $1
  labels: {kubernetes.io/service-name: $2, endpointslice.kubernetes.io/managed-by: apiserver-bench}
addressType: FQDN
ports: [{name: https, port: $3, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
YAML
}
if [ "$transport" = service ]; then
  service_for offloading-webhook offloading-webhook "$ours_port"
  service_for liqo liqo-webhook "$liqo_port"
  ours_reg=(--service offloading-webhook/offloading-webhook)
  liqo_client="service: {namespace: liqo, name: liqo-webhook, port: 443, path: /validate/namespace-offloading}"
else
  ours_reg=(--url "https://127.0.0.1:$ours_port")
  liqo_client="url: https://127.0.0.1:$liqo_port/validate/namespace-offloading"
fi
if [ -n "$modes" ]; then
  # apiserver_load applies and deletes these as each mode asks. Ours as deployed: with
  # matchConditions, so that an update that changes no spec (the label patch) skips the webhooks.
  target/release/offloading-webhook webhook-config "${ours_reg[@]}" --ca-file "$work/ours/ca.crt" >"$work/webhooks.yaml"
  read -ra policy_args <<< "${BENCH_POLICY_ARGS:-}"
  if [ -n "${BENCH_POLICY_FILE:-}" ]; then
    cp "$BENCH_POLICY_FILE" "$work/policy.yaml"
  else
    target/release/offloading-webhook policy --liqo-api v1 ${policy_args[@]+"${policy_args[@]}"} >"$work/policy.yaml"
  fi
  echo "=== modes $modes: $rounds rounds of $cycles cycles each, $workers workers, $nodes remote clusters, registered by $transport ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)) ==="
  BENCH_WEBHOOKS_YAML=$work/webhooks.yaml BENCH_POLICY_YAML=$work/policy.yaml \
    target/release/examples/apiserver_load "$kubeconfig" "$ours_pid" "$metrics" 0 \
    "$(cat "$work/cp/kube-apiserver.pid")" "$rounds" "$cycles" "$workers"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "log lines: ours $(wc -l < "$work/ours.log") ($(grep -c ' WARN \| ERROR ' "$work/ours.log" || true) warn/error)"
  exit 0
fi
# Without matchConditions: both webhooks are called for the same writes (the label patch included),
# so that the figures compare the cost of a review, not which reviews are skipped.
target/release/offloading-webhook webhook-config "${ours_reg[@]}" --ca-file "$work/ours/ca.crt" --match-conditions=false \
  | { if [ "$metrics" = 0 ]; then sed 's|/mutate/|/validate/|'; else cat; fi; } | kubectl apply -f - >/dev/null
kubectl apply -f - >/dev/null <<YAML
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: liqo-webhook
webhooks:
- name: $BENCH_LIQO
  admissionReviewVersions: [v1, v1beta1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 10
  clientConfig:
    $liqo_client
    caBundle: $(base64 -w0 < "$work/liqo/ca.crt")
  rules:
  - apiGroups: [offloading.liqo.io]
    apiVersions: [v1beta1]
    operations: [CREATE, UPDATE]
    resources: [namespaceoffloadings]
  objectSelector:
    matchExpressions:
    - key: liqo.io/webhook-skip
      operator: NotIn
      values: ["true"]
YAML

echo "=== $rounds rounds of $cycles cycles, $workers workers, $nodes remote clusters, registered by $transport ($(date -u +%H:%M:%S) UTC, load average $(cut -d' ' -f1-3 /proc/loadavg)) ==="
target/release/examples/apiserver_load "$kubeconfig" "$ours_pid" "$metrics" "$liqo_pid" \
  "$(cat "$work/cp/kube-apiserver.pid")" "$rounds" "$cycles" "$workers"
conns() { ss -Htn state established "( sport = :$1 )" | wc -l; }
echo "connections the API server holds open: to ours $(conns "$ours_port"), to Liqo's $(conns "$liqo_port") (HTTP/2: 1)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "log lines: ours $(wc -l < "$work/ours.log") ($(grep -c ' WARN \| ERROR ' "$work/ours.log" || true) warn/error), Liqo's $(wc -l < "$work/liqo.log")"
