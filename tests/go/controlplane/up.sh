#!/usr/bin/env bash
# Starts a throwaway control plane (etcd, kube-apiserver, kube-controller-manager) on loopback
# with everything under DIR, waits until it serves, writes DIR/kubeconfig and prints its path
# (and nothing else) on stdout. Progress and, on failure, the end of the logs go to stderr.
#
# Usage: up.sh DIR   Several DIRs may run at once: ports are picked free, nothing is shared.
#                    A DIR that a stopped control plane used is wiped (etcd data, PKI, logs) first.
# Env:   CONTROLPLANE_BIN  the binaries (default: what build.sh prints; build.sh builds if needed)
#        UP_TIMEOUT        seconds to wait for /readyz and namespace default (default 120)
#        UP_ATTEMPTS       start attempts when a picked port turns out taken (default 3)
#        UP_APISERVER_ARGS extra kube-apiserver flags, split on whitespace (e.g. --v=4)
#
# Files in DIR: kubeconfig, env (sourceable: KUBECONFIG, APISERVER_URL, CONTROLPLANE_BIN),
# {etcd,kube-apiserver,kube-controller-manager}.pid (each the binary's own PID), ports, pki/,
# etcd/, logs/{etcd,kube-apiserver,kube-controller-manager}.log. down.sh DIR stops it all.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
timeout=${UP_TIMEOUT:-120}
attempts=${UP_ATTEMPTS:-3}
read -ra extra_apiserver_args <<< "${UP_APISERVER_ARGS:-}"
names=(etcd kube-apiserver kube-controller-manager)
command -v openssl >/dev/null || { echo "up.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }

if [ -n "${CONTROLPLANE_BIN:-}" ]; then bin=$CONTROLPLANE_BIN; else bin=$("$here/build.sh"); fi
bin=$(cd "$bin" && pwd)
for b in "${names[@]}" kubectl; do
  [ -x "$bin/$b" ] || { echo "up.sh: $bin/$b is missing: run tests/go/controlplane/build.sh" >&2; exit 1; }
done

argv0() { # pid -> the process's argv[0] ("" when it is gone)
  local a=""
  IFS= read -r -d "" a 2>/dev/null < "/proc/$1/cmdline" || true
  printf '%s' "$a"
}
ours() { [ "$(argv0 "$1")" = "$bin/$2" ] || [ "$(basename -- "$(argv0 "$1")")" = "$2" ]; }

# --- a DIR that is still running is refused; leftovers of a stopped one are wiped ----------------
for name in "${names[@]}"; do
  pidfile="$dir/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && ours "$pid" "$name"; then
    echo "up.sh: $name ($pid) of $dir is still running: run down.sh $dir first" >&2; exit 1
  fi
  rm -f "$pidfile"
done
rm -rf "$dir/etcd" "$dir/pki" "$dir/logs" "$dir/apiserver-certs" "$dir/kubeconfig" "$dir/env" "$dir/ports"
pki="$dir/pki"; logs="$dir/logs"
mkdir -p "$pki" "$logs"

# --- on any failure: the end of the logs, stop what was started, exit non-zero ----------------
done_ok=0
failed_in=""
on_exit() {
  local rc=$?
  [ "$done_ok" = 1 ] && return 0
  local name lines
  for name in "${names[@]}"; do
    [ -s "$logs/$name.log" ] || continue
    lines=15; [ "$name" = "$failed_in" ] && lines=60
    echo "--- last $lines lines of $logs/$name.log" >&2
    tail -n "$lines" "$logs/$name.log" >&2
  done
  DOWN_TIMEOUT=${DOWN_TIMEOUT:-5} "$here/down.sh" "$dir" >&2 || true
  echo "up.sh: failed; the control plane in $dir is stopped" >&2
  [ "$rc" != 0 ] || rc=1
  exit "$rc"
}
trap on_exit EXIT
trap 'echo "up.sh: interrupted" >&2; exit 130' INT TERM HUP
fail() { # [name of the process whose log tells why] message
  if [ $# -gt 1 ]; then failed_in=$1; shift; fi
  echo "up.sh: $*" >&2
  exit 1
}

# --- PKI ---------------------------------------------------------------------------------------
ossl() { openssl "$@" >/dev/null 2>&1 || fail "openssl $* failed"; }
ossl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=test-control-plane-ca" \
  -keyout "$pki/ca.key" -out "$pki/ca.crt"
sign() { # name subject extensions
  ossl req -newkey rsa:2048 -nodes -subj "$2" -keyout "$pki/$1.key" -out "$pki/$1.csr"
  printf '%s\n' "$3" > "$pki/$1.ext"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/$1.ext" -out "$pki/$1.crt"
}
sign apiserver "/CN=kube-apiserver" \
  "subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
sign admin "/O=system:masters/CN=admin" \
  "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# --- ports ------------------------------------------------------------------------------------
# Random loopback ports below the kernel's ephemeral range, so that no outgoing connection (whose
# local port comes from that range) can take one between the pick and the bind; a port any TCP
# socket already uses is skipped. Two up.sh picking the same port at once is unlikely, and a
# failed bind is retried with new ports (UP_ATTEMPTS).
read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range || { eph_lo=32768; eph_hi=60999; }
if [ "$eph_lo" -gt 12000 ]; then port_lo=10000; port_hi=$(( eph_lo - 1 ))
elif [ "$eph_hi" -lt 63000 ]; then port_lo=$(( eph_hi + 1 )); port_hi=65535
else port_lo=10000; port_hi=65535
fi
taken=" "
free_port() {
  local p hex used
  used=$(awk 'FNR > 1 { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null || true)
  while :; do
    p=$(( ( (RANDOM << 15) | RANDOM ) % (port_hi - port_lo + 1) + port_lo ))
    printf -v hex '%04X' "$p"
    case $taken in *" $p "*) continue ;; esac
    grep -qx "$hex" <<< "$used" && continue
    taken+="$p "
    echo "$p"
    return
  done
}

b64() { base64 -w0 < "$1"; }
write_kubeconfig() {
  cat > "$dir/kubeconfig.tmp" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(b64 "$pki/admin.crt")
    client-key-data: $(b64 "$pki/admin.key")
contexts:
- name: test
  context:
    cluster: test
    user: admin
current-context: test
KC
  mv -f "$dir/kubeconfig.tmp" "$dir/kubeconfig"
}

# --- processes --------------------------------------------------------------------------------
# Launched straight from this shell (a simple command in the background: bash execs the binary in
# the forked child), so $! is the binary's own PID; checked through /proc/PID/cmdline. All three
# standard streams are redirected, so nobody who reads up.sh's output waits on theirs.
start() { # name args...
  local name=$1 pid i
  shift
  "$bin/$name" "$@" </dev/null >"$logs/$name.log" 2>&1 &
  pid=$!
  disown "$pid" # no "Killed" job notices from this shell
  echo "$pid" > "$dir/$name.pid"
  for (( i = 0; i < 100; i++ )); do # the fork may not have exec'd yet
    [ "$(argv0 "$pid")" = "$bin/$name" ] && return 0
    [ -n "$(argv0 "$pid")" ] || return 0 # exited already: the caller finds out why from its log
    sleep 0.02
  done
  fail "$name" "PID $pid is not $bin/$name but '$(argv0 "$pid")'"
}
alive() { [ -n "$(argv0 "$(cat "$dir/$1.pid")")" ]; }
bind_failed() { grep -q 'address already in use' "$logs/$1.log" 2>/dev/null; }
kubectl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout 5s "$@"; }

began=$(date +%s)
deadline=$(( began + timeout ))
attempt=1
while :; do
  etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
  write_kubeconfig
  start etcd --name controlplane --data-dir "$dir/etcd" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "controlplane=http://127.0.0.1:$peer_port" --initial-cluster-state new \
    --unsafe-no-fsync --log-level warn
  start kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none --service-cluster-ip-range 10.0.0.0/24 \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
    --service-account-signing-key-file "$pki/sa.key" --authorization-mode RBAC \
    --cert-dir "$dir/apiserver-certs" --profiling=false ${extra_apiserver_args[@]+"${extra_apiserver_args[@]}"}

  retry=0
  until [ "$(kubectl get --raw /readyz 2>/dev/null)" = "ok" ] && kubectl get namespace default >/dev/null 2>&1; do
    for name in etcd kube-apiserver; do
      alive "$name" && continue
      if bind_failed "$name" && [ "$attempt" -lt "$attempts" ]; then retry=1; break 2; fi
      fail "$name" "$name exited during start-up"
    done
    [ "$(date +%s)" -lt "$deadline" ] || fail kube-apiserver "kube-apiserver not ready after ${timeout}s"
    sleep 0.5
  done
  [ "$retry" = 1 ] || break
  echo "up.sh: a picked port was taken (attempt $attempt of $attempts); starting again on other ports" >&2
  # An apiserver still waiting for a dead etcd may sit out SIGTERM: these are thrown away anyway.
  DOWN_TIMEOUT=3 "$here/down.sh" "$dir" >&2
  rm -rf "$dir/etcd" "$dir/apiserver-certs"
  for name in etcd kube-apiserver; do
    [ ! -f "$logs/$name.log" ] || mv -f "$logs/$name.log" "$logs/$name.attempt$attempt.log"
  done
  attempt=$(( attempt + 1 ))
done

start kube-controller-manager --kubeconfig "$dir/kubeconfig" \
  --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
  --leader-elect=false --secure-port 0 --root-ca-file "$pki/ca.crt" \
  --use-service-account-credentials=false \
  --controllers namespace-controller,garbage-collector-controller
sleep 0.5
alive kube-controller-manager || fail kube-controller-manager "kube-controller-manager exited during start-up"

printf 'etcd=%s\netcd_peer=%s\napiserver=%s\n' "$etcd_port" "$peer_port" "$api_port" > "$dir/ports"
{
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  printf 'export APISERVER_URL=%q\n' "https://127.0.0.1:$api_port"
  printf 'export CONTROLPLANE_BIN=%q\n' "$bin"
} > "$dir/env"
echo "up.sh: $dir ready at https://127.0.0.1:$api_port in $(( $(date +%s) - began ))s" >&2
done_ok=1
echo "$dir/kubeconfig"
