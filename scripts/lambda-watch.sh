#!/usr/bin/env bash
# The Lambda functions under cargo-lambda's Runtime API emulator, for the platform tests.
#
#   scripts/lambda-watch.sh start   start `cargo lambda watch --only-lambda-apis` on 127.0.0.1 and both
#                                   functions against it, wait until it answers, print its base URL
#                                   (idempotent)
#   scripts/lambda-watch.sh url     print the base URL of the running emulator (exit 1 when none runs)
#   scripts/lambda-watch.sh stop    stop it
#
# Invoke through it:
#   POST $URL/2015-03-31/functions/collect-usage/invocations        (any JSON event)
#   ANY  $URL/lambda-url/register-stamp/stamps...                   (Function URL, payload 2.0)
#
# The functions get (through --env-file): AZS_USAGE_DATABASE (default sqlite:target/lambda-watch/usage.db),
# AZS_USAGE_SECRETS=aws-secrets-manager on moto (AWS_ENDPOINT_URL from AZS_USAGE_TEST_MOTO_URL, else
# `scripts/moto.sh start`), static test credentials, region us-east-1, and the AZS_USAGE_* variables set
# when `start` runs that `write_env` lists (AZS_USAGE_SECRET_PREFIX, AZS_USAGE_TIME_BUDGET, the queue
# fan-out's AZS_USAGE_FAN_OUT and queue URLs, ...).
#
# The emulator serves only the Lambda APIs; the functions are the debug binaries in target/debug (built
# when missing), started here as the emulator would start them (AWS_LAMBDA_RUNTIME_API naming the
# function's path on the emulator). Left to the emulator, each first invoke would `cargo run` the
# function: a build without the dev-dependencies' features, which recompiles a third of the workspace.
#
# Environment: LAMBDA_WATCH_PORT (default: a free port), LAMBDA_WATCH_BIN_DIR (default target/debug).
# State: target/lambda-watch/{pid,function-pids,port,env,log,<function>.log}.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="${CARGO_TARGET_DIR:-$ROOT/target}/lambda-watch"
FUNCTIONS=(collect-usage register-stamp)

log() { echo "lambda-watch.sh: $*" >&2; }

running_pid() {
  [[ -f "$STATE/pid" ]] || return 1
  local pid
  pid="$(cat "$STATE/pid")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

endpoint() { echo "http://127.0.0.1:$(cat "$STATE/port")"; }

# The emulator listens once its port accepts a connection. (An HTTP probe will not do: with
# --only-lambda-apis every path outside the Runtime API is an invocation of the default function, which
# waits for that function to ask for it.)
answers() {
  local port="${1##*:}"
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

write_env() {
  local moto="${AZS_USAGE_TEST_MOTO_URL:-}"
  if [[ -z "$moto" ]]; then
    moto="$("$ROOT/scripts/moto.sh" start)"
  fi
  {
    echo "AZS_USAGE_DATABASE=${AZS_USAGE_DATABASE:-sqlite:$STATE/usage.db}"
    echo "AZS_USAGE_SECRETS=aws-secrets-manager"
    echo "AWS_ENDPOINT_URL=$moto"
    echo "AWS_ACCESS_KEY_ID=test"
    echo "AWS_SECRET_ACCESS_KEY=test"
    echo "AWS_REGION=us-east-1"
    echo "AWS_DEFAULT_REGION=us-east-1"
    # The simulated stamps listen on loopback, which the outbound policy admits only when named.
    echo "AZS_USAGE_ALLOWED_STAMP_HOSTS=${AZS_USAGE_ALLOWED_STAMP_HOSTS:-127.0.0.1}"
    env | grep -E '^AZS_USAGE_(SECRET_PREFIX|TIME_BUDGET|SETTLE_DELAY|CONCURRENCY|LOG|LOG_FORMAT|FAN_OUT|STAMP_QUEUE_URL|DEAD_LETTER_QUEUE_URL|MAX_ATTEMPTS|CONTINUATION_DELAY|LEASE_TTL)=' || true
  } > "$STATE/env"
}

start() {
  if running_pid >/dev/null && answers "$(endpoint)"; then
    endpoint
    return 0
  fi
  [[ -x "$ROOT/.venv/tools/bin/cargo-lambda" ]] || "$ROOT/scripts/python-tools.sh" tools
  export PATH="$ROOT/.venv/tools/bin:$PATH"
  mkdir -p "$STATE"
  write_env
  local bin_dir="${LAMBDA_WATCH_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/debug}" function
  for function in "${FUNCTIONS[@]}"; do
    if [[ ! -x "$bin_dir/$function" ]]; then
      log "building ${FUNCTIONS[*]} (no $bin_dir/$function)"
      cargo build --quiet $(printf -- '--bin %s ' "${FUNCTIONS[@]}")
      break
    fi
  done
  local port="${LAMBDA_WATCH_PORT:-$(free_port)}"
  echo "$port" > "$STATE/port"
  # setsid: the emulator and the functions outlive this script, each in a process group of its own that
  # `stop` ends whole. Started directly (not in a subshell) so that $! is the process itself, and with
  # every stream redirected so that whoever reads this script's output sees it end.
  # --ignore-changes: the workspace is shared, and a reload mid-test would drop the function's state.
  setsid "$ROOT/.venv/tools/bin/cargo-lambda" lambda watch --only-lambda-apis \
    --invoke-address 127.0.0.1 --invoke-port "$port" --ignore-changes >"$STATE/log" 2>&1 </dev/null &
  echo $! > "$STATE/pid"
  local url
  url="$(endpoint)"
  for _ in $(seq 1 300); do
    if answers "$url"; then
      start_functions "$bin_dir" "$port"
      echo "$url"
      return 0
    fi
    if ! running_pid >/dev/null; then
      log "cargo lambda watch exited; its log ($STATE/log):"
      tail -n 30 "$STATE/log" >&2
      exit 1
    fi
    sleep 0.2
  done
  log "cargo lambda watch did not answer on $url within 60 s; see $STATE/log"
  stop
  exit 1
}

# start_functions BIN_DIR PORT: each function polls the emulator at its own path, /.rt/<function>, with
# the variables the emulator gives the functions it starts itself (and the env file's).
start_functions() {
  local bin_dir="$1" port="$2" function vars=()
  mapfile -t vars < "$STATE/env"
  : > "$STATE/function-pids"
  for function in "${FUNCTIONS[@]}"; do
    setsid env "${vars[@]}" \
      AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port/.rt/$function" AWS_LAMBDA_FUNCTION_NAME="$function" \
      AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096 \
      "$bin_dir/$function" >"$STATE/$function.log" 2>&1 </dev/null &
    echo $! >> "$STATE/function-pids"
  done
}

# end_group PID: end the process group PID leads (TERM, then KILL after 5 s).
end_group() {
  local pid="$1"
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 -- "-$pid" 2>/dev/null || true
}

stop() {
  local pid
  if [[ -f "$STATE/function-pids" ]]; then
    while read -r pid; do end_group "$pid"; done < "$STATE/function-pids"
    rm -f "$STATE/function-pids"
  fi
  if pid="$(running_pid)"; then
    end_group "$pid"
    log "stopped (pid $pid)"
  fi
  rm -f "$STATE/pid"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url)
    if running_pid >/dev/null; then endpoint; else log "not running; run scripts/lambda-watch.sh start"; exit 1; fi
    ;;
  *) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
