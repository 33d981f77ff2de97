#!/usr/bin/env bash
# Every check and every test, as CI runs them: format, lints, then unit, router, TLS and
# end-to-end tests against a real kube-apiserver built from Go modules (cached after the first run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
step "control-plane binaries (tests/controlplane/build.sh; cached in target/controlplane/bin)"
CONTROLPLANE_BIN=$(tests/controlplane/build.sh)
export CONTROLPLANE_BIN
step "the oldest Kubernetes the chart claims (tests/controlplane/build.sh v1.30; cached in target/controlplane/v1.30.*/bin)"
CONTROLPLANE_BIN_V1_30=$(tests/controlplane/build.sh v1.30)
export CONTROLPLANE_BIN_V1_30
step "Liqo v1.2 binaries (tests/liqo/build.sh; cached in target/liqo/bin)"
LIQO_BIN=$(tests/liqo/build.sh)
export LIQO_BIN
step "cargo test (unit, router, TLS, e2e on the real control plane)"
cargo test --locked --all-targets "$@"
