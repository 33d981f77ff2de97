#!/usr/bin/env bash
# Reconcile-loop scale benchmark on a real control plane: NAMESPACES namespaces offloaded to NODES
# virtual nodes (default 500 x 10). Prints time to converge, writes issued, writes in a quiet minute.
# Usage: scripts/scale-bench.sh [NAMESPACES] [NODES]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-500}; m=${2:-10}
cargo build --quiet --release --bin offloading-webhook --example reconcile_scale
bin=$(tests/controlplane/build.sh)
work=$(mktemp -d)
cleanup() { kill "${whpid:-}" 2>/dev/null; wait 2>/dev/null; tests/controlplane/down.sh "$work/cp"; rm -rf "$work"; }
trap cleanup EXIT
kubeconfig=$(CONTROLPLANE_BIN=$bin tests/controlplane/up.sh "$work/cp")
"$bin/kubectl" --kubeconfig "$kubeconfig" apply -f manifests/crds.yaml >/dev/null
"$bin/kubectl" --kubeconfig "$kubeconfig" wait --for condition=Established --timeout 60s \
  crd/namespaceoffloadings.offloading.liqo.io crd/namespacemaps.virtualkubelet.liqo.io >/dev/null
target/release/offloading-webhook certs --out "$work/certs" --ip 127.0.0.1 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
metrics=$(port)
RUST_LOG=warn target/release/offloading-webhook serve --kubeconfig "$kubeconfig" \
  --cluster-id b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a --lease-namespace default \
  --tls-cert-file "$work/certs/tls.crt" --tls-key-file "$work/certs/tls.key" \
  --webhook-addr "127.0.0.1:$(port)" --probe-addr "127.0.0.1:$(port)" --metrics-addr "127.0.0.1:$metrics" \
  2>"$work/webhook.log" &
whpid=$!
sleep 2
target/release/examples/reconcile_scale "$kubeconfig" "$metrics" "$n" "$m"
echo "webhook peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$whpid/status")"
