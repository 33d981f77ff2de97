#!/usr/bin/env bash
# Server benchmark: the webhook against a bare TLS server that only parses the JSON and echoes the
# uid (examples/bench_baseline_server.rs), both measured in this run with h2load over TLS, for h2
# (32 concurrent streams on 4 connections, as a `url:` registration) and HTTP/1.1 (32 keep-alive
# connections, as a `service:` registration). Prints throughput, the ratio, p50/p99 and peak RSS.
# Then the handler micro-benchmark (criterion), with its own in-run baseline.
# Usage: scripts/bench.sh [REQUESTS]   (default 50000 per run)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-50000}
if ! command -v h2load >/dev/null; then
  echo "bench.sh: installing h2load (Debian nghttp2-client)" >&2
  apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build --quiet --release --bin offloading-webhook --example bench_baseline_server
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
target/release/offloading-webhook certs --out "$work" --ip 127.0.0.1 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wh=$(port); base=$(port)
target/release/offloading-webhook serve --no-cluster --cluster-id b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a \
  --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" --webhook-addr "127.0.0.1:$wh" \
  --probe-addr "127.0.0.1:$(port)" --metrics-addr "127.0.0.1:$(port)" 2>"$work/webhook.log" &
pids+=($!); whpid=$!
target/release/examples/bench_baseline_server "127.0.0.1:$base" "$work/tls.crt" "$work/tls.key" &
pids+=($!)
sleep 1
body=tests/fixtures/create-valid.json

run() { # label port proto -> "rps p50_us p99_us"
  local log="$work/$1-$3.log" args
  if [ "$3" = h2 ]; then args=(-c 4 -m 8); else args=(--h1 -c 32 -m 1); fi
  # Warm-up, then the measured run.
  h2load -n 2000 "${args[@]}" -d "$body" -H 'content-type: application/json' \
    "https://127.0.0.1:$2/validate/namespace-offloading" >/dev/null
  local out
  out=$(h2load -n "$n" "${args[@]}" -d "$body" -H 'content-type: application/json' --log-file="$log" \
    "https://127.0.0.1:$2/validate/namespace-offloading")
  grep -q " 0 failed, 0 errored" <<<"$out" || { echo "$out" >&2; exit 1; }
  local rps
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  # Third column of the log is each request's time in microseconds.
  read -r p50 p99 < <(awk '{print $3}' "$log" | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.5)], a[int(NR*0.99)]}')
  echo "$rps $p50 $p99"
}

printf '%-8s %-9s %12s %10s %10s\n' proto server "req/s" "p50 µs" "p99 µs"
for proto in h2 h1; do
  read -r brps bp50 bp99 < <(run baseline "$base" "$proto")
  read -r wrps wp50 wp99 < <(run webhook "$wh" "$proto")
  printf '%-8s %-9s %12s %10s %10s\n' "$proto" baseline "$brps" "$bp50" "$bp99"
  printf '%-8s %-9s %12s %10s %10s\n' "$proto" webhook "$wrps" "$wp50" "$wp99"
  awk -v w="$wrps" -v b="$brps" -v p="$proto" 'BEGIN {printf "%-8s ratio webhook/baseline throughput: %.2f (target >= 0.8)\n", p, w/b}'
done
echo "webhook peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$whpid/status") (target < 30 MiB)"

echo
echo "handler micro-benchmark (criterion):"
cargo bench --quiet --bench admission -- --noplot 2>/dev/null | grep -E "^review/|time:" | paste - - | awk '{print $1, $3, $4, $5, $6, $7, $8}'
