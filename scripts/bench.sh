#!/usr/bin/env bash
# Server benchmark: the webhook against two TLS servers that only parse the JSON and echo the uid:
# "baseline", behind the webhook's own serving stack (examples/bench_baseline_server.rs), and
# "bare", a plain hyper + rustls echo on one single-threaded runtime (examples/bench_bare_server.rs),
# all measured in this run with h2load over TLS, at 32 concurrent reviews: h2 on one connection (how
# the API server's HTTP/2 client multiplexes a `url:` registration), h2 on 4 connections x 8
# streams, and HTTP/1.1 on 32 keep-alive connections. Runs rotate between the servers for several
# rounds (this machine's speed drifts by ±20% from minute to minute) and the summary gives medians:
# throughput and its ratios, p50/p99 latency, server CPU time per review, and peak RSS.
# Then the handler micro-benchmark (criterion), with its own in-run baseline.
# Usage: scripts/bench.sh [REQUESTS [ROUNDS]]   (default 40000 per run, 3 rounds)
# On a machine with cores to spare, BENCH_SERVER_CPUS and BENCH_CLIENT_CPUS (taskset lists, e.g.
# "0-1" and "2-3") keep h2load off the servers' cores, so that it does not add to their latency;
# "0" and "1" on two cores measure what one core answers. BENCH_RT=1 runs the servers and h2load
# as real-time tasks (chrt -f), so that other work on a shared machine does not take their cores
# during the runs (the kernel still leaves it 5 % of each second). BENCH_COMPARE=PATH adds another
# build of offloading-webhook (e.g. the previous commit's) to the same rounds, as "previous".
# BENCH_PROTOS="h1" measures only some of the three ways (default "h2x1 h2x4 h1"); BENCH_HANDLER=0
# skips the criterion micro-benchmark.
# BENCH_PER_CORE=1: what one core answers over HTTP/1.1, the API server's way to a `service:`. The
# servers on CPU 0, h2load on the others, both real-time; HTTP/1.1 only, no micro-benchmark
# (each of these can still be set otherwise). The summary then gives, besides the medians, each
# round's webhook/bare ratio: the two runs of a round are seconds apart, so a drift in machine speed
# moves both alike.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-40000}
rounds=${2:-3}
if [ "${BENCH_PER_CORE:-0}" = 1 ]; then
  cpus=$(nproc)
  [ "$cpus" -ge 2 ] || { echo "bench.sh: BENCH_PER_CORE needs 2 cores or more" >&2; exit 1; }
  : "${BENCH_SERVER_CPUS:=0}" "${BENCH_CLIENT_CPUS:=1-$((cpus - 1))}" "${BENCH_RT:=1}"
  : "${BENCH_PROTOS:=h1}" "${BENCH_HANDLER:=0}"
fi
read -ra protos <<<"${BENCH_PROTOS:-h2x1 h2x4 h1}"
if ! command -v h2load >/dev/null; then
  echo "bench.sh: installing h2load (Debian nghttp2-client)" >&2
  apt-get update -qq && apt-get install -y -qq nghttp2-client >/dev/null
fi
cargo build --quiet --release --bin offloading-webhook --example bench_baseline_server --example bench_bare_server
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
target/release/offloading-webhook certs --out "$work" --ip 127.0.0.1 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wh=$(port); base=$(port); bare=$(port)
server=(); client=()
[ "${BENCH_RT:-0}" = 1 ] && server=(chrt -f 50) && client=(chrt -f 50)
[ -n "${BENCH_SERVER_CPUS:-}" ] && server+=(taskset -c "$BENCH_SERVER_CPUS")
[ -n "${BENCH_CLIENT_CPUS:-}" ] && client+=(taskset -c "$BENCH_CLIENT_CPUS")
serve() { # binary port log
  "${server[@]}" "$1" serve --no-cluster --cluster-id b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a \
    --tls-cert-file "$work/tls.crt" --tls-key-file "$work/tls.key" --webhook-addr "127.0.0.1:$2" \
    --probe-addr "127.0.0.1:$(port)" --metrics-addr "127.0.0.1:$(port)" 2>"$3" &
}
serve target/release/offloading-webhook "$wh" "$work/webhook.log"
pids+=($!); whpid=$!
"${server[@]}" target/release/examples/bench_baseline_server "127.0.0.1:$base" "$work/tls.crt" "$work/tls.key" &
pids+=($!); basepid=$!
"${server[@]}" target/release/examples/bench_bare_server "127.0.0.1:$bare" "$work/tls.crt" "$work/tls.key" &
pids+=($!); barepid=$!
servers=(baseline webhook bare)
declare -A server_port=([baseline]=$base [webhook]=$wh [bare]=$bare)
declare -A server_pid=([baseline]=$basepid [webhook]=$whpid [bare]=$barepid)
if [ -n "${BENCH_COMPARE:-}" ]; then
  prev=$(port)
  serve "$BENCH_COMPARE" "$prev" "$work/previous.log"
  pids+=($!); servers+=(previous); server_port[previous]=$prev; server_pid[previous]=$!
fi
for s in "${servers[@]}"; do # each listening, or say why not
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${server_port[$s]}") 2>/dev/null && continue 2; sleep 0.1; done
  echo "bench.sh: $s is not listening on ${server_port[$s]}" >&2; cat "$work/webhook.log" >&2; exit 1
done
body=tests/fixtures/create-valid.json
tck=$(getconf CLK_TCK)
cpu_seconds() { awk -v t="$tck" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

run() { # label port pid proto round -> appends "label proto rps p50_us p99_us cpu_us_per_review round" to results
  local log="$work/$1-$4.log" args out rps c0 c1 p50 p99
  case "$4" in
    h2x1) args=(-c 1 -m 32) ;;
    h2x4) args=(-c 4 -m 8) ;;
    h1) args=(--h1 -c 32 -m 1) ;;
  esac
  # Warm-up, then the measured run.
  "${client[@]}" h2load -n 2000 "${args[@]}" -d "$body" -H 'content-type: application/json' \
    "https://127.0.0.1:$2/validate/namespace-offloading" >/dev/null
  rm -f "$log"  # h2load appends to its log file
  c0=$(cpu_seconds "$3")
  out=$("${client[@]}" h2load -n "$n" "${args[@]}" -d "$body" -H 'content-type: application/json' --log-file="$log" \
    "https://127.0.0.1:$2/validate/namespace-offloading")
  c1=$(cpu_seconds "$3")
  grep -q " 0 failed, 0 errored" <<<"$out" || { echo "$out" >&2; exit 1; }
  rps=$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' <<<"$out")
  # Third column of the log is each request's time in microseconds.
  read -r p50 p99 < <(awk '{print $3}' "$log" | sort -n | awk '{a[NR]=$1} END {print a[int(NR*0.5)], a[int(NR*0.99)]}')
  awk -v l="$1" -v p="$4" -v r="$rps" -v a="$p50" -v b="$p99" -v c0="$c0" -v c1="$c1" -v n="$n" -v k="$5" \
    'BEGIN {printf "%s %s %.0f %d %d %.1f %d\n", l, p, r, a, b, (c1 - c0) * 1e6 / n, k}' | tee -a "$work/results"
}

echo "runs (server protocol req/s p50_µs p99_µs server_CPU_µs/review round):"
for round in $(seq "$rounds"); do
  for proto in "${protos[@]}"; do
    # Rotate which server goes first, so a drift in machine speed hits them alike.
    k=${#servers[@]}
    for i in $(seq 0 $((k - 1))); do
      s=${servers[$(((i + round) % k))]}
      run "$s" "${server_port[$s]}" "${server_pid[$s]}" "$proto" "$round"
    done
  done
done

echo
echo "medians of $rounds rounds, $n reviews each:"
printf '%-6s %-9s %9s %8s %8s %14s\n' proto server "req/s" "p50 µs" "p99 µs" "CPU µs/review"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
for proto in "${protos[@]}"; do
  for server in "${servers[@]}"; do
    row=()
    for col in 3 4 5 6; do
      row+=("$(awk -v s="$server" -v p="$proto" -v c="$col" '$1 == s && $2 == p {print $c}' "$work/results" | median)")
    done
    printf '%-6s %-9s %9s %8s %8s %14s\n' "$proto" "$server" "${row[@]}"
    eval "${server}_rps=${row[0]} ${server}_cpu=${row[3]}"
  done
  awk -v w="$webhook_rps" -v b="$baseline_rps" -v wc="$webhook_cpu" -v bc="$baseline_cpu" -v p="$proto" \
    'BEGIN {printf "%-6s webhook/baseline: throughput %.2f (target >= 0.9), CPU per review %.2f\n", p, w / b, wc / bc}'
  awk -v w="$webhook_rps" -v b="$bare_rps" -v wc="$webhook_cpu" -v bc="$bare_cpu" -v p="$proto" \
    'BEGIN {printf "%-6s webhook/bare:     throughput %.2f (target >= 0.9), CPU per review %.2f\n", p, w / b, wc / bc}'
  # Each round's own ratio to the bare echo, then their median.
  for x in webhook ${BENCH_COMPARE:+previous}; do
    awk -v p="$proto" -v x="$x" '$2 == p && ($1 == x || $1 == "bare") {v[$7, $1] = $3; c[$7, $1] = $6; r[$7] = 1}
      END {for (k in r) if (v[k, "bare"] > 0) printf "%d %.2f %.2f\n", k, v[k, x] / v[k, "bare"], c[k, x] / c[k, "bare"]}' \
      "$work/results" | sort -n >"$work/ratios"
    printf '%-6s %s/bare by round: throughput %s (median %s), CPU per review %s (median %s)\n' "$proto" "$x" \
      "$(awk '{print $2}' "$work/ratios" | paste -sd' ')" "$(awk '{print $2}' "$work/ratios" | median)" \
      "$(awk '{print $3}' "$work/ratios" | paste -sd' ')" "$(awk '{print $3}' "$work/ratios" | median)"
  done
  [ -z "${BENCH_COMPARE:-}" ] || awk -v w="$previous_rps" -v b="$baseline_rps" -v wc="$previous_cpu" -v bc="$baseline_cpu" -v p="$proto" \
    'BEGIN {printf "%-6s previous/baseline: throughput %.2f, CPU per review %.2f\n", p, w / b, wc / bc}'
done
echo "webhook peak RSS: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$whpid/status") (target < 30 MiB)"

[ "${BENCH_HANDLER:-1}" = 0 ] && exit 0
echo
echo "handler micro-benchmark (criterion):"
cargo bench --quiet --bench admission -- --noplot 2>/dev/null | grep -E "^review/|time:" | paste - - | awk '{print $1, $3, $4, $5, $6, $7, $8}'
