#!/usr/bin/env bash
# Kept for old habits and scripts: builds floe (and the client examples) and runs `floe dev`
# with topic "orders" (3 partitions x 3 replicas). Arguments go to `floe dev`, e.g.
#   bash scripts/dev-cluster.sh [--data-dir DIR] [--nodes N] [--base-port P]
# The README's run command is `cargo run --release -p floe-broker -- dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p floe-broker -p floe-client --bins --examples
exec target/release/floe dev --topic orders:3:3 "$@"
