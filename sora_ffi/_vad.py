"""`SoraVAD`: voice activity detection on `SoraAudioFrame`s."""
from __future__ import annotations

import threading
import weakref
from typing import Any

from ._lazy import np

from ._frame import SoraAudioFrame
from ._native import check, ffi, last_error, lib

__all__ = ["SoraVAD"]

SORA_ERR_INVALID_ARGUMENT = -1


class SoraVAD:
    """Estimates the probability that audio is speech, natively: the earshot neural VAD,
    recalibrated so that 0.95 (the usual threshold) suits it, with pure tones, sweeps and
    other unchanging tonal sounds rejected. Frames of any rate and channel count are
    converted (to 16 kHz mono) before the analysis. One instance keeps state across calls:
    use one per stream."""

    def __init__(self) -> None:
        out = ffi.new("SoraVad **")
        check(lib.sora_vad_new(out))
        self._ptr: Any = out[0]
        self._lock = threading.Lock()  # the native detector is not reentrant
        self._finalizer = weakref.finalize(self, lib.sora_vad_destroy, self._ptr)
        self._finalizer.atexit = False  # a daemon thread may be inside analyze() at exit

    def analyze(self, frame: SoraAudioFrame) -> float:
        """The voice probability of `frame`, in [0, 1]."""
        if not isinstance(frame, SoraAudioFrame):
            raise TypeError(f"frame must be a SoraAudioFrame, not {type(frame).__name__}")
        samples = np.ascontiguousarray(frame.data(), dtype=np.int16)
        per_channel, channels = samples.shape
        data = ffi.from_buffer("int16_t[]", samples) if samples.size else ffi.NULL
        out = ffi.new("float *")
        with self._lock:
            status = lib.sora_vad_analyze(self._ptr, data, per_channel, channels, frame.sample_rate_hz, out)
        if status == SORA_ERR_INVALID_ARGUMENT:
            raise ValueError(last_error())
        check(status)
        return float(out[0])

    def __repr__(self) -> str:
        return "<SoraVAD>"
