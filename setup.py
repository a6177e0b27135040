"""Builds sora_ffi: cargo builds the shim (cshim/), build_ffi.py turns its header into the
cffi out-of-line ABI module, and both land inside the `sora_ffi` package. The wheel is tagged
py3-none-<platform>: it holds a native library but no Python extension, so one wheel serves
every CPython 3.x and PyPy on that platform.

Environment: CARGO (cargo executable), CARGO_TARGET_DIR (default ~/.cache/sora_ffi/target,
shared between builds so that rebuilding is incremental).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py as _build_py

try:  # setuptools >= 70.1 carries bdist_wheel itself
    from setuptools.command.bdist_wheel import bdist_wheel as _bdist_wheel
except ImportError:  # older setuptools: the wheel package (pyproject.toml requires it)
    try:
        from wheel.bdist_wheel import bdist_wheel as _bdist_wheel
    except ImportError:  # no wheel support at all: only non-wheel commands work
        _bdist_wheel = None

ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = ROOT / "sora_ffi"
CARGO_MANIFEST = ROOT / "cshim" / "Cargo.toml"


def shim_filename() -> str:
    if sys.platform == "darwin":
        return "libsora_shim.dylib"
    if sys.platform == "win32":
        return "sora_shim.dll"
    return "libsora_shim.so"


def cargo_target_dir() -> Path:
    configured = os.environ.get("CARGO_TARGET_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "sora_ffi" / "target"


def cargo_executable() -> str:
    candidates = [os.environ.get("CARGO"), shutil.which("cargo"), str(Path.home() / ".cargo" / "bin" / "cargo")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("cargo was not found: install Rust (https://rustup.rs) or set CARGO")


def build_shim() -> Path:
    """Runs the release build of the shim; returns the built library."""
    target = cargo_target_dir()
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    # The patched libdatachannel crate cshim/Cargo.toml points at (cshim/patches).
    subprocess.run([sys.executable, str(ROOT / "cshim" / "patches" / "prepare.py")], check=True)
    cmd = [cargo_executable(), "build", "--release", "--manifest-path", str(CARGO_MANIFEST)]
    print("sora_ffi: " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)
    built = target / "release" / shim_filename()
    if not built.exists():
        raise RuntimeError(f"cargo finished but {built} does not exist")
    return built


def install_shim(built: Path) -> Path:
    """Copies the built library into the package (only when it changed)."""
    dest = PACKAGE_DIR / built.name
    if not dest.exists() or dest.read_bytes() != built.read_bytes():
        shutil.copyfile(built, dest)
    return dest


def generate_binding() -> Path:
    """Runs build_ffi.py (loaded by path: the build may run with another sys.path)."""
    spec = importlib.util.spec_from_file_location("build_ffi", ROOT / "build_ffi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


class build_py(_build_py):
    """Builds the shim and the binding before the package files are collected."""

    def run(self) -> None:
        install_shim(build_shim())
        generate_binding()
        self.__dict__.pop("data_files", None)  # collected lazily; recompute with the new files
        super().run()


class BinaryDistribution(Distribution):
    """Marks the package as platform-specific (it ships a native library), so that it installs
    into platlib and the wheel is not "pure" (Root-Is-Purelib: false)."""

    def has_ext_modules(self) -> bool:
        return True


CMDCLASS: dict[str, type] = {"build_py": build_py}

if _bdist_wheel is not None:

    class bdist_wheel(_bdist_wheel):
        """A platform wheel that is not tied to a Python version or ABI: the shim is loaded
        with ffi.dlopen, so nothing in it is built against Python."""

        def get_tag(self) -> tuple[str, str, str]:
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    CMDCLASS["bdist_wheel"] = bdist_wheel

if __name__ == "__main__":  # pip's backend runs this file as __main__; tests import it
    setup(cmdclass=CMDCLASS, distclass=BinaryDistribution)
