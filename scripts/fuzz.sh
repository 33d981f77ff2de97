#!/usr/bin/env bash
# Fuzzes the review path and the selector and name rules (tests/fuzzing) on stable Rust, in
# process: N inputs per target (default 10 million), from a fixed seed, on every core. Prints
# inputs/s, the total, panics, failures by kind, and the largest answer; exits 1 on any failure.
# The first input of each failure kind is saved under target/fuzz/failures/ (replay it with
# `cargo run --profile fuzz --example fuzz -- --target review --replay FILE`).
# Usage: scripts/fuzz.sh [N [SEED]]; FUZZ_THREADS=1 to leave cores to others; FUZZ_SECONDS=600 to
# stop each target after 10 minutes whatever N (the summary gives the count that ran);
# FUZZ_TARGET=review or selector for one target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-10000000}
seed=${2:-1}
opts=()
[ -n "${FUZZ_THREADS:-}" ] && opts=(--threads "$FUZZ_THREADS")
[ -n "${FUZZ_SECONDS:-}" ] && opts+=(--max-seconds "$FUZZ_SECONDS")
[ -n "${FUZZ_TARGET:-}" ] && opts+=(--target "$FUZZ_TARGET")
cargo build --quiet --locked --profile fuzz --example fuzz
start=$(date +%s)
status=0
target/fuzz/examples/fuzz --inputs "$n" --seed "$seed" "${opts[@]}" || status=$?
echo "fuzz.sh: wall time $(( $(date +%s) - start )) s"
exit $status
