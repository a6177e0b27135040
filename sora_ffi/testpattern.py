"""Test signals: machine-readable video frames that carry their own index and send time,
and a tone fed to an audio source in real time.

Used by the media tests and the benchmarks (and handy for checking any pipeline):
:func:`make_frame` draws a moving scene plus a bar code of 64 black/white blocks (16-bit
frame index, 32-bit send time in ms, a 16-bit CRC of both); :func:`read_code` recovers the
index and time from a decoded frame, surviving lossy compression because each block is a
flat 32×32 square. The CRC makes a damaged code unreadable instead of wrong: a real-time
encoder may leave a block of the previous frame in place (Chromium's VP9 does at low
bit rates), and a code read with one stale bit would look like a frame out of order.
:class:`ToneFeeder` sends a sine tone to a `SoraAudioSource` in 10 ms blocks on a thread;
:class:`PatternFeeder` sends stamped frames to a `SoraVideoSource` at a frame rate.
"""
from __future__ import annotations

import abc
import binascii
import threading
import time
from typing import Any, Optional, TypeVar

import numpy as np

BLOCK = 32
PERIOD = 30  # the scene repeats every PERIOD frames, so senders can draw it once
BITS = 64  # 16 index bits, 32 time bits, then 16 bits of CRC-16/CCITT-FALSE over both
_ROW = 16  # blocks per row of the code (512 px: fits 640-wide frames)
_F = TypeVar("_F", bound="_PacedFeeder")


def _crc(payload: int) -> int:
    """CRC-16/CCITT-FALSE of the 48-bit index and time, as 6 little-endian bytes
    (tests/browser/harness.js computes the same)."""
    return binascii.crc_hqx(payload.to_bytes(6, "little"), 0xFFFF)


def _code_bits(index: int, time_ms: int) -> list[int]:
    payload = (index & 0xFFFF) | ((time_ms & 0xFFFFFFFF) << 16)
    value = payload | (_crc(payload) << 48)
    return [(value >> i) & 1 for i in range(BITS)]


def scene(index: int, width: int, height: int) -> np.ndarray:
    """The deterministic picture of frame ``index`` (BGR), without the code."""
    index %= PERIOD
    # Built from one row and one column (uint8 sums wrap mod 256 by themselves): the 2-D
    # integer grids this used to build took ~45 ms per 720p picture on a 2-core Xeon, which
    # a receiver checking every frame could not afford.
    x, y = np.arange(width), np.arange(height)
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = ((x + 3 * index) % 256).astype(np.uint8)[None, :]
    img[..., 1] = ((y + 2 * index) % 256).astype(np.uint8)[:, None]
    img[..., 2] = ((x // 4 + index) % 256).astype(np.uint8)[None, :] + (y // 4 % 256).astype(np.uint8)[:, None]
    # a moving box so that motion estimation has something real to do
    bx = (index * 8) % max(1, width - 160)
    img[height // 2: height // 2 + 120, bx: bx + 160] = (40, 200, 240)
    return img


def stamp(img: np.ndarray, index: int, time_ms: int) -> np.ndarray:
    """Draws the code into the top-left corner of ``img`` (in place) and returns it."""
    for i, bit in enumerate(_code_bits(index, time_ms)):
        r, c = divmod(i, _ROW)
        img[r * BLOCK:(r + 1) * BLOCK, c * BLOCK:(c + 1) * BLOCK] = 255 if bit else 0
    return img


def make_frame(index: int, time_ms: int, width: int = 1280, height: int = 720) -> np.ndarray:
    return stamp(scene(index, width, height), index, time_ms)


def read_code(img: np.ndarray, sent_width: Optional[int] = None) -> Optional[tuple[int, int]]:
    """(index, time_ms) from a decoded frame, or None when the code is unreadable.
    ``sent_width``: the width the frame was sent at, when the sender may have scaled it."""
    cells = code_cells(img, sent_width)
    return None if cells is None else decode_cells(cells)


def code_cells(img: np.ndarray, sent_width: Optional[int] = None) -> Optional[np.ndarray]:
    """The mean brightness of the inner half of each of the BITS code blocks (None when the
    frame is too small to hold the code)."""
    h, w = img.shape[:2]
    block = BLOCK * w / sent_width if sent_width else float(BLOCK)
    rows = (BITS + _ROW - 1) // _ROW
    if block < 8 or h < rows * block or w < _ROW * block:
        return None
    if block == BLOCK:
        # Unscaled (the usual case): all cells at once. The code is grey, so one channel
        # is enough; the inner half of each cell avoids the edges that compression blurs.
        q = BLOCK // 4
        grid = img[: rows * BLOCK, : _ROW * BLOCK, 1].reshape(rows, BLOCK, _ROW, BLOCK)
        return grid[:, q:BLOCK - q, :, q:BLOCK - q].mean(axis=(1, 3), dtype=np.float32).ravel()
    gray = img[: int(rows * block), : int(_ROW * block)].mean(axis=2)
    q = block / 4
    return np.array([gray[int(r * block + q):int((r + 1) * block - q), int(c * block + q):int((c + 1) * block - q)].mean()
                     for r, c in (divmod(i, _ROW) for i in range(BITS))])


def decode_cells(cells) -> Optional[tuple[int, int]]:
    """(index, time_ms) from the BITS cell brightnesses of :func:`code_cells` (measured
    elsewhere too, e.g. in a browser), or None when they are not a code."""
    cells = np.asarray(cells, dtype=np.float32)
    if cells.shape != (BITS,) or np.any((cells > 64) & (cells < 192)):
        return None  # neither black nor white: not our code
    value = sum(1 << i for i in range(BITS) if cells[i] >= 128)
    payload = value & 0xFFFF_FFFF_FFFF
    if value >> 48 != _crc(payload):
        return None  # a damaged code (stale or flipped blocks), or a blank picture
    return payload & 0xFFFF, payload >> 16


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two images of equal shape (the code area excluded)."""
    rows = (BITS + _ROW - 1) // _ROW * BLOCK
    d = np.subtract(a[rows:], b[rows:], dtype=np.float64).ravel()
    mse = float(np.dot(d, d)) / d.size  # one pass, no squared temporary (~10x faster)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def tone(start: int, samples: int, rate: int = 48000, hz: float = 440.0,
         amplitude: float = 8000.0) -> np.ndarray:
    """Samples ``start``.. ``start + samples`` of a sine tone, int16 shaped (samples, 1)."""
    t = (np.arange(samples) + start) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.int16).reshape(-1, 1)


class _PacedFeeder(abc.ABC):
    """Calls :meth:`_feed` on a daemon thread from :meth:`start` (or ``with``) until
    :meth:`stop`, paced so that the units fed (samples, frames) keep to ``per_second`` of
    real time. :attr:`sent` counts them."""

    def __init__(self, per_second: float, name: str) -> None:
        self.per_second = per_second
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @abc.abstractmethod
    def _feed(self, sent: int) -> int:
        """Feeds the next units (the first is number ``sent``); returns how many."""

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            self.sent += self._feed(self.sent)
            time.sleep(max(0.0, t0 + self.sent / self.per_second - time.perf_counter()))

    def start(self: _F) -> _F:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self: _F) -> _F:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ToneFeeder(_PacedFeeder):
    """Feeds a tone to ``source.on_data`` in 10 ms blocks, paced to real time, on a daemon
    thread from :meth:`start` (or ``with``) until :meth:`stop`."""

    def __init__(self, source: Any, rate: int = 48000, hz: float = 440.0, amplitude: float = 8000.0) -> None:
        super().__init__(rate, "tone")
        self.source, self.rate, self.hz, self.amplitude = source, rate, hz, amplitude

    def _feed(self, sent: int) -> int:
        block = self.rate // 100
        self.source.on_data(tone(sent, block, self.rate, self.hz, self.amplitude))
        return block


class PatternFeeder(_PacedFeeder):
    """Feeds stamped :func:`make_frame` pictures (``width``×``height``) to
    ``source.on_captured`` at ``fps``, paced to real time, on a daemon thread from
    :meth:`start` (or ``with``) until :meth:`stop`. The scene is drawn once per period."""

    def __init__(self, source: Any, width: int = 640, height: int = 360, fps: float = 30.0) -> None:
        super().__init__(fps, "pattern")
        self.source, self.fps = source, fps
        self.scenes = [scene(i, width, height) for i in range(PERIOD)]

    def _feed(self, sent: int) -> int:
        self.source.on_captured(stamp(self.scenes[sent % PERIOD].copy(), sent, int(time.time() * 1000)))
        return 1
