#!/usr/bin/env bash
# floe's whole test suite. `.ci/run` runs exactly this.
#   bash scripts/test.sh          the CI profile (< 25 min on 2 cores, cold build included)
#   bash scripts/test.sh --long   the long profile: many more simulator seeds and proptest cases
set -euo pipefail
cd "$(dirname "$0")/.."

profile=ci
if [[ "${1:-}" == "--long" ]]; then profile=long; fi

step() { printf '\n=== %s\n' "$*"; }

if ! command -v cargo-nextest >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

if [[ "$profile" == long ]]; then
  export PROPTEST_CASES="${PROPTEST_CASES:-2000}"
  sim_seeds="${SIM_SEEDS:-100000}"
else
  sim_seeds="${SIM_SEEDS:-2000}"
fi

step "format"
cargo fmt --all --check

step "clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "unit, property and integration tests"
cargo nextest run --workspace --no-fail-fast

step "doc tests"
cargo test --workspace --doc

step "docs build without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "storage benchmark smoke run (JSON contract)"
bench_dir="$(mktemp -d)"
trap 'rm -rf "$bench_dir"' EXIT
cargo run --release --quiet -p floe-bench -- storage --dir "$bench_dir/log" \
  --total-bytes 8000000 --message-size 1000 --batch-records 100 --fsync never \
  --json "$bench_dir/storage.json"
python3 scripts/check_bench_json.py "$bench_dir/storage.json" read_mb_per_sec

echo
echo "all checks passed (profile: $profile, simulator seeds: $sim_seeds)"
