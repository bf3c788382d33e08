#!/usr/bin/env bash
# Peak memory of a collection run against a misbehaving stamp (issue: bounded pulls), measured the way
# an operator would: `/usr/bin/time -v azs-usage collect` against the stamp simulator's binary.
#
#   scripts/hostile-rss.sh [--release] [--padding BYTES]
#
# Three runs, each on a fresh SQLite database with one Azure AD stamp (50 tenants x 10 meters, pages of
# 100 rows, 3 reported hours to collect):
#   healthy     the stamp behaves (the baseline);
#   looping     every page after a chain's first links back to the first (a nextLink cycle);
#   oversized   every usage page is preceded by BYTES of whitespace (default 1 GiB; the page cap,
#               AZS_USAGE_MAX_PAGE_BYTES, is 16 MiB by default).
# Prints one JSON line per run: peak RSS (KiB, from `time -v`), wall seconds, the exit code (2: the
# stamp failed, as it must for the two hostile ones) and the rows stored.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
padding=$((1 << 30))
while [ $# -gt 0 ]; do
  case "$1" in
    --release) profile=release; shift ;;
    --padding) padding="$2"; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "hostile-rss: /usr/bin/time is needed (apt-get install time)" >&2; exit 2; }

flag=()
[ "$profile" = release ] && flag=(--release)
cargo build -q "${flag[@]}" -p azs-usage -p stamp-sim
bin="target/$profile"

measure() {
  local case="$1"; shift
  local dir; dir="$(mktemp -d)"
  "$bin/stamp-sim" --stamps 1 --auth aad --tenants 50 --meters 10 --page-size 100 \
    --ca-out "$dir/ca.pem" "$@" > "$dir/stamps.jsonl" 2> "$dir/sim.err" < /dev/null &
  local sim=$!
  for _ in $(seq 1 100); do [ -s "$dir/stamps.jsonl" ] && break; sleep 0.1; done
  local line; line="$(head -1 "$dir/stamps.jsonl")"
  field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$line" "$1"; }
  export AZS_USAGE_DATABASE="sqlite:$dir/usage.db" AZS_USAGE_SECRETS="file:$dir/secrets.json" \
    AZS_USAGE_SETTLE_DELAY=1h AZS_USAGE_LOG=error AZS_USAGE_ALLOWED_STAMP_HOSTS=127.0.0.1 AZS_USAGE_APPLICATION_SECRET="$(field secret)"
  local from; from="$(date -u -d "$(date -u +%Y-%m-%dT%H:00:00Z) - 4 hours" +%Y-%m-%dT%H:%M:%SZ)"
  "$bin/azs-usage" stamp add "$(field adminSubscriptionId)" "$(field tenantId)" "$(field applicationId)" - \
    "$(field adminArmEndpoint)" - - --name "$case" --ca-file "$dir/ca.pem" --collect-from "$from" \
    --no-verify > /dev/null
  local code=0
  /usr/bin/time -v -o "$dir/time.txt" "$bin/azs-usage" collect > "$dir/collect.out" 2>&1 || code=$?
  local rss wall rows
  rss="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")"
  wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$dir/time.txt")"
  "$bin/azs-usage" export --csv "$dir/rows.csv" > /dev/null
  rows="$(($(wc -l < "$dir/rows.csv") - 1))"
  printf '{"case":"%s","peakRssKiB":%s,"wall":"%s","exit":%s,"rowsStored":%s,"build":"%s"}\n' \
    "$case" "$rss" "$wall" "$code" "$rows" "$profile"
  kill "$sim" 2>/dev/null || true
  wait "$sim" 2>/dev/null || true
  rm -rf "$dir"
}

printf '==> %s, %s cores, load average %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" >&2
measure healthy
measure looping --looping-next-link
measure oversized --oversized-page-bytes "$padding"
