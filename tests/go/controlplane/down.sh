#!/usr/bin/env bash
# Stops what up.sh DIR started: kube-controller-manager, kube-apiserver, etcd, in that order, by
# the PIDs in DIR/*.pid. Each gets SIGTERM and is waited for until its PID is gone; after
# DOWN_TIMEOUT seconds (default 20) it gets SIGKILL. The PID files are removed. A process of
# ours that lost its PID file (its command line names a path under DIR) is stopped the same way.
# Safe to call twice, or when nothing runs; always exits 0. Data and logs stay in DIR.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || exit 0
dir=$(cd "$1" && pwd)
grace=${DOWN_TIMEOUT:-20}

running() { # pid name: alive, not a zombie (empty cmdline), and still that binary (argv[0])
  case $1 in '' | *[!0-9]*) return 1 ;; esac
  local a=""
  IFS= read -r -d "" a 2>/dev/null < "/proc/$1/cmdline" || true
  [ "${a##*/}" = "$2" ]
}
wait_gone() { # pid name seconds
  local until=$(( SECONDS + $3 ))
  while running "$1" "$2"; do
    [ "$SECONDS" -lt "$until" ] || return 1
    sleep 0.1
  done
}
stop() { # pid name
  running "$1" "$2" || return 0
  kill -TERM "$1" 2>/dev/null || true
  wait_gone "$1" "$2" "$grace" && return 0
  echo "down.sh: $2 ($1) still running ${grace}s after SIGTERM; sending SIGKILL" >&2
  kill -KILL "$1" 2>/dev/null || true
  wait_gone "$1" "$2" 10 || echo "down.sh: $2 ($1) survives SIGKILL" >&2
}

for name in kube-controller-manager kube-apiserver etcd; do
  pidfile="$dir/$name.pid"
  if [ -f "$pidfile" ]; then
    stop "$(cat "$pidfile" 2>/dev/null || true)" "$name"
    rm -f "$pidfile"
  fi
  # Leftovers without a PID file: that binary, with a path under DIR on its command line.
  for proc in /proc/[0-9]*; do
    pid=${proc#/proc/}
    running "$pid" "$name" || continue
    cmdline=$(tr '\0' '\n' 2>/dev/null < "$proc/cmdline" || true)
    case $cmdline in *"$dir/"*) ;; *) continue ;; esac
    echo "down.sh: stopping $name ($pid) of $dir, which had no PID file" >&2
    stop "$pid" "$name"
  done
done
exit 0
