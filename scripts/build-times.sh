#!/usr/bin/env bash
# CPU time of each compile unit of this package on a cold `cargo test --all-targets --no-run`,
# dependencies kept: removes the package's own build output (cargo clean -p), builds with a
# RUSTC_WRAPPER that records each rustc's user+sys time, and prints one line per unit (largest
# first), the total, and the total of the test binaries that include tests/support/.
# CPU time rather than wall time: on a shared machine the wall time says more about the load
# than about the build. Linking is part of each unit's time.
# Usage: scripts/build-times.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/rustc" <<'EOF'
#!/usr/bin/env bash
# Records "CRATE KIND USER SYS" for each rustc run, in $BUILD_TIMES_LOG.
rustc=$1; shift
name=- kind=-
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --crate-name) name=${args[i+1]} ;;
    --test) kind=test ;;
    --crate-type) [ "$kind" = test ] || kind=${args[i+1]} ;;
  esac
done
exec /usr/bin/time -a -o "$BUILD_TIMES_LOG" -f "$name $kind %U %S" "$rustc" "$@"
EOF
chmod +x "$work/rustc"
[ -x /usr/bin/time ] || { echo "build-times.sh: /usr/bin/time is needed (Debian package time)" >&2; exit 1; }
support_users=$(grep -l '^mod support;' tests/*.rs | xargs -n1 basename | sed 's/\.rs$//' | tr '\n' ' ')

cargo test --quiet --locked --all-targets --no-run >/dev/null # dependencies, if missing
cargo clean --quiet -p offloading-webhook
start=$(date +%s)
RUSTC_WRAPPER="$work/rustc" BUILD_TIMES_LOG="$work/log" cargo test --quiet --locked --all-targets --no-run >&2
wall=$(( $(date +%s) - start ))
awk -v users=" $support_users" -v wall="$wall" '
  $1 == "-" || $1 == "___" { next }
  { cpu = $3 + $4; total += cpu; n++
    if (index(users, " " $1 " ")) { support += cpu; s++ }
    printf "%8.1f s  %s (%s)\n", cpu, $1, $2 }
  END {
    printf "%8.1f s  all %d units (wall %d s)\n", total, n, wall
    printf "%8.1f s  the %d test binaries that include tests/support/\n", support, s
  }' "$work/log" | sort -rn
