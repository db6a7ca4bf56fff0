#!/usr/bin/env bash
# Runs every floe-protocol fuzz target for SECONDS each (default 60) on stable Rust, without
# a sanitizer. Seeds each corpus from the golden vectors in protocol/tests/vectors/ and from
# fuzz/seeds/.
#   protocol/fuzz/run.sh 30            # CI smoke
#   protocol/fuzz/run.sh 3600          # long profile
# Exits non-zero if any target finds a crash (the input is left in fuzz/artifacts/<target>/).
#
# The targets are built with plain cargo and the flags `cargo fuzz run -s none` passes
# (libFuzzer's coverage instrumentation, `--cfg fuzzing`, debug assertions, release with
# debug info), so neither CI nor a fresh machine spends minutes installing cargo-fuzz. A
# found input replays with `fuzz/target/<host>/release/<target> fuzz/artifacts/<target>/...`.
# fuzz/seeds/<target>/ is the checked-in corpus (minimised with `cargo fuzz cmin -s none`,
# which needs `cargo install cargo-fuzz`); to refresh it after a long run: cmin, then copy
# fuzz/corpus/<target>/ over it (minus vector-*).
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."   # protocol/: cargo fuzz looks for ./fuzz


seed() {  # seed TARGET FILE...: hex vectors become binary corpus entries
    local target="$1"; shift
    mkdir -p "fuzz/corpus/$target"
    for f in "$@"; do
        [ -f "$f" ] || continue
        perl -0777 -ne 's/\s+//g; print pack("H*", $_)' "$f" \
            > "fuzz/corpus/$target/vector-$(basename "$f" .hex)"
    done
    if [ -d "fuzz/seeds/$target" ]; then
        cp -n fuzz/seeds/"$target"/* "fuzz/corpus/$target/" 2>/dev/null || true
    fi
}
seed batch_decode tests/vectors/batch_*.hex
seed frame_decode tests/vectors/c_*.hex tests/vectors/p_*.hex
seed varint tests/vectors/varints.hex

targets=(batch_decode frame_decode varint)
host="$(rustc -vV | sed -n 's/^host: //p')"
# --target keeps these flags off build scripts and proc macros (as cargo-fuzz does); one
# codegen unit because the coverage pass otherwise blocks ThinLTO's cross-unit inlining.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth --cfg fuzzing -Clink-dead-code -Cdebug-assertions \
-Ccodegen-units=1 ${RUSTFLAGS:-}" \
    cargo build --manifest-path fuzz/Cargo.toml --target-dir fuzz/target --target "$host" --release \
    --config profile.release.debug=true "${targets[@]/#/--bin=}"

status=0
for target in "${targets[@]}"; do
    echo "== fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
    mkdir -p "fuzz/artifacts/$target"
    if ! "fuzz/target/$host/release/$target" -artifact_prefix="fuzz/artifacts/$target/" \
        -max_total_time="$SECONDS_PER_TARGET" "fuzz/corpus/$target"; then
        echo "!! $target failed; see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
