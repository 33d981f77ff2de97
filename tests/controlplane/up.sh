#!/usr/bin/env bash
# Starts a throwaway control plane (etcd, kube-apiserver, kube-controller-manager) on loopback
# with everything under DIR, waits until it serves, writes DIR/kubeconfig and prints its path.
# Usage: up.sh DIR   (several DIRs may run at once: ports are picked free, nothing is shared)
# Env: CONTROLPLANE_BIN (binaries; default: what build.sh prints), UP_TIMEOUT (seconds, default 120)
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
dir=$(cd "$1" && pwd)
bin=${CONTROLPLANE_BIN:-$("$here/build.sh")}
timeout=${UP_TIMEOUT:-120}
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "$bin/$b" ] || { echo "up.sh: $bin/$b is missing: run tests/controlplane/build.sh" >&2; exit 1; }
done
command -v openssl >/dev/null || { echo "up.sh: openssl is needed (apt-get install openssl)" >&2; exit 1; }
if [ -f "$dir/kube-apiserver.pid" ]; then
  echo "up.sh: $dir already has a control plane: run down.sh $dir first" >&2; exit 1
fi

fail() {
  echo "up.sh: $1" >&2
  for log in "$dir"/logs/*.log; do
    [ -f "$log" ] && { echo "--- last lines of $log" >&2; tail -n 25 "$log" >&2; }
  done
  "$here/down.sh" "$dir" >&2 || true
  exit 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- PKI -------------------------------------------------------------------------------------
pki="$dir/pki"; mkdir -p "$pki" "$dir/logs"
ossl() { openssl "$@" >/dev/null 2>&1 || fail "openssl $1 failed"; }
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
extendedKeyUsage=serverAuth"
sign admin "/O=system:masters/CN=admin" "extendedKeyUsage=clientAuth"
ossl genrsa -out "$pki/sa.key" 2048
ossl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub"

# --- ports and kubeconfig --------------------------------------------------------------------
etcd_port=$(free_port); peer_port=$(free_port); api_port=$(free_port)
b64() { base64 -w0 < "$1"; }
cat > "$dir/kubeconfig" <<KC
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
  context: {cluster: test, user: admin}
current-context: test
KC
cat > "$dir/env" <<ENV
export KUBECONFIG=$dir/kubeconfig
export APISERVER_URL=https://127.0.0.1:$api_port
export CONTROLPLANE_BIN=$bin
ENV

# --- processes ------------------------------------------------------------------------------
# Started straight from this shell with all three standard streams redirected, so \$! is the
# binary's own PID and nobody waiting on our output waits on theirs.
start() { # name args...
  local name=$1; shift
  "$bin/$name" "$@" </dev/null >"$dir/logs/$name.log" 2>&1 &
  echo $! > "$dir/$name.pid"
}

start etcd --name default --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "default=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level warn

start kube-apiserver --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --endpoint-reconciler-type none --service-cluster-ip-range 10.0.0.0/24 \
  --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --service-account-issuer https://kubernetes.default.svc --service-account-key-file "$pki/sa.pub" \
  --service-account-signing-key-file "$pki/sa.key" --authorization-mode RBAC \
  --cert-dir "$dir/apiserver-certs" --profiling=false

deadline=$(( $(date +%s) + timeout ))
kubectl() { "$bin/kubectl" --kubeconfig "$dir/kubeconfig" --request-timeout 5s "$@"; }
until [ "$(kubectl get --raw /readyz 2>/dev/null)" = "ok" ] && kubectl get namespace default >/dev/null 2>&1; do
  for p in etcd kube-apiserver; do
    kill -0 "$(cat "$dir/$p.pid")" 2>/dev/null || fail "$p exited during start-up"
  done
  [ "$(date +%s)" -lt "$deadline" ] || fail "kube-apiserver not ready after ${timeout}s"
  sleep 0.5
done

start kube-controller-manager --kubeconfig "$dir/kubeconfig" \
  --authentication-kubeconfig "$dir/kubeconfig" --authorization-kubeconfig "$dir/kubeconfig" \
  --leader-elect=false --secure-port 0 --root-ca-file "$pki/ca.crt" \
  --controllers namespace-controller,garbage-collector-controller
sleep 0.5
kill -0 "$(cat "$dir/kube-controller-manager.pid")" 2>/dev/null || fail "kube-controller-manager exited during start-up"

echo "$dir/kubeconfig"
