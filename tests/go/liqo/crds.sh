#!/usr/bin/env bash
# Installs Liqo v1.2's own CRDs (all 28, from the Go module: deployments/liqo/charts/liqo-crds/crds)
# into the cluster of $KUBECONFIG (or --kubeconfig ARG), server-side: the virtualnodes CRD is too
# large for a client-side apply's annotation. The Rust tests do the same (tests/support/liqo.rs).
#
# Usage: crds.sh [kubectl args...]   e.g. crds.sh --kubeconfig /tmp/cp-x/kubeconfig
# Env:   KUBECTL  the kubectl to use (default: $CONTROLPLANE_BIN/kubectl, else kubectl on PATH)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
kubectl=${KUBECTL:-${CONTROLPLANE_BIN:+$CONTROLPLANE_BIN/kubectl}}
kubectl=${kubectl:-kubectl}
dir=$(cd "$here" && "$go" mod download -json github.com/liqotech/liqo@v1.2.0 | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -d "$dir/deployments/liqo/charts/liqo-crds/crds" ] || { echo "crds.sh: no CRDs in '$dir'" >&2; exit 1; }
"$kubectl" "$@" apply --server-side -f "$dir/deployments/liqo/charts/liqo-crds/crds" >&2
for i in $(seq 30); do
  "$kubectl" "$@" wait --for=condition=Established --timeout=30s \
    crd/namespaceoffloadings.offloading.liqo.io crd/namespacemaps.offloading.liqo.io \
    crd/virtualnodes.offloading.liqo.io >&2 2>/dev/null && exit 0
  sleep 1
done
echo "crds.sh: Liqo's offloading CRDs did not become Established" >&2; exit 1
