#!/usr/bin/env bash
# Reproduces the cluster table in bench/README.md, all in one session so the ratios compare
# like with like: the storage engine alone, produce R1 and R3 (acks=all, fsync always) at
# peak, R3 at half its peak rate, consume, e2e at a fixed 10 MB/s, each cluster run on its
# own --local cluster; beside them the raw disk (dd) and memcpy. JSON and plots go to $OUT
# (default bench/results/), the summary to stdout.
#   bash bench/cluster.sh [SECONDS]     (default 20 s measured per run, after a 3 s warm-up)
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
out="${OUT:-bench/results}"
work="$(mktemp -d "${TMPDIR:-/tmp}/floe-cluster-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
cargo build --release --quiet -p floe-broker --bin floe
cargo build --release --quiet -p floe-bench
bench=target/release/floe-bench
common=(--local --floe-bin target/release/floe --message-size 1000 --partitions 3 --quiet)

echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# Baselines on the disk the --local clusters use (TMPDIR): 1 GB written with one fdatasync at
# the end, and 64 KiB writes each made durable (O_DSYNC) — an fsync-per-batch log's ceiling.
dd if=/dev/zero of="$work/dd" bs=1M count=1000 conv=fdatasync 2>"$work/dd1.txt"
dd if=/dev/zero of="$work/dd" bs=64k count=4000 oflag=dsync 2>"$work/dd2.txt"
rm -f "$work/dd"
python3 - "$work" "$out/baselines.json" <<'PY'
import json, re, sys, time
def rate(path):
    line = open(path).read().strip().splitlines()[-1]
    n, s = re.match(r"(\d+) bytes .* copied, ([\d.]+) s", line).groups()
    return int(n) / float(s) / 1e6
# memmove between two buffers already faulted in (slice assignment is one memmove).
src = bytearray(b"\x5a" * (256 << 20)); dst = bytearray(len(src)); dst[:] = src
best = 0.0
for _ in range(5):
    t = time.perf_counter(); dst[:] = src; t = time.perf_counter() - t
    best = max(best, len(src) / t / 1e6)
d = {"dd_1gb_fdatasync_mb_per_sec": rate(sys.argv[1] + "/dd1.txt"),
     "dd_64k_dsync_mb_per_sec": rate(sys.argv[1] + "/dd2.txt"),
     "memcpy_mb_per_sec": best}
json.dump(d, open(sys.argv[2], "w"), indent=2)
print("baselines: " + ", ".join(f"{k} {v:.0f}" for k, v in d.items()))
PY

"$bench" storage --dir "$work/storage" --total-bytes 500000000 --message-size 1000 \
  --batch-records 100 --fsync always --producers 8 --json "$out/storage-always.json" >/dev/null
rm -rf "$work/storage"

run() {  # run NAME SUBCOMMAND ARGS...
  local name="$1"; shift
  "$bench" "$@" "${common[@]}" --json "$out/$name.json" >/dev/null
  echo "$name done"
}
run produce-r1 produce --replicas 1 --producers 2 --warmup 3 --duration "$secs"
run produce-r3 produce --replicas 3 --producers 2 --warmup 3 --duration "$secs" --plot "$out/produce-r3.svg"
half=$(python3 -c "import json; print(int(json.load(open('$out/produce-r3.json'))['records_per_sec'] / 2))")
run produce-r3-half produce --replicas 3 --producers 2 --warmup 3 --duration "$secs" --rate "$half"
run consume-r3 consume --replicas 3 --fill 300000
run e2e-r3-10mbs e2e --replicas 3 --warmup 3 --duration "$secs" --rate 10000 --plot "$out/e2e-r3-10mbs.svg"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out" <<'PY'
import json, sys
o = sys.argv[1]
j = lambda n: json.load(open(f"{o}/{n}.json"))
b = j("baselines"); s = j("storage-always")
dd = b["dd_1gb_fdatasync_mb_per_sec"]; mem = b["memcpy_mb_per_sec"]
print(f"\n{'run':18} {'MB/s':>8} {'vs dd':>7} {'vs memcpy':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8}")
for n in ["storage-always", "produce-r1", "produce-r3", "produce-r3-half", "consume-r3", "e2e-r3-10mbs"]:
    d = j(n); l = d["latency_us"]
    print(f"{n:18} {d['mb_per_sec']:8.1f} {d['mb_per_sec']/dd:7.3f} {d['mb_per_sec']/mem:9.4f} "
          f"{l['p50']/1e3:8.2f} {l['p99']/1e3:8.2f} {l['p999']/1e3:9.2f} {l['max']/1e3:8.2f}")
r1, r3 = j("produce-r1"), j("produce-r3")
print(f"R3/R1 throughput: {r3['mb_per_sec']/r1['mb_per_sec']:.3f}")
print(f"storage: write_vs_raw {s['write_vs_raw']:.3f}, group commit {s['group_commit_speedup']:.0f}x")
PY
