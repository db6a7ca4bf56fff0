#!/usr/bin/env bash
# Where a 3-replica produce run spends the brokers' CPU: floe-bench produce --local R3 with
# perf recording every node (call graphs) through the middle of the run, then the top of
# `perf report --no-children`. Needs perf and the release build's debug info (profile.release
# has debug = 1).
#   bash bench/profile.sh [SECONDS]     (default 15; perf records SECONDS - 5 of them)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-15}"
work="$(mktemp -d "${TMPDIR:-/tmp}/floe-profile.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet -p floe-broker --bin floe
cargo build --release --quiet -p floe-bench
out="${OUT:-$work}"
target/release/floe-bench produce --local --local-dir "$work/cluster" --floe-bin target/release/floe \
  --replicas 3 --partitions 3 --producers 2 --message-size 1000 --warmup 2 --duration "$secs" \
  --json "$out/profile-run.json" >"$work/bench.out" 2>"$work/bench.err" &
bench_pid=$!
for _ in $(seq 1 300); do
  grep -q "node pids" "$work/bench.err" 2>/dev/null && break
  sleep 0.1
done
pids=$(sed -n 's/.*node pids \[\(.*\)\].*/\1/p' "$work/bench.err" | tr -d ' ')
[[ -n "$pids" ]] || { cat "$work/bench.err" >&2; exit 1; }
sleep 3
perf record -q -g -p "$pids" -o "$out/perf.data" -- sleep "$((secs - 5))" 2>/dev/null
wait "$bench_pid"
sed -n 2,3p "$work/bench.out"
perf report -i "$out/perf.data" --no-children -g none --sort comm,dso,symbol --percent-limit 0.8 --stdio 2>/dev/null \
  | grep -E '^ +[0-9]' | sed 's/ *$//' | cut -c1-130 | head -40
