#!/usr/bin/env bash
# A throw-away PostgreSQL server for the PostgreSQL store's tests (and the suites run against it).
#
#   scripts/postgres.sh start   install PostgreSQL from Debian's packages if no initdb is found, initdb a
#                               cluster into a temporary directory as an unprivileged user, start it on
#                               127.0.0.1 only (a free port), create database azs_usage, print its URL
#                               (idempotent: a running server is reused and its URL printed again)
#   scripts/postgres.sh url     print the URL of the running server (exit 1 when none runs)
#   scripts/postgres.sh stop    stop it and remove its directory
#
# Tests read the URL from AZS_USAGE_TEST_POSTGRES:
#   export AZS_USAGE_TEST_POSTGRES="$(scripts/postgres.sh start)"
# Each test creates its own database on that server, so tests may run in parallel.
#
# The URL carries a password (scram-sha-256 over TCP; no trust authentication), so the store's password
# path is what the tests exercise. No Docker.
#
# Environment: PG_PORT (default: a free port chosen at start), PG_USER (the unprivileged OS user that
# runs the server when this script runs as root; default nobody), PG_FSYNC (default off: a test server
# need not survive a power cut, and fsync is most of its commit time).
# State: target/postgres/{url,data,log,lock}; the cluster lives in a mktemp directory named in data.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$ROOT/target/postgres"
RUN_AS="${PG_USER:-nobody}"
DB_USER=azs_usage
DB_NAME=azs_usage

log() { echo "postgres.sh: $*" >&2; }

# The newest installed major version's binaries (Debian puts them outside PATH).
pg_bin() {
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -n "$dir" && -x "$dir/initdb" ]]; then
    echo "$dir"
    return 0
  fi
  return 1
}

ensure_installed() {
  if pg_bin >/dev/null; then return 0; fi
  if [[ "$(id -u)" != 0 ]]; then
    log "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); run as root, or: apt-get install -y postgresql"
    exit 1
  fi
  log "installing PostgreSQL from Debian's packages"
  # The package's own cluster is not wanted: ours is made by initdb below.
  mkdir -p /etc/postgresql-common
  if ! grep -qs '^create_main_cluster *= *false' /etc/postgresql-common/createcluster.conf; then
    echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  # (confold: the createcluster.conf written above is kept, not asked about)
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold postgresql >&2
  pg_bin >/dev/null || { log "apt-get installed postgresql but no initdb was found"; exit 1; }
}

# Runs a command as the unprivileged user when we are root (initdb and postgres refuse root).
as_owner() {
  if [[ "$(id -u)" == 0 ]]; then
    runuser -u "$RUN_AS" -- "$@"
  else
    "$@"
  fi
}

data_dir() { [[ -f "$STATE/data" ]] && cat "$STATE/data"; }

# The cluster runs when its postmaster (named in its postmaster.pid) is alive.
running() {
  local dir
  dir="$(data_dir)" || return 1
  [[ -n "$dir" && -f "$dir/cluster/postmaster.pid" ]] || return 1
  local pid
  pid="$(head -n 1 "$dir/cluster/postmaster.pid")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && [[ -f "$STATE/url" ]]
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  if running; then
    cat "$STATE/url"
    return 0
  fi
  ensure_installed
  local bin port password dir
  bin="$(pg_bin)"
  # A cluster left behind by a stop that never ran is removed first.
  stop_quietly
  mkdir -p "$STATE"
  port="${PG_PORT:-$(free_port)}"
  password="$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  dir="$(mktemp -d /tmp/azs-usage-postgres.XXXXXX)"
  echo "$dir" > "$STATE/data"
  chmod 0755 "$dir"
  mkdir -m 0700 "$dir/cluster"
  printf '%s\n' "$password" > "$dir/pwfile"
  if [[ "$(id -u)" == 0 ]]; then chown -R "$RUN_AS" "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/cluster" -U "$DB_USER" --pwfile="$dir/pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { log "initdb failed:"; tail -n 20 "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  # Loopback only; the socket stays in the cluster's own directory (not /var/run/postgresql).
  as_owner "$bin/pg_ctl" -D "$dir/cluster" -l "$dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir/cluster -c max_connections=300 -c fsync=${PG_FSYNC:-off} -c synchronous_commit=${PG_FSYNC:-off}" \
    >&2 9>&- || { log "the server did not start:"; tail -n 20 "$dir/server.log" >&2; exit 1; }
  PGPASSWORD="$password" "$bin/createdb" -h 127.0.0.1 -p "$port" -U "$DB_USER" "$DB_NAME"
  echo "postgres://$DB_USER:$password@127.0.0.1:$port/$DB_NAME" > "$STATE/url"
  ln -sfn "$dir/server.log" "$STATE/log"
  cat "$STATE/url"
}

stop_quietly() {
  local dir
  dir="$(data_dir)" || return 0
  if [[ -n "$dir" && -d "$dir/cluster" ]]; then
    local bin
    if bin="$(pg_bin)" && [[ -f "$dir/cluster/postmaster.pid" ]]; then
      as_owner "$bin/pg_ctl" -D "$dir/cluster" -m fast -w -t 30 stop >/dev/null 2>&1 || true
      # Still there: it would hold the port and the directory; end it by its own pid.
      if [[ -f "$dir/cluster/postmaster.pid" ]]; then
        local pid
        pid="$(head -n 1 "$dir/cluster/postmaster.pid")"
        [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null || true
      fi
    fi
  fi
  [[ -n "$dir" && "$dir" == /tmp/azs-usage-postgres.* ]] && rm -rf "$dir"
  rm -f "$STATE/data" "$STATE/url" "$STATE/log"
}

stop() {
  if running; then log "stopping"; fi
  stop_quietly
}

# One start or stop at a time: parallel test binaries may all ask for a server at once. The server
# itself is started with the lock's descriptor closed (9>&-), or it would hold the lock for its life.
locked() {
  mkdir -p "$STATE"
  exec 9>"$STATE/lock"
  flock 9
  "$@"
}

case "${1:-}" in
  start) locked start ;;
  stop) locked stop ;;
  url)
    if running; then cat "$STATE/url"; else log "not running; run scripts/postgres.sh start"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
