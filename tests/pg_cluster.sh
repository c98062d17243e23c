#!/usr/bin/env bash
# Summary: A private PostgreSQL cluster for the tests: made in a directory of its own, reached by its unix socket only.
# Usage: tests/pg_cluster.sh start DIR   (prints the DATABASE_URL)
#        tests/pg_cluster.sh stop DIR | restart DIR | url DIR
#
# start: initdb into DIR/data (as the unprivileged user `postgres` when run as root:
# initdb refuses root; DIR's parent must let that user in: /tmp does), a socket in DIR, no TCP port, trust authentication (only the
# socket's directory, 0700, guards it); then a database "harness" and the URL on
# stdout (a cluster that runs already is left as it is). stop: a fast shutdown (pg_ctl -m fast), waited for; nothing is left
# running. restart: stop, then start the same cluster again (the tests' "database
# restarted mid-run"). Debian's postgresql package provides the binaries
# (/usr/lib/postgresql/<version>/bin). Exit codes: 0 done, 1 failed, 2 bad usage.
set -euo pipefail

if [[ "${1:-}" == --help ]]; then
  sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
fi
(($# == 2)) || { echo "usage: pg_cluster.sh start|stop|restart|url DIR" >&2; exit 2; }
cmd=$1
dir=$(realpath -m -- "$2")

bindir() {
  local d
  d=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$d" && -x "$d/pg_ctl" ]] || { echo "pg_cluster: no PostgreSQL server binaries (Debian: apt-get install postgresql)" >&2; exit 1; }
  printf '%s\n' "$d"
}

as_owner() { # <cmd...>: as postgres when root (initdb and postgres refuse root), else as ourselves
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

url() { printf 'postgresql:///harness?host=%s&user=harness\n' "$dir"; }

pg_start() {
  local bin
  bin=$(bindir)
  "$bin/pg_ctl" --version >/dev/null
  if [[ ! -d "$dir/data" ]]; then
    mkdir -p "$dir"
    as_owner test -x "$(dirname -- "$dir")" ||
      { echo "pg_cluster: $(dirname -- "$dir") is not reachable for user postgres (make DIR under /tmp)" >&2; exit 1; }
    chmod 0700 "$dir"
    [[ $(id -u) != 0 ]] || chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U harness --auth=trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  # fsync off: a test cluster, made again for every run; nothing here must survive a power cut
  if as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    return 0 # running already
  fi
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-k $dir -c listen_addresses='' \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null ||
    { tail -n 20 "$dir/server.log" >&2; exit 1; }
  if ! as_owner "$bin/psql" -h "$dir" -U harness -d postgres -Atqc "SELECT 1 FROM pg_database WHERE datname = 'harness'" |
    grep -q 1; then
    as_owner "$bin/createdb" -h "$dir" -U harness harness
  fi
}

pg_stop() {
  local bin
  bin=$(bindir)
  [[ -f "$dir/data/postmaster.pid" ]] || return 0
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
}

case "$cmd" in
  start) pg_start; url ;;
  stop) pg_stop ;;
  restart) pg_stop; pg_start; url ;;
  url) url ;;
  *) echo "usage: pg_cluster.sh start|stop|restart|url DIR" >&2; exit 2 ;;
esac
