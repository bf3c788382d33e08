#!/usr/bin/env bash
# The OpenAPI contract test: schemathesis (from .venv/contract, see scripts/python-tools.sh) against
# `azs-usage serve` with an API token on a fresh SQLite database, positive and negative phases
# (examples, coverage, fuzzing) with every check. One stamp, served by the stamp simulator and
# registered with verification, gives the `{id}` paths something to find, and a billing subscription
# mapped on it with a price book and a cost book the statement, margin and FOCUS paths. Bounded: a fixed seed,
# CONTRACT_MAX_EXAMPLES per operation (default 25), every answer within 30 s; about 2 minutes here.
#
# Usage: scripts/contract-test.sh   (builds the debug `azs-usage` and `stamp-sim` if needed, unless
# CONTRACT_TEST_SKIP_BUILD=1; exit 1 on any failure)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
MAX_EXAMPLES="${CONTRACT_MAX_EXAMPLES:-25}"
# A fixed seed: the same cases every run, so a failure in CI reproduces here.
SEED="${CONTRACT_SEED:-20261130}"

scripts/python-tools.sh contract
# CONTRACT_TEST_SKIP_BUILD=1 (scripts/test.sh): use the binaries its `cargo test` build left in target/debug
# (a plain cargo build resolves the dependencies' features without the dev-dependencies, so it would
# compile a second set).
if [[ -z "${CONTRACT_TEST_SKIP_BUILD:-}" ]]; then
  cargo build --quiet -p azs-usage -p stamp-sim
fi
exe="$TARGET_DIR/debug/azs-usage"
sim_exe="$TARGET_DIR/debug/stamp-sim"

work="$(mktemp -d)"
server_pid=""
sim_pid=""
cleanup() {
  for pid in "$server_pid" "$sim_pid"; do
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A simulated stamp to register: verification (registration, PATCH, /test) then gets real answers
# at once, instead of retrying an unreachable host until its 25 s budget runs out.
"$sim_exe" --stamps 2 --auth aad --tenants 2 --meters 2 --late-rows 0 --ca-out "$work/sim-ca.pem" \
  > "$work/sim.jsonl" 2> "$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do
  if [[ "$(wc -l < "$work/sim.jsonl")" -ge 2 ]]; then break; fi
  sleep 0.1
done

token="contract-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '{"azs-usage/api-token":"%s"}' "$token" > "$work/secrets.json"
chmod 600 "$work/secrets.json"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"

# The allow-list keeps the run off the network: generated endpoints are refused (422) before any
# lookup; only the simulator on loopback is called.
AZS_USAGE_API_TOKEN_SECRET=azs-usage/api-token AZS_USAGE_LOG=error \
  AZS_USAGE_ALLOWED_STAMP_HOSTS=127.0.0.1 \
  "$exe" --database "sqlite:$work/usage.db" --secrets "file:$work/secrets.json" \
  serve --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  if curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$base/stamps" 2>/dev/null; then break; fi
  sleep 0.1
done

# Two stamps, registered with their live check, so that `{id}` paths reach their logic: one for
# every operation, one for DELETE /stamps/{id} alone (otherwise the first removal leaves every later
# PATCH and test with a 404).
register() {
  local body
  body="$(python3 - "$work/sim.jsonl" "$work/sim-ca.pem" "$1" "$2" <<'PY'
import json, sys
stamp = json.loads(open(sys.argv[1]).readlines()[int(sys.argv[3])])
print(json.dumps({
    "name": sys.argv[4],
    "adminSubscriptionId": stamp["adminSubscriptionId"],
    "tenantId": stamp["tenantId"],
    "applicationId": stamp["applicationId"],
    "adminArmEndpoint": stamp["adminArmEndpoint"],
    "applicationSecret": stamp["secret"],
    "caCertificate": open(sys.argv[2]).read(),
}))
PY
)"
  curl -fsS -X POST -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    "$base/stamps" -d "$body" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
stamp_id="$(register 0 contract)"
removable_id="$(register 1 contract-removable)"

# Rating to find: a billing subscription mapped on the stamp (by a tenant subscription other than the
# one schemathesis maps and unmaps), a book everyone rates with and the operator's cost book, so that
# `/statements/{billingSubscriptionId}/...`, `/margin` and `/focus` reach their logic instead of 404.
api() {
  curl -fsS -o /dev/null -X "$1" -H "Authorization: Bearer $token" -H 'content-type: application/json' \
    "$base$2" -d "$3"
}
book() {
  printf '{"id":"%s","currency":{"code":"EUR","minorUnits":2},"versions":[{"version":1,"effectiveFrom":"2020-01-01T00:00:00Z","meters":[{"meterId":"FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5","price":{"kind":"unit","unitPrice":"%s"}}]}]}' "$1" "$2"
}
api PUT "/stamps/$stamp_id/subscriptions/0b6c1d2e-3f4a-4b5c-8d6e-7f8091a2b3c4" '{"billingSubscriptionId":"contract-cust"}'
api POST /price-books "$(book standard 0.50)"
api POST /price-books "$(book operator-cost 0.30)"
api PUT /assignments '{"bookId":"standard","effectiveFrom":"2020-01-01T00:00:00Z"}'

cat > "$work/schemathesis.toml" <<TOML
# The token in both headers the API accepts (X-Azs-Api-Token, when present, is the one checked), so
# that schemathesis never fills the documented apiKey header with a generated value. One connection per
# request: the server closes a keep-alive connection idle for its header timeout (10 s), and a request
# sent on it just then is lost ("Remote end closed connection without response"), which a loaded
# machine, generating cases slowly, hit.
headers = { Authorization = "Bearer $token", "X-Azs-Api-Token" = "$token", Connection = "close" }
generation.max-examples = $MAX_EXAMPLES
request-timeout = 40.0

[parameters]
id = "$stamp_id"
externalSubscriptionId = "5f1c3a9e-7b2d-4c8e-9a1f-3e6d2b7c8a90"
billingSubscriptionId = "contract-cust"

[[operations]]
include-name = "DELETE /stamps/{id}"
parameters = { id = "$removable_id" }

# A schema-valid registration may still name a stamp that cannot be verified (422), one already
# registered (409), or a stamp that is gone (404): the service answered the request as documented.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", 404, 409, 422]
TOML

echo "contract-test: schemathesis against $base (stamp $stamp_id, $MAX_EXAMPLES examples per operation)" >&2
set +e
"$ROOT/.venv/contract/bin/schemathesis" --config-file "$work/schemathesis.toml" --no-color run docs/openapi.yaml \
  --url "$base" --checks all --phases examples,coverage,fuzzing --workers 2 \
  --seed "$SEED" --max-response-time 30 --generation-database none
status=$?
set -e
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "contract-test: serve died during the run:" >&2
  cat "$work/serve.log" >&2
  exit 1
fi
exit "$status"
