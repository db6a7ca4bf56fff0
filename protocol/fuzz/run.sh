#!/usr/bin/env bash
# Runs every floe-protocol fuzz target for SECONDS each (default 60) on stable Rust, without
# a sanitizer. Installs cargo-fuzz if it is missing (about 4 minutes). Seeds each corpus from
# the golden vectors in protocol/tests/vectors/ and from fuzz/seeds/.
#   protocol/fuzz/run.sh 30            # CI smoke
#   protocol/fuzz/run.sh 3600          # long profile
# Exits non-zero if any target finds a crash (the input is left in fuzz/artifacts/<target>/).
# fuzz/seeds/<target>/ is the checked-in corpus (minimised with `cargo fuzz cmin -s none`);
# to refresh it after a long run: cmin, then copy fuzz/corpus/<target>/ over it (minus vector-*).
set -euo pipefail

SECONDS_PER_TARGET="${1:-60}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."   # protocol/: cargo fuzz looks for ./fuzz

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz ..." >&2
    cargo install cargo-fuzz --locked
fi

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

status=0
for target in batch_decode frame_decode varint; do
    echo "== fuzzing $target for ${SECONDS_PER_TARGET}s" >&2
    if ! cargo fuzz run -s none "$target" -- -max_total_time="$SECONDS_PER_TARGET"; then
        echo "!! $target failed; see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
