#!/usr/bin/env bash
# floe-check: Jepsen-style fault injection against real `floe serve` processes (check/README.md).
#   bash scripts/check.sh          the CI profile: 3 runs x 40 s (kill; pause; partition+disk),
#                                  fixed seeds, a few minutes in all
#   bash scripts/check.sh --long   the long profile: back-to-back 10-minute runs with every
#                                  nemesis for an hour (CHECK_TIME_LIMIT to change), fresh seed
# Results (history.jsonl, verdict.json, node logs) under CHECK_RESULTS (default
# target/check-results); a data directory is kept only for a run that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=ci
if [[ "${1:-}" == "--long" ]]; then profile=long; fi
results="${CHECK_RESULTS:-target/check-results}"
mkdir -p "$results"

# scripts/test.sh builds every release binary in one invocation first and says so; a cargo
# call here with its own package set could resolve features differently and rebuild.
if [[ "${FLOE_CHECK_BUILT:-}" != 1 ]]; then
  cargo build --release --quiet -p floe-broker -p floe-check
fi
check=target/release/floe-check

if [[ "$profile" == long ]]; then
  seed="${CHECK_SEED:-$(( $(date +%s) % 1000000 ))}"
  echo "floe-check long profile: seed $seed, ${CHECK_TIME_LIMIT:-1h} of 10-minute runs, every nemesis"
  "$check" run --soak --time-limit "${CHECK_TIME_LIMIT:-1h}" --run-length 10m --nemesis all \
    --disk-faults "${CHECK_DISK_FAULTS:-all}" --seed "$seed" --results "$results"
else
  # Fixed seeds: a landing must not depend on luck (the schedule replays from the seed; the
  # timing of a real cluster still varies, which is the point of running it on every change).
  "$check" run --time-limit 40s --nemesis kill --seed 101 --results "$results"
  "$check" run --time-limit 40s --nemesis pause --seed 102 --results "$results"
  # Every disk fault, bit flips included: a replica restarted after a kill scrubs its whole
  # log, so a flip in a sealed segment is found and repaired (check/README.md, "Findings").
  "$check" run --time-limit 40s --nemesis partition,disk --disk-faults all --seed 103 \
    --results "$results"
fi
