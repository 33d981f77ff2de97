# Binaries built once into a cache directory and reused while a stamp matches: the part that
# tests/controlplane/build.sh, tests/liqo/build.sh and tests/tools/build.sh share. Sourced, not run.
#
#   cache_fresh DIR STAMP WANT BIN...      true when DIR/STAMP holds WANT and every DIR/BIN is executable
#   cache_lock DIR WHO                     holds DIR/.lock (flock) until the script exits; says on
#                                          stderr that WHO waits when another build holds it
#   cache_tmp DIR                          sets cache_tmpdir to a new directory inside DIR, removed on exit
#   cache_install DIR STAMP WANT BIN...    moves each BIN from cache_tmpdir into DIR, then writes the stamp
#
# Binaries are built into cache_tmpdir and renamed into place (rename(2) within one file system), so
# a process that runs an old binary keeps its inode; the stamp is removed before a build and written
# last, so an interrupted build is never taken for a finished one.

cache_fresh() {
  local dir=$1 stamp=$2 want=$3 b
  shift 3
  [ -f "$dir/$stamp" ] && [ "$(cat "$dir/$stamp")" = "$want" ] || return 1
  for b in "$@"; do [ -x "$dir/$b" ] || return 1; done
}

cache_lock() {
  local dir=$1 who=$2
  mkdir -p "$dir"
  command -v flock >/dev/null || return 0
  exec 9>"$dir/.lock"
  if ! flock -n 9; then
    echo "$who: another build is writing into $dir; waiting for it" >&2
    flock 9
  fi
}

cache_tmp() {
  mkdir -p "$1"
  cache_tmpdir=$(mktemp -d "$1/.build.XXXXXX")
  # shellcheck disable=SC2064 # the directory is known now
  trap "rm -rf '$cache_tmpdir'" EXIT
}

cache_install() {
  local dir=$1 stamp=$2 want=$3 b
  shift 3
  for b in "$@"; do
    [ -x "$cache_tmpdir/$b" ] || { echo "$b was not built" >&2; return 1; }
  done
  for b in "$@"; do mv -f "$cache_tmpdir/$b" "$dir/$b"; done
  echo "$want" > "$dir/$stamp"
}
