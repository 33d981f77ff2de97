#!/usr/bin/env bash
# Reconcile-loop scale benchmark on a real control plane: NAMESPACES namespaces offloaded to NODES
# virtual clusters (default 500 x 10), release build, each round on a fresh control plane whose API
# server keeps an audit log of every write. The controller under test runs as its own user, so its
# writes are counted by the API server itself, not by our own metric alone. Prints, per round:
#   - time to converge (every entry in every NamespaceMap, every status observed), from the first
#     create; the client's own creates through the same API server as a baseline;
#   - writes to converge, per namespace, by verb/resource, from the audit log (Lease renewals apart)
#     and, for ours, from our own counter (they must agree);
#   - writes in a quiet minute after converging (target 0);
#   - peak RSS of the controller and of kube-apiserver;
#   - ours only: a restart of the leader with everything stored: time from start to /readyz, to
#     the end of the first full resync, and the writes in the minute after (target 0).
# WHO: ours, liqo (Liqo v1.2's own NamespaceOffloading and VirtualNode reconcilers from
# tests/liqo/build.sh, the same workload the v1.x way, client rate limits lifted (ours,
# 1 000 QPS by default, is never approached), or both (default: one round each, ours first).
# Usage: scripts/scale-bench.sh [NAMESPACES] [NODES] [ours|liqo|both]
# Env: CONTROLPLANE_BIN (as tests/controlplane/build.sh), LIQO_BIN (as tests/liqo/build.sh),
#      SCALE_KEEP=1 keeps the work directories, SCALE_CAP_SECONDS ends a round that has not
#      converged by then (default 1200), SCALE_PROFILE=SECONDS takes a CPU profile of kube-apiserver
#      over the first SECONDS of the converge window and prints its top functions (go tool pprof),
#      SCALE_QUICK=1 skips the quiet minute and the restart (for trying changes; not for figures),
#      SCALE_WRAP="heaptrack -o FILE" runs our controller under that command (its RSS is then the
#      wrapper's; for the wrapper's own report).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-500}; m=${2:-10}; who=${3:-both}
cargo build --quiet --release --bin offloading-webhook --example reconcile_scale
bin=$(tests/controlplane/build.sh)
if [ "$who" != ours ]; then liqo_bin=$(LIQO_SKIP_LIQOCTL=1 tests/liqo/build.sh); fi
cluster_id=b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
rss() { awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$1/status"; }
work=""; pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -z "$work" ] || tests/controlplane/down.sh "$work/cp"
}
trap cleanup EXIT

audit_policy='apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None'

round() { # ours|liqo
  local flavor=$1 kubeconfig apiserver_pid user metrics probe hook t0 ready1 prof_pid
  work=$(mktemp -d)
  echo "=== $flavor: $n namespaces x $m virtual clusters ($(date -u +%H:%M:%S) UTC) ==="
  printf '%s\n' "$audit_policy" > "$work/audit-policy.yaml"
  kubeconfig=$(CONTROLPLANE_BIN=$bin UP_APISERVER_ARGS="--audit-policy-file=$work/audit-policy.yaml \
    --audit-log-path=$work/audit.log --audit-log-maxsize=0 --audit-log-format=json${SCALE_PROFILE:+ --profiling=true}" \
    tests/controlplane/up.sh "$work/cp")
  apiserver_pid=$(cat "$work/cp/kube-apiserver.pid")
  if [ "$flavor" = ours ]; then
    user=offloading-webhook
    "$bin/kubectl" --kubeconfig "$kubeconfig" apply -f manifests/crds.yaml >/dev/null
    "$bin/kubectl" --kubeconfig "$kubeconfig" wait --for condition=Established --timeout 60s \
      crd/namespaceoffloadings.offloading.liqo.io crd/namespacemaps.virtualkubelet.liqo.io >/dev/null
  else
    user=liqo
    KUBECTL=$bin/kubectl tests/liqo/crds.sh --kubeconfig "$kubeconfig" 2>/dev/null
  fi

  # The controller's own user, so that the audit log tells its writes from the client's.
  local pki="$work/cp/pki"
  openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=$user" \
    -keyout "$work/user.key" -out "$work/user.csr" >/dev/null 2>&1
  printf 'extendedKeyUsage=clientAuth\n' > "$work/user.ext"
  openssl x509 -req -in "$work/user.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
    -extfile "$work/user.ext" -out "$work/user.crt" >/dev/null 2>&1
  sed -e "s|client-certificate-data: .*|client-certificate-data: $(base64 -w0 < "$work/user.crt")|" \
    -e "s|client-key-data: .*|client-key-data: $(base64 -w0 < "$work/user.key")|" "$kubeconfig" > "$work/user.kubeconfig"

  metrics=$(port); probe=$(port); hook=$(port)
  start() {
    if [ "$flavor" = ours ]; then
      RUST_LOG=warn ${SCALE_WRAP:-} target/release/offloading-webhook serve --kubeconfig "$work/user.kubeconfig" \
        --cluster-id "$cluster_id" --lease-namespace default \
        --shutdown-delay-seconds 0 --drain-seconds 1 \
        --tls-cert-file "$work/certs/tls.crt" --tls-key-file "$work/certs/tls.key" \
        --webhook-addr "127.0.0.1:$hook" --probe-addr "127.0.0.1:$probe" --metrics-addr "127.0.0.1:$metrics" \
        2>>"$work/controller.log" &
    else
      "$liqo_bin/liqo-controllers" --kubeconfig "$work/user.kubeconfig" --cluster-id "$cluster_id" \
        --controllers namespaceoffloading,virtualnode --client-qps 100000 --client-max-burst 100000 \
        --health-probe-address "127.0.0.1:$probe" --metrics-address 0 \
        >>"$work/controller.log" 2>&1 &
    fi
    pid=$!
  }
  wait_ready() { # seconds from $1 until /readyz answers ok
    until [ "$(curl -s "http://127.0.0.1:$probe/readyz" 2>/dev/null)" = "ok" ]; do
      kill -0 "$pid" 2>/dev/null || { tail -20 "$work/controller.log" >&2; echo "controller exited" >&2; return 1; }
      sleep 0.05
    done
    since "$1"
  }
  reconciles() { curl -s "http://127.0.0.1:$metrics/metrics" | awk '/^offloading_webhook_reconciles_total/ {s += $2} END {print s + 0}'; }

  [ "$flavor" = liqo ] || target/release/offloading-webhook certs --out "$work/certs" --ip 127.0.0.1 >/dev/null
  t0=$(now)
  start
  ready1=$(wait_ready "$t0")
  echo "controller ready (empty cluster) in ${ready1} s"
  # CPU time of each process, sampled, so that the converge window's share is known.
  local etcd_pid; etcd_pid=$(cat "$work/cp/etcd.pid")
  ( while kill -0 "$apiserver_pid" 2>/dev/null; do
      printf '%s' "$(now)"
      for p in "$apiserver_pid" "$etcd_pid" "$pid"; do
        awk -v t="$(getconf CLK_TCK)" '{printf " %.2f", ($14 + $15) / t}' "/proc/$p/stat" 2>/dev/null || printf ' -'
      done
      awk '/^Rss(Anon|File):/ {printf " %d", $2}' "/proc/$pid/status" 2>/dev/null || printf ' - -'
      echo
      sleep 0.5
    done > "$work/cpu" ) &
  if [ -n "${SCALE_PROFILE:-}" ]; then
    ( until grep -q '^converge ' "$work/marks" 2>/dev/null; do sleep 0.2; done
      "$bin/kubectl" --kubeconfig "$kubeconfig" get --raw "/debug/pprof/profile?seconds=$SCALE_PROFILE" \
        > "$work/apiserver.pprof" ) &
    prof_pid=$!
  fi
  # A round cut short by SCALE_CAP_SECONDS still has its writes counted, up to the cut.
  target/release/examples/reconcile_scale "$kubeconfig" "$metrics" "$n" "$m" "$work/marks" "$flavor" \
    || echo "round not converged: writes below are up to the cap"
  echo "controller peak RSS:               $(rss "$pid")"
  if [ -n "${SCALE_PROFILE:-}" ]; then
    wait "$prof_pid" || true
    echo "kube-apiserver CPU profile, first ${SCALE_PROFILE} s of converging (cumulative, top 40):"
    go tool pprof -top -cum -nodecount=40 "$work/apiserver.pprof" 2>/dev/null | sed 's/^/  /' || true
  fi
  echo "kube-apiserver peak RSS:           $(rss "$apiserver_pid")"
  python3 - "$work/marks" "$work/cpu" <<'PY'
import sys
marks = dict(l.split()[:2] for l in open(sys.argv[1]) if l.strip())
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
start, end = float(marks.get("converge", 0)), float(marks.get("quiet", marks.get("end", 0)) or 0)
def at(t):  # the last sample at or before t
    best = rows[0]
    for r in rows:
        if float(r[0]) <= t: best = r
    return best
a, b = at(start), at(end or float(rows[-1][0]))
secs = float(b[0]) - float(a[0])
parts = []
for i, name in enumerate(["kube-apiserver", "etcd", "controller"], 1):
    try: parts.append(f"{name} {float(b[i]) - float(a[i]):.1f} s")
    except ValueError: parts.append(f"{name} -")
print(f"CPU while converging ({secs:.1f} s):   " + ", ".join(parts))
# Where the controller's peak resident memory was: heap and stacks (anon) or mapped files (its code).
peak = max((r for r in rows if len(r) >= 6 and r[4] != "-" and r[5] != "-"), key=lambda r: int(r[4]) + int(r[5]), default=None)
if peak:
    print(f"controller resident at its sampled peak: {int(peak[4]) / 1024:.0f} MiB anon + {int(peak[5]) / 1024:.0f} MiB file")
PY

  if [ "$flavor" = ours ] && [ "${SCALE_QUICK:-0}" != 1 ] && grep -q '^after ' "$work/marks"; then
    # A restart of the leader at scale: everything it needs is stored already.
    local before t1 ready2 resync
    before=$(reconciles)
    kill -TERM "$pid"; wait "$pid" || true
    echo "restart $(now)" >> "$work/marks"
    t1=$(now)
    start
    ready2=$(wait_ready "$t1")
    # The first full resync: one reconcile per NamespaceOffloading (the counter starts at 0 again).
    until [ "$(reconciles)" -ge "$n" ]; do sleep 0.2; done
    resync=$(since "$t1")
    echo "restart at scale: /readyz in ${ready2} s, first full resync done in ${resync} s (reconciles before: $before)"
    sleep 60
    echo "controller peak RSS after restart: $(rss "$pid")"
  fi
  echo "end $(now)" >> "$work/marks"
  kill -TERM "$pid"
  # A wrapper (SCALE_WRAP) does not pass the signal on: the controller gets its own.
  [ -z "${SCALE_WRAP:-}" ] || pkill -TERM -f "serve --kubeconfig $work/user.kubeconfig" || true
  wait "$pid" || true
  pid=""
  sleep 1 # the audit log's last batch
  scripts/audit_writes.py "$work/audit.log" "$work/marks" "$n" "$user" admin
  echo "controller log: $(grep -ci 'warn\|error' "$work/controller.log" || true) lines with warn/error"
  tests/controlplane/down.sh "$work/cp"
  if [ "${SCALE_KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi
  work=""
}

case $who in
  ours | liqo) round "$who" ;;
  both) round ours; round liqo ;;
  *) echo "usage: $0 [NAMESPACES] [NODES] [ours|liqo|both]" >&2; exit 2 ;;
esac
