#!/usr/bin/env bash
# Proves the speed of azs-usage with one command (see tests/bench/README.md):
#   scripts/bench.sh                 # every run, 3 times each: standard, stamps, fan-out, windows, mapped
#   scripts/bench.sh --repeat 5 standard
#   scripts/bench.sh --repeat 1 stamps fan-out
#   scripts/bench.sh --repeat 1 scale    # one per-subscriber stamp, 2,000 subscriptions at 200 ms per
#                                        # query, subscriber concurrency 1 (sample) / 8 / 16 (not in all)
# Builds azs-usage-bench in release, prints the machine's load (figures taken while `uptime` shows a
# load well above the core count are noisy: compare runs taken under similar load), then one table per
# run and one JSON line per run, also appended to target/bench/results.jsonl.
# Correctness (stored rows == the simulator's ground truth) is checked in every run; a mismatch fails
# the script. Missed speed targets are reported, not failed.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=3
runs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --repeat) repeat="$2"; shift 2 ;;
    --repeat=*) repeat="${1#--repeat=}"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    standard|stamps|fan-out|windows|mapped|scale|all) runs+=("$1"); shift ;;
    *) echo "unknown argument: $1 (runs: standard stamps fan-out windows mapped scale all)" >&2; exit 2 ;;
  esac
done
[ ${#runs[@]} -gt 0 ] || runs=(all)

cargo build --release -p azs-bench
mkdir -p target/bench
results=target/bench/results.jsonl
printf '==> %s, %s cores, load average %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
for run in "${runs[@]}"; do
  target/release/azs-usage-bench --repeat "$repeat" --json-out "$results" "$run"
done
printf '==> done, load average %s; JSON lines appended to %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)" "$results"
