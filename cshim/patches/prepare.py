"""Makes cshim/third_party/<crate> for each crate below: the published crate with the
patches of this folder applied (datachannel-sys vendors libdatachannel; openssl-src is the
OpenSSL both it and the `openssl` crate link; libaom-sys and libdav1d-sys vendor the AV1
encoder and decoder; shiguredo_nvcodec binds NVDEC/NVENC; opusic-sys vendors libopus). A patch goes to the crate its name starts with; all others
(`libdatachannel-*`, `libjuice-*`) to datachannel-sys. cshim/Cargo.toml and cshim/fuzz/Cargo.toml use
the copies through [patch.crates-io], so they must exist before any cargo command:
setup.py, .ci/setup, wheels/build.sh and cshim/fuzz/run.sh run this first.

    python3 cshim/patches/prepare.py

A crate comes from cargo's download cache when it is there, otherwise from crates.io;
either way its SHA-256 must match the one pinned below. An up-to-date copy is left as it
is (same files, same times), so cargo does not rebuild it. Why we patch and what each
patch does: docs/design.md, "libdatachannel: small patches".
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

# crate -> (version, SHA-256 of the .crate file)
CRATES = {
    "datachannel-sys": ("0.23.0+0.23.2", "2adb5cdc7cbd3ec035819d1c0cd3715727a0b282ce7624242e7150602e10dd27"),
    "openssl-src": ("300.6.1+3.6.3", "46eb8fb9fb3b61ce1c0f8a026c4c1a0714d3a9e138e7fbde78753ce2babc3846"),
    "libaom-sys": ("0.17.2+libaom.3.11.0", "7c4fce8aaf0c2d8534529b0698ed98ec1da8d35319588d20b0d79ce6446e4194"),
    "libdav1d-sys": ("0.7.1+libdav1d.1.4.3", "3d875e9669d116a603412a126de599b7bf47789a365b79fcf461fbf9c18d141f"),
    "shiguredo_nvcodec": ("2026.2.0", "ab3b51ad8dee83d36d84d7f4c8bddb529523143b3303ff8d861829360cd1462a"),
    "opusic-sys": ("0.7.7", "986d749e9dc12035f11bf3ecc83a2a696ff7534d4143be9469a4a0faa25b9fd1"),
}

HERE = Path(__file__).resolve().parent
STAMP = ".sora_ffi_patches"


def patches(crate: str) -> list[Path]:
    def target(p: Path) -> str:
        return next((c for c in CRATES if p.name.startswith(c + "-")), "datachannel-sys")

    return [p for p in sorted(HERE.glob("*.patch")) if target(p) == crate]


def wanted_stamp(crate: str, version: str) -> str:
    h = hashlib.sha256(f"{crate} {version}\n".encode())
    for p in patches(crate):
        h.update(p.name.encode() + b"\n" + p.read_bytes())
    return h.hexdigest()


def crate_archive(crate: str, version: str, sha256: str) -> bytes:
    cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    for cached in sorted(cargo_home.glob(f"registry/cache/*/{crate}-{version}.crate")):
        data = cached.read_bytes()
        if hashlib.sha256(data).hexdigest() == sha256:
            return data
    url = f"https://static.crates.io/crates/{crate}/{crate}-{version.replace('+', '%2B')}.crate"
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{url}: SHA-256 {digest}, expected {sha256}")
    return data


def apply(patch: Path, root: Path, what: str) -> None:
    cmd = ["patch", "-p1", "--batch", "--forward", "--silent", "--no-backup-if-mismatch", "-d", str(root), "-i", str(patch)]
    if shutil.which("patch") is None:  # e.g. Windows with Git installed
        cmd = ["git", "apply", "-p1", "--unsafe-paths", f"--directory={root}", str(patch)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{patch.name} does not apply to {what}:\n{result.stdout}{result.stderr}")


def prepare(crate: str, version: str, sha256: str) -> None:
    dest = HERE.parent / "third_party" / crate
    stamp = wanted_stamp(crate, version)
    if (dest / STAMP).is_file() and (dest / STAMP).read_text() == stamp:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        with tarfile.open(fileobj=io.BytesIO(crate_archive(crate, version, sha256)), mode="r:gz") as tar:
            if sys.version_info >= (3, 12):
                tar.extractall(tmp, filter="data")
            else:
                tar.extractall(tmp)
        root = Path(tmp) / f"{crate}-{version}"
        for p in patches(crate):
            apply(p, root, f"{crate} {version}")
        # Every file new: the archive's old times would let make keep objects built from a
        # patch that has since been removed (an added patch was seen, a removed one not).
        for f in root.rglob("*"):
            os.utime(f, follow_symlinks=False)
        (root / STAMP).write_text(stamp)
        if dest.exists():
            shutil.rmtree(dest)
        root.rename(dest)
    print(f"{dest}: {crate} {version} with {len(patches(crate))} patch(es)")


def main() -> None:
    for crate, (version, sha256) in CRATES.items():
        prepare(crate, version, sha256)


if __name__ == "__main__":
    main()
