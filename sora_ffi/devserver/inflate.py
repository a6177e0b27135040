"""Bounded zlib inflation for DataChannels whose ``compress`` is true.

A few hundred kilobytes of zlib can inflate to gigabytes, so nothing is ever inflated
without a bound: :data:`MAX_INFLATED` is the largest message the server accepts after
inflation (the same limit as the sora_ffi client, docs/limits.md).
"""
from __future__ import annotations

import zlib

MAX_INFLATED = 16 * 1024 * 1024


class InflateError(ValueError):
    """Not zlib data, or it inflates past the limit."""


def inflate(data: bytes, limit: int = MAX_INFLATED) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise InflateError(f"invalid zlib data: {e}") from None
    if len(out) > limit:
        raise InflateError(f"inflates past {limit} bytes")
    if not d.eof:
        raise InflateError("truncated zlib data")
    return out
