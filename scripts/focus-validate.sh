#!/usr/bin/env bash
# Validates a FOCUS CSV export with the FinOps Foundation's focus-validator (.venv/focus, made by
# scripts/python-tools.sh focus). Exit 0 when it passes; 1 with the validator's report when not.
#
#   scripts/focus-validate.sh FILE.csv
#
# focus-validator 1.0.0, the newest on PyPI, knows FOCUS up to 1.0, so the export (FOCUS 1.2
# columns, a superset) is checked against its 1.0 rule set, with two workarounds for the tool itself:
# - it reads its ISO 4217 list by a path relative to its site-packages folder, so it runs from there;
# - its 1.0 rule set still requires four columns by their pre-1.0 names (Provider, Publisher,
#   InvoiceIssuer, ResourceID; FOCUS 1.0 renamed them ProviderName, PublisherName, InvoiceIssuerName,
#   ResourceId, which the export carries) and checks SkuPriceId against ChargeType, a pre-1.0 column.
#   Those five rules are overridden (focus-validate-overrides.yaml); every other rule applies.
# It exits 0 even when validation fails, so the verdict is read from its output.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv/focus"
[[ $# -eq 1 ]] || { echo "usage: $0 FILE.csv" >&2; exit 2; }
DATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
[[ -x "$VENV/bin/focus-validator" ]] || { echo "no $VENV: run scripts/python-tools.sh focus" >&2; exit 3; }

SITE="$("$VENV/bin/python" -c 'import focus_validator, os; print(os.path.dirname(os.path.dirname(focus_validator.__file__)))')"
REPORT="$(cd "$SITE" && "$VENV/bin/focus-validator" --data-file "$DATA" --validate-version 1.0 \
  --override-file "$ROOT/scripts/focus-validate-overrides.yaml" 2>&1)"
if grep -q '^Validation succeeded' <<<"$REPORT" && ! grep -q 'failed' <<<"$REPORT"; then
  echo "focus-validator: $DATA passes FOCUS 1.0 rules"
else
  echo "$REPORT" >&2
  exit 1
fi
