#!/usr/bin/env bash
# A local AWS Secrets Manager (moto_server) for the AWS secret-store tests.
#
#   scripts/moto.sh start   create .venv/tools if needed, start moto_server on 127.0.0.1, wait until it
#                           answers, print its endpoint (idempotent: a running server is reused)
#   scripts/moto.sh url     print the endpoint of the running server (exit 1 when none runs)
#   scripts/moto.sh stop    stop it
#
# Tests read the endpoint from AZS_USAGE_TEST_MOTO_URL:
#   export AZS_USAGE_TEST_MOTO_URL="$(scripts/moto.sh start)"
#
# Environment: MOTO_PORT (default: a free port chosen at start), PYTHON (default python3).
# State: target/moto/{pid,port,log}.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# moto_server from .venv/tools (scripts/python-tools.sh pins moto[server] there): one install of moto.
VENV="$ROOT/.venv/tools"
STATE="$ROOT/target/moto"
PYTHON="${PYTHON:-python3}"

log() { echo "moto.sh: $*" >&2; }

ensure_venv() {
  "$ROOT/scripts/python-tools.sh" tools
}

running_pid() {
  [[ -f "$STATE/pid" ]] || return 1
  local pid
  pid="$(cat "$STATE/pid")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

endpoint() { echo "http://127.0.0.1:$(cat "$STATE/port")"; }

answers() { curl -fsS -o /dev/null --max-time 2 "$1/moto-api/" 2>/dev/null; }

free_port() {
  "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  if running_pid >/dev/null && answers "$(endpoint)"; then
    endpoint
    return 0
  fi
  ensure_venv
  mkdir -p "$STATE"
  local port="${MOTO_PORT:-$(free_port)}"
  echo "$port" > "$STATE/port"
  # setsid: the server outlives this script and the shell that ran it; `stop` ends it by its pid.
  setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$STATE/log" 2>&1 < /dev/null &
  echo $! > "$STATE/pid"
  local url
  url="$(endpoint)"
  for _ in $(seq 1 150); do
    if answers "$url"; then
      echo "$url"
      return 0
    fi
    if ! running_pid >/dev/null; then
      log "moto_server exited; its log ($STATE/log):"
      tail -n 20 "$STATE/log" >&2
      exit 1
    fi
    sleep 0.2
  done
  log "moto_server did not answer on $url within 30 s; see $STATE/log"
  exit 1
}

stop() {
  local pid
  if pid="$(running_pid)"; then
    kill "$pid"
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    log "stopped (pid $pid)"
  fi
  rm -f "$STATE/pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url)
    if running_pid >/dev/null; then endpoint; else log "not running; run scripts/moto.sh start"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
