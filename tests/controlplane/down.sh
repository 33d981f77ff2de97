#!/usr/bin/env bash
# Stops what up.sh DIR started, by PID, newest first, and waits until each is gone
# (SIGTERM, then SIGKILL after DOWN_TIMEOUT seconds, default 20). Safe to call twice.
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir=$1
[ -d "$dir" ] || exit 0

running() { # pid name: alive, not a zombie, and still that binary
  [ -r "/proc/$1/stat" ] || return 1
  local state
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ "$state" != "Z" ] || return 1
  tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -q "/$2 " 
}

for name in kube-controller-manager kube-apiserver etcd; do
  pidfile="$dir/$name.pid"
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if running "$pid" "$name"; then
    kill -TERM "$pid" 2>/dev/null
    deadline=$(( $(date +%s) + ${DOWN_TIMEOUT:-20} ))
    while running "$pid" "$name" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
    if running "$pid" "$name"; then
      echo "down.sh: $name ($pid) did not stop after SIGTERM; killing it" >&2
      kill -KILL "$pid" 2>/dev/null
      while running "$pid" "$name"; do sleep 0.1; done
    fi
  fi
  rm -f "$pidfile"
done
exit 0
