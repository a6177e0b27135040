"""Speech for examples and tests: English text spoken by espeak-ng (a Klatt voice, which
PocketSphinx recognizes far better than espeak-ng's default), and word accuracy."""
from __future__ import annotations

import difflib
import io
import re
import shutil
import subprocess
import wave

from .._lazy import np

VOICE = "en-us+klatt3"
WORDS_PER_MINUTE = 160


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesize(text: str, voice: str = VOICE, wpm: int = WORDS_PER_MINUTE) -> tuple:
    """(mono int16 samples, sample rate) of `text` spoken by espeak-ng."""
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (Debian: apt install espeak-ng)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "--stdout", text],
                         check=True, capture_output=True, timeout=30).stdout
    with wave.open(io.BytesIO(wav)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise RuntimeError("espeak-ng did not give 16-bit mono audio")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


def words(text: str) -> list:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_accuracy(spoken: str, recognized: str) -> float:
    """The share of the spoken words that the recognized text has, in order (word blocks
    matched by difflib)."""
    ref, hyp = words(spoken), words(recognized)
    if not ref:
        return 1.0
    match = difflib.SequenceMatcher(a=ref, b=hyp, autojunk=False)
    return sum(b.size for b in match.get_matching_blocks()) / len(ref)
