"""Makes cshim/third_party/datachannel-sys: the datachannel-sys crate (it vendors
libdatachannel) with the patches of this folder applied. cshim/Cargo.toml and
cshim/fuzz/Cargo.toml use that copy through [patch.crates-io], so it must exist before any
cargo command: setup.py, .ci/setup, wheels/build.sh and cshim/fuzz/run.sh run this first.

    python3 cshim/patches/prepare.py

The crate comes from cargo's download cache when it is there, otherwise from crates.io;
either way its SHA-256 must match the one pinned below. An up-to-date copy is left as it
is (same files, same times), so cargo does not rebuild libdatachannel. Why we patch and
what each patch does: docs/design.md, "libdatachannel: small patches".
"""
from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

CRATE = "datachannel-sys"
VERSION = "0.23.0+0.23.2"
SHA256 = "2adb5cdc7cbd3ec035819d1c0cd3715727a0b282ce7624242e7150602e10dd27"
URL = f"https://static.crates.io/crates/{CRATE}/{CRATE}-{VERSION.replace('+', '%2B')}.crate"

HERE = Path(__file__).resolve().parent
DEST = HERE.parent / "third_party" / CRATE
STAMP = ".sora_ffi_patches"


def patches() -> list[Path]:
    return sorted(HERE.glob("*.patch"))


def wanted_stamp() -> str:
    h = hashlib.sha256(f"{CRATE} {VERSION}\n".encode())
    for p in patches():
        h.update(p.name.encode() + b"\n" + p.read_bytes())
    return h.hexdigest()


def crate_archive() -> bytes:
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    for cached in sorted(cargo_home.glob(f"registry/cache/*/{CRATE}-{VERSION}.crate")):
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == SHA256:
            return data
    with urllib.request.urlopen(URL, timeout=120) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{URL}: SHA-256 {digest}, expected {SHA256}")
    return data


def apply(patch: Path, root: Path) -> None:
    cmd = ["patch", "-p1", "--batch", "--forward", "--silent", "--no-backup-if-mismatch", "-d", str(root), "-i", str(patch)]
    if shutil.which("patch") is None:  # e.g. Windows with Git installed
        cmd = ["git", "apply", "-p1", "--unsafe-paths", f"--directory={root}", str(patch)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{patch.name} does not apply to {CRATE} {VERSION}:\n{result.stdout}{result.stderr}")


def main() -> None:
    stamp = wanted_stamp()
    if (DEST / STAMP).is_file() and (DEST / STAMP).read_text() == stamp:
        return
    DEST.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=DEST.parent) as tmp:
        with tarfile.open(fileobj=io.BytesIO(crate_archive()), mode="r:gz") as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        root = Path(tmp) / f"{CRATE}-{VERSION}"
        for p in patches():
            apply(p, root)
        (root / STAMP).write_text(stamp)
        if DEST.exists():
            shutil.rmtree(DEST)
        root.rename(DEST)
    print(f"{DEST}: {CRATE} {VERSION} with {len(patches())} patch(es)")


if __name__ == "__main__":
    main()
