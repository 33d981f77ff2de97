#!/usr/bin/env bash
# The quickest way to see the webhook work: dev certificates for localhost (made once, in certs/),
# then `serve` on https://localhost:9443 with no cluster. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -f certs/tls.crt ] || cargo run --quiet -- certs --out certs --dns localhost --ip 127.0.0.1
# No shutdown delay here: nothing routes to a local run but you, and Ctrl-C should stop it at once.
exec cargo run --quiet -- serve --no-cluster --cluster-id b3ad5ed4-2ba8-4b1d-8a6c-0f9e2d6e3c1a --shutdown-delay-seconds 0 "$@"
