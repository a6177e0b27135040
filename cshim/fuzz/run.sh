#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named) for RUNS iterations (default 1000000),
# prints libFuzzer's closing line for each and fails on the first crash. Needs a nightly
# toolchain and cargo-fuzz (installed when missing). See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"
python3 ../patches/prepare.py  # the patched libdatachannel and OpenSSL both Cargo.toml files use
RUNS="${RUNS:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sora_ffi/fuzz-target}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo +nightly fuzz list)
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  # -s none: the targets are safe Rust; overflow checks (on in cargo-fuzz builds) and
  # panics are what is looked for, and uninstrumented runs are ~2x faster.
  if ! cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
      -runs="$RUNS" -max_len=65536 -timeout=10 >"logs/$t.log" 2>&1; then
    tail -40 "logs/$t.log"; echo "FAILED: $t (artifacts/$t)"; exit 1
  fi
  echo "$t: $(grep -E '^Done [0-9]+ runs' "logs/$t.log" | tail -1)"
done
