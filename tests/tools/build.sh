#!/usr/bin/env bash
# Builds the chart and alert test tools from Go modules into a cache directory, once: helm
# (helm.sh/helm/v3/cmd/helm), promtool (github.com/prometheus/prometheus/cmd/promtool) and
# oci-layout (./oci-layout here: writes an OCI image layout from a root filesystem tarball, for
# scripts/image.sh). A second call with the same inputs only prints the directory.
#
# Usage: build.sh [TOOL...]  -> prints the bin directory, and nothing else, on stdout
#                               (default <repo>/target/tools/bin, or $TOOLS_BIN); progress and
#                               errors go to stderr. Without TOOL, all three.
# Env:   TOOLS_BIN        where the binaries live
#        GO               the go command (default: go on PATH, else /usr/local/go/bin/go)
#        GO_BUILD_JOBS    go build -p (default 2, the machine's cores)
#
# Each tool has its own stamp ($bin/.TOOL.stamp: version, hash of versions.env and of its sources
# and of this script, Go version); concurrent calls are serialised with flock, and binaries are
# built into a temporary directory and renamed into place (tests/lib/build-cache.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=../lib/build-cache.sh
. "$repo/tests/lib/build-cache.sh"
# shellcheck source=versions.env
. "$here/versions.env"
# helm's default Kubernetes version (for `helm template` and `helm lint`) is the test control plane's.
# shellcheck source=../controlplane/versions.env
KUBERNETES_VERSION=$(. "$here/../controlplane/versions.env" && echo "$KUBERNETES_VERSION")
kube_major=${KUBERNETES_VERSION#v}; kube_minor=${kube_major#*.}; kube_major=${kube_major%%.*}; kube_minor=${kube_minor%%.*}
bin=${TOOLS_BIN:-$repo/target/tools/bin}
case $bin in /*) ;; *) bin=$PWD/$bin ;; esac
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(helm promtool oci-layout)

go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$go" ] || command -v "$go" >/dev/null || {
  echo "tests/tools/build.sh: Go is needed to build helm and promtool (go not on PATH)" >&2; exit 1
}
goversion=$("$go" env GOVERSION)

# What each tool is built from, and how.
target() {
  case $1 in
    helm) echo "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    promtool) echo "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION" ;;
    oci-layout) echo "./oci-layout" ;;
    *) echo "tests/tools/build.sh: unknown tool $1 (helm, promtool, oci-layout)" >&2; exit 2 ;;
  esac
}
ldflags() {
  case $1 in
    # What helm's own Makefile stamps, so `helm version` names the release.
    helm)
      local v
      echo -n "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      for v in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        echo -n " -X $v.k8sVersionMajor=$kube_major -X $v.k8sVersionMinor=$kube_minor"
      done
      echo ;;
    promtool) echo "-s -w -X github.com/prometheus/common/version.Version=${PROMETHEUS_VERSION#v} -X github.com/prometheus/common/version.Branch=release" ;;
    *) echo "-s -w" ;;
  esac
}
# promtool is used for `check rules` and `test rules` only: Prometheus' remove_all_sd tag leaves out
# the cloud service discoveries (AWS, Azure, GCE, ... SDKs), most of a cold build.
tags() { [ "$1" = promtool ] && echo remove_all_sd || echo ""; }
stamp_want() {
  local sources=""
  [ "$1" = oci-layout ] && sources=$(cat "$here"/oci-layout/go.mod "$here"/oci-layout/go.sum "$here"/oci-layout/*.go)
  echo "$(target "$1") $({ cat "$here/versions.env" "$here/build.sh"; echo "$sources"; ldflags "$1"; tags "$1"; } | sha256sum | cut -c1-16) $goversion"
}
fresh() { cache_fresh "$bin" ".$1.stamp" "$(stamp_want "$1")" "$1"; }

stale=()
for t in "${tools[@]}"; do target "$t" >/dev/null; fresh "$t" || stale+=("$t"); done
if [ ${#stale[@]} -eq 0 ]; then echo "$bin"; exit 0; fi

cache_lock "$bin" tests/tools/build.sh
cache_tmp "$bin"
tmp=$cache_tmpdir
for t in "${stale[@]}"; do
  fresh "$t" && continue
  start=$(date +%s)
  echo "tests/tools/build.sh: building $t from $(target "$t") (cold: minutes)" >&2
  rm -f "$bin/.$t.stamp"
  if [ "$t" = oci-layout ]; then
    (cd "$here/oci-layout" && CGO_ENABLED=0 "$go" build -buildvcs=false -p "${GO_BUILD_JOBS:-2}" -trimpath -ldflags "$(ldflags "$t")" -o "$tmp/$t" .) >&2
  else
    # go install MODULE@VERSION builds with the module's own go.mod/go.sum, outside any module here.
    (cd "$tmp" && GOBIN="$tmp" CGO_ENABLED=0 "$go" install -p "${GO_BUILD_JOBS:-2}" -trimpath -tags "$(tags "$t")" -ldflags "$(ldflags "$t")" "$(target "$t")") >&2
  fi
  cache_install "$bin" ".$t.stamp" "$(stamp_want "$t")" "$t" || { echo "tests/tools/build.sh: $t was not built" >&2; exit 1; }
  echo "tests/tools/build.sh: built $t in $(( $(date +%s) - start ))s" >&2
done
echo "$bin"
