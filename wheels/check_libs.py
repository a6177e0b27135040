"""Fails when a wheel (or a shared library) needs a shared library that a Linux machine
without our build dependencies may lack.

    python3 wheels/check_libs.py WHEEL_OR_LIBRARY...

Reads each ELF file's DT_NEEDED entries with ``readelf -d`` (binutils) and accepts only the
base system libraries every manylinux policy allows (glibc's, libgcc_s, libstdc++) and
libraries shipped inside the same wheel (what ``auditwheel repair`` grafts into
``sora_ffi.libs/``). libvpx, for instance, must be linked statically (cshim/build.rs).
Used by wheels/build.sh and tests/test_build.py.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

# A subset of auditwheel's manylinux allow-list: no X11/GL/glib, which the shim never needs.
ALLOWED = re.compile(
    r"(libc|libm|libdl|librt|libpthread|libutil|libresolv|libgcc_s|libstdc\+\+)\.so\.\d+"
    r"|ld-linux(-[\w-]+)?\.so\.\d+|ld64\.so\.\d+"
)


def needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of the ELF file ``path``."""
    out = subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True,
                         env=dict(os.environ, LC_ALL="C")).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def disallowed(names: list[str], shipped: set[str] = frozenset()) -> list[str]:
    return [n for n in names if not ALLOWED.fullmatch(n) and n not in shipped]


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def check(target: Path) -> list[str]:
    """Prints what each ELF file in ``target`` (a wheel or one library) needs; returns the
    problems found."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if target.suffix == ".whl":
            with zipfile.ZipFile(target) as whl:
                whl.extractall(tmp)
            files = [p for p in Path(tmp).rglob("*") if p.is_file() and _is_elf(p)]
        else:
            files = [target]
        shipped = {p.name for p in files}
        if not files:
            problems.append(f"{target}: no shared library inside")
        for path in files:
            name = PurePosixPath(path.relative_to(tmp)).as_posix() if target.suffix == ".whl" else str(path)
            libs = needed(path)
            print(f"{name}: needs {', '.join(libs) or 'nothing'}")
            problems += [f"{name} needs {lib}" for lib in disallowed(libs, shipped)]
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    problems = [p for arg in argv for p in check(Path(arg))]
    for p in problems:
        print(f"not allowed: {p} (not a base system library, not in the wheel)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
