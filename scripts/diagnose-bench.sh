#!/usr/bin/env bash
# `diagnose -A` at fleet scale on a real control plane: NAMESPACES offloaded namespaces (default
# 500) across CLUSTERS virtual clusters (default 10), release build. The objects are written as the
# reconcile loop leaves them (no controller runs, so nothing changes while diagnose reads): a
# Namespace and a Ready NamespaceOffloading per namespace with a condition per cluster, a virtual
# node, tenant namespace and NamespaceMap per cluster with every namespace's entry, Accepted. One
# namespace in a hundred is broken, in turn: AllFailed (CreationLoopBackOff in one cluster),
# NoClusterSelected (a selector that matches no cluster), or a NamespaceOffloading named `offload`.
# diagnose runs as its own user, so the API server's audit log counts its requests alone.
# Prints: the time to write the objects; per run, wall time, peak RSS and the API requests by verb
# and resource, for the baseline (`kubectl get namespaceoffloadings -A -o json` as the same user,
# three runs), `diagnose -A` (three runs) and `diagnose -n` of one namespace; whether -A named
# exactly the broken namespaces (the script fails otherwise, after the summary); and a summary
# line: requests per namespace, and -A's time and requests as ratios of the baseline's.
# Usage: scripts/diagnose-bench.sh [NAMESPACES] [CLUSTERS]
# Env: CONTROLPLANE_BIN (as tests/go/controlplane/build.sh), BENCH_KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-500}; m=${2:-10}
cargo build --quiet --release --bin offloading-webhook
bin=$(tests/go/controlplane/build.sh)
cluster_id=b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a
work=$(mktemp -d)
cleanup() {
  tests/go/controlplane/down.sh "$work/cp" >/dev/null 2>&1 || true
  if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

echo "=== diagnose -A: $n namespaces x $m virtual clusters ($(date -u +%Y-%m-%d), $(nproc) cores) ==="
printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'omitStages: ["RequestReceived"]' 'rules:' \
  '- level: Metadata' '  users: ["diagnose"]' '- level: None' > "$work/audit-policy.yaml"
kubeconfig=$(CONTROLPLANE_BIN=$bin UP_APISERVER_ARGS="--audit-policy-file=$work/audit-policy.yaml \
  --audit-log-path=$work/audit.log --audit-log-maxsize=0 --audit-log-format=json" \
  tests/go/controlplane/up.sh "$work/cp")
k() { "$bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }
k apply -f manifests/crds.yaml >/dev/null
k wait --for condition=Established --timeout 60s \
  crd/namespaceoffloadings.offloading.liqo.io crd/namespacemaps.virtualkubelet.liqo.io >/dev/null

# diagnose's own user (a member of system:masters), so that the audit log tells its requests apart.
pki="$work/cp/pki"
openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=diagnose" \
  -keyout "$work/user.key" -out "$work/user.csr" >/dev/null 2>&1
printf 'extendedKeyUsage=clientAuth\n' > "$work/user.ext"
openssl x509 -req -in "$work/user.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
  -extfile "$work/user.ext" -out "$work/user.crt" >/dev/null 2>&1
sed -e "s|client-certificate-data: .*|client-certificate-data: $(base64 -w0 < "$work/user.crt")|" \
  -e "s|client-key-data: .*|client-key-data: $(base64 -w0 < "$work/user.key")|" "$kubeconfig" > "$work/user.kubeconfig"

# The objects: specs first (server-side apply), then the statuses on the status subresource.
python3 - "$n" "$m" "$cluster_id" "$work" <<'PY'
import json, sys
n, m, cid, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ids = [f"cluster-{i:02}" for i in range(m)]
t = "2026-01-01T00:00:00Z"
spec, status, broken = [], [], []
for c in ids:
    spec.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"liqo-{c}", "labels": {
        "liqo.io/type": "virtual-node", "liqo.io/remote-cluster-id": c, "topology.liqo.io/region": "eu-west"}}})
    spec.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"liqo-tenant-{c}", "labels": {
        "discovery.liqo.io/cluster-id": c, "discovery.liqo.io/tenant-namespace": "true"}}})
desired = {c: {} for c in ids}
current = {c: {} for c in ids}
for i in range(n):
    ns = f"ns-{i:05}"
    remote = f"{ns}-{cid}"
    spec.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kind = i % 100 == 99 and (i // 100) % 3
    obj = {"apiVersion": "offloading.liqo.io/v1alpha1", "kind": "NamespaceOffloading",
           "metadata": {"name": "offloading", "namespace": ns},
           "spec": {"namespaceMappingStrategy": "DefaultName", "podOffloadingStrategy": "LocalAndRemote",
                    "clusterSelector": {"nodeSelectorTerms": []}}}
    ready = lambda c: [{"type": "Ready", "status": "True", "lastTransitionTime": t,
                        "reason": "RemoteNamespaceCreated", "message": "the remote namespace exists"}]
    st = {"offloadingPhase": "Ready", "observedGeneration": 1, "remoteNamespaceName": remote,
          "remoteNamespacesConditions": {c: ready(c) for c in ids}}
    chosen = ids
    if i % 100 == 99:
        broken.append(ns)
        if kind == 0:  # AllFailed: one cluster selected, its remote namespace backing off
            chosen = ids[:1]
            obj["spec"]["clusterSelector"] = {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "liqo.io/remote-cluster-id", "operator": "In", "values": [ids[0]]}]}]}
            st["offloadingPhase"] = "AllFailed"
            st["remoteNamespacesConditions"] = {ids[0]: [{"type": "Ready", "status": "False", "lastTransitionTime": t,
                                                          "reason": "CreationLoopBackOff", "message": "cannot create"}]}
        elif kind == 1:  # NoClusterSelected: a region no cluster is in
            chosen = []
            obj["spec"]["clusterSelector"] = {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "topology.liqo.io/region", "operator": "In", "values": ["ap-south"]}]}]}
            st = {"offloadingPhase": "NoClusterSelected", "observedGeneration": 1, "remoteNamespaceName": remote}
        else:  # a name Liqo does not read
            chosen, st = [], None
            obj["metadata"]["name"] = "offload"
    spec.append(obj)
    if st is not None:
        status.append({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": obj["metadata"], "status": st})
    for c in chosen:
        desired[c][ns] = remote
        phase = "CreationLoopBackOff" if i % 100 == 99 else "Accepted"
        current[c][ns] = {"remoteNamespace": remote, "phase": phase}
for c in ids:
    meta = {"name": f"{c}-map", "namespace": f"liqo-tenant-{c}", "labels": {"liqo.io/remote-cluster-id": c}}
    spec.append({"apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap", "metadata": meta,
                 "spec": {"desiredMapping": desired[c]}})
    status.append({"apiVersion": "virtualkubelet.liqo.io/v1alpha1", "kind": "NamespaceMap", "metadata": meta,
                   "status": {"currentMapping": current[c]}})
for name, items in (("spec", spec), ("status", status)):
    with open(f"{work}/{name}.json", "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)
with open(f"{work}/broken", "w") as f:
    f.write("\n".join(broken) + "\n")
PY
t0=$(now)
k apply --server-side --field-manager=bench -f "$work/spec.json" >/dev/null
# Without spec (only the status is written), which client-side validation would refuse.
k apply --server-side --field-manager=bench --subresource=status --validate=false -f "$work/status.json" >/dev/null
echo "objects written in $(since "$t0") s ($(grep -c . "$work/broken") broken namespaces)"

calls() { grep -c '"stage":"ResponseComplete"' "$work/audit.log" 2>/dev/null || echo 0; }
# The audit log is written in batches: wait until it stops growing.
settle() { local a b; b=$(calls); while :; do sleep 1; a=$b; b=$(calls); [ "$a" = "$b" ] && break; done; }
breakdown() { # requests logged after line $1, by verb and resource
  tail -n +"$(($1 + 1))" "$work/audit.log" | python3 -c '
import collections, json, sys
c = collections.Counter()
for line in sys.stdin:
    e = json.loads(line)
    if e.get("stage") != "ResponseComplete": continue
    r = e.get("objectRef", {})
    c[(e["verb"], r.get("resource", e.get("requestURI", "")).split("?")[0])] += 1
print(", ".join(f"{v} {r} {k}" for (v, r), k in sorted(c.items())))'
}
measure() { # label, command... (run as diagnose's user); one line, and its figures in $work/figures
  local label=$1 before lines; shift
  settle; before=$(wc -l < "$work/audit.log" 2>/dev/null || echo 0)
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > "$work/out" 2>/dev/null || true
  settle; lines=$(tail -n +"$((before + 1))" "$work/audit.log" | grep -c '"stage":"ResponseComplete"' || true)
  # time(1) puts "Command exited with non-zero status N" first when diagnose finds a problem.
  read -r secs kib < <(tail -n 1 "$work/time")
  printf '%-22s %6.2f s  peak RSS %4d MiB  %4d API requests (%s)\n' "$label" "$secs" "$((kib / 1024))" "$lines" "$(breakdown "$before")"
  echo "$label $secs $lines" >> "$work/figures"
}
as_user=(--kubeconfig "$work/user.kubeconfig" --cluster-id "$cluster_id")
# The baseline: kubectl reading the same NamespaceOffloadings, as the same user, in the same run.
for i in 1 2 3; do measure "kubectl get nsof -A #$i" "$bin/kubectl" --kubeconfig "$work/user.kubeconfig" get namespaceoffloadings -A -o json; done
for i in 1 2 3; do measure "diagnose -A #$i" target/release/offloading-webhook diagnose -A -o json "${as_user[@]}"; done
found=0
python3 - "$work/out" "$work/broken" <<'PY' || found=$?
import json, sys
r = json.load(open(sys.argv[1]))
named = sorted(l["namespace"] for l in r["namespaces"] if not l["healthy"])
broken = sorted(open(sys.argv[2]).read().split())
total = len(r["namespaces"])
print(f"diagnose -A judged {total} namespaces, named {len(named)} broken; planted {len(broken)}: "
      + ("exactly those" if named == broken else f"DIFFERENT: extra {sorted(set(named) - set(broken))[:5]}, missed {sorted(set(broken) - set(named))[:5]}"))
for note in r.get("notes", []):
    print(f"note: {note}")
sys.exit(0 if named == broken else 1)
PY
measure "diagnose -n" target/release/offloading-webhook diagnose -n ns-00000 "${as_user[@]}"
python3 - "$work/figures" "$n" <<'PY'
import sys
rows = [l.rsplit(" ", 2) for l in open(sys.argv[1]).read().splitlines()]
n = int(sys.argv[2])
def best(prefix):
    runs = [(float(s), int(r)) for label, s, r in rows if label.startswith(prefix)]
    return min(s for s, _ in runs), min(r for _, r in runs)
ks, kr = best("kubectl get nsof -A")
ds, dr = best("diagnose -A")
print(f"summary ({n} namespaces, best of three): diagnose -A {ds:.2f} s, {dr} API requests "
      f"({dr / n:.3f} per namespace); kubectl get nsof -A {ks:.2f} s, {kr} request{'s' if kr != 1 else ''}; "
      f"diagnose -A / kubectl: {ds / ks:.1f}x the time, {dr / kr:.1f}x the requests")
PY
exit "$found"
