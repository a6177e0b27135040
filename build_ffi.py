"""Turns the shim's C header into the cffi out-of-line ABI module `sora_ffi/_shim_cffi.py`.

This is the single place that knows how the C ABI reaches Python. cffi's `cdef` takes plain
declarations only, so the cbindgen header is first reduced to them: comments, `#include`s,
include guards and the C++ `extern "C"` wrapper go; `#define NAME <integer>` constants stay
(cffi reads those, also in ABI mode). Nothing is compiled: `set_source(..., None)` emits a
pure-Python module that `ffi.dlopen`s the shim at run time, so one wheel serves every
CPython 3.x and PyPy.

    python build_ffi.py [--header cshim/include/sora_shim.h] [--output sora_ffi/_shim_cffi.py]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
HEADER = ROOT / "cshim" / "include" / "sora_shim.h"
OUTPUT = ROOT / "sora_ffi" / "_shim_cffi.py"
MODULE_NAME = "sora_ffi._shim_cffi"

_COMMENTS = re.compile(r"/\*.*?\*/|//[^\n]*", re.DOTALL)
_EXTERN_C = re.compile(r'^\s*(extern\s+"C"\s*\{|\}\s*(//.*)?$)')
_DEFINE = re.compile(r"^#\s*define\s+([A-Za-z_]\w*)\s+(.+?)\s*$")
_INT_LITERAL = re.compile(r"^-?(0[xX][0-9a-fA-F]+|\d+)$")
_INT_MACRO = re.compile(r"^U?INT\d+_C\((.+)\)$")
_CAST = re.compile(r"^\(\s*[A-Za-z_][\w\s]*\)\s*")


def strip_comments(text: str) -> str:
    # Keep the newlines inside block comments so line-based processing stays simple.
    return _COMMENTS.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def _enclosed(v: str) -> bool:
    """Whether the whole of `v` is one parenthesised group: "(-1)" yes, "(int)(-1)" no."""
    if not (v.startswith("(") and v.endswith(")")):
        return False
    depth = 0
    for i, ch in enumerate(v):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and i < len(v) - 1:
            return False
    return True


def integer_value(expr: str) -> str | None:
    """The plain integer literal of a cbindgen constant such as `-1`, `(-1)`, `UINT64_C(5)`,
    `(int32_t)-1` or `16u`; None when it is anything else."""
    v = expr.strip()
    for _ in range(4):
        while _enclosed(v):
            v = v[1:-1].strip()
        m = _INT_MACRO.match(v)
        if m:
            v = m.group(1).strip()
            continue
        m = _CAST.match(v)
        if m and v[m.end():]:
            v = v[m.end():].strip()
            continue
        break
    v = re.sub(r"[uUlL]+$", "", v)  # suffixes: u/l are no hex digits, so this is safe for hex too
    return v if _INT_LITERAL.match(v) else None


def _condition_is_true(directive: str) -> bool:
    """Evaluates an #if/#ifdef/#ifndef for cffi's purposes: we are a C compiler, not C++;
    anything else (the include guard) counts as true."""
    if "__cplusplus" not in directive:
        return True
    negated = directive.startswith("ifndef") or "!defined" in directive.replace(" ", "")
    return negated


def clean_header(text: str) -> str:
    """The header reduced to declarations that `cffi.FFI.cdef` accepts."""
    out: list[str] = []
    taken: list[bool] = []  # one entry per open conditional: is this branch included?
    for line in strip_comments(text).splitlines():
        s = line.strip()
        if s.startswith("#"):
            directive = s[1:].strip()
            word = directive.split(None, 1)[0] if directive else ""
            if word in ("if", "ifdef", "ifndef"):
                taken.append(_condition_is_true(directive))
            elif word == "elif":
                raise ValueError(f"build_ffi.py does not handle #elif: {s!r}")
            elif word == "else":
                taken[-1] = not taken[-1]
            elif word == "endif":
                taken.pop()
            elif word == "define" and all(taken):
                m = _DEFINE.match(s)
                value = integer_value(m.group(2)) if m else None
                if m and value is not None:
                    out.append(f"#define {m.group(1)} {value}")
                elif m:
                    print(f"build_ffi: skipping non-integer constant {m.group(1)}", file=sys.stderr)
            continue  # #include, #pragma, guards: nothing for cffi
        if not all(taken) or _EXTERN_C.match(line):
            continue
        out.append(line.rstrip())
    if taken:
        raise ValueError("unbalanced #if/#endif in the header")
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def make_ffibuilder(header: Path = HEADER):
    """A cffi FFI with the header's declarations, set up for an out-of-line ABI module."""
    import cffi

    ffibuilder = cffi.FFI()
    ffibuilder.cdef(clean_header(Path(header).read_text(encoding="utf-8")))
    ffibuilder.set_source(MODULE_NAME, None)
    return ffibuilder


def build(header: Path = HEADER, output: Path = OUTPUT) -> Path:
    """Writes the generated module (only touched when its content changes)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    make_ffibuilder(header).emit_python_code(str(output))
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header", type=Path, default=HEADER)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    build(args.header, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
