#!/usr/bin/env bash
# Reproduces the storage table in bench/README.md: floe-bench storage over a matrix of fsync
# policy, batch size and segment size, each run carrying its own same-run baselines, plus the
# shell's dd for reference. Results (one JSON per run) go to $OUT (default bench/results/).
#   bash bench/storage.sh [TOTAL_BYTES]        (default 1000000000)
set -euo pipefail
cd "$(dirname "$0")/.."
total="${1:-1000000000}"
out="${OUT:-bench/results}"
work="$(mktemp -d "${TMPDIR:-/tmp}/floe-storage-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cargo build --release --quiet -p floe-bench
bin=target/release/floe-bench

run() {  # run NAME ARGS...
  local name="$1"; shift
  rm -rf "$work/run"
  "$bin" storage --dir "$work/run" --total-bytes "$total" --message-size 1000 --json "$out/$name.json" "$@" >/dev/null
  python3 - "$out/$name.json" "$name" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
line = f"{sys.argv[2]:28} write {d['mb_per_sec']:7.0f} MB/s ({d['write_vs_raw']:.2f}x raw {d['raw_write_mb_per_sec']:.0f})"
line += f"  read {d['read_mb_per_sec']:7.0f} MB/s ({d['read_vs_raw']:.2f}x raw {d['raw_read_mb_per_sec']:.0f})"
line += f"  p99 {d['latency_us']['p99']} us"
if 'group_commit_speedup' in d:
    line += f"  group commit {d['group_commit_speedup']:.0f}x one-fsync-per-append ({d['appends_per_fsync']:.1f} appends/fsync)"
print(line)
PY
}

run never-b100             --fsync never  --batch-records 100
run never-b1000            --fsync never  --batch-records 1000
run never-b100-oneseg      --fsync never  --batch-records 100  --segment-bytes 2147483648
run never-b1000-oneseg     --fsync never  --batch-records 1000 --segment-bytes 2147483648
run always-b100-p8         --fsync always --batch-records 100  --producers 8
run always-b1-p64          --fsync always --batch-records 1    --producers 64 --baseline-appends 300

echo "dd for reference (same bytes):"
sync
dd if=/dev/zero of="$work/dd" bs=1M count=$(( total / 1048576 )) 2>&1 | tail -1
dd if="$work/dd" of=/dev/null bs=1M 2>&1 | tail -1
