"""`OpusDecoder`: Opus packets to int16 PCM at the rate asked for (the shim's libopus)."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Optional

from ._lazy import np
from ._native import check, ffi, last_error, lib

__all__ = ["OpusDecoder"]

#: the longest packet Opus has: 120 ms
_MAX_FRAME_MS = 120
SORA_ERR_INVALID_ARGUMENT = -1


def _check(status: int) -> None:
    if status == SORA_ERR_INVALID_ARGUMENT:
        raise ValueError(last_error())
    check(status)


class OpusDecoder:
    """Decodes one Opus stream to `channels` interleaved int16 at `sample_rate` (8000,
    12000, 16000, 24000 or 48000: libopus decodes to that rate directly, whatever rate the
    packets were coded at). Keeps state across packets: use one per stream."""

    def __init__(self, sample_rate: int = 48000, channels: int = 1) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int):
            raise TypeError("sample_rate must be an int")
        if isinstance(channels, bool) or not isinstance(channels, int):
            raise TypeError("channels must be an int")
        out = ffi.new("SoraOpusDecoder **")
        _check(lib.sora_opus_decoder_new(sample_rate, channels, out))
        self._ptr: Any = out[0]
        self.sample_rate = sample_rate
        self.channels = channels
        self._capacity = sample_rate * _MAX_FRAME_MS // 1000
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, lib.sora_opus_decoder_destroy, self._ptr)

    def decode(self, packet: Optional[bytes]) -> "np.ndarray":
        """The PCM of one packet, shape (samples, channels); `None` conceals one lost packet.
        A corrupt packet raises ValueError."""
        if packet is not None and not isinstance(packet, (bytes, bytearray, memoryview)):
            raise TypeError("packet must be bytes or None")
        pcm = np.empty((self._capacity, self.channels), dtype=np.int16)
        written = ffi.new("size_t *")
        data = ffi.NULL if packet is None else ffi.from_buffer(packet)
        with self._lock:
            _check(lib.sora_opus_decoder_decode(self._ptr, data, 0 if packet is None else len(packet),
                                               ffi.from_buffer("int16_t[]", pcm), self._capacity, written))
        return pcm[: written[0]]

    def __repr__(self) -> str:
        return f"<OpusDecoder {self.sample_rate} Hz x{self.channels}>"
