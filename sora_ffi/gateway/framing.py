"""The request body Sora streams: Opus payloads, either one per read (unframed) or each
after 20 bytes big-endian: timestamp (u64, Unix µs), sequence number (u64), payload length
(u32) — Sora's ``audio_streaming_header`` layout."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Optional

HEADER = struct.Struct(">QQI")
#: the longest payload taken: more than any Opus packet (120 ms of 1275-byte frames)
MAX_PAYLOAD = 0xFFFF


class FramingError(ValueError):
    """The body is not what the framing says: the stream cannot go on."""


@dataclass
class Packet:
    payload: bytes
    #: from the 20-byte header; None unframed
    timestamp_us: Optional[int] = None
    sequence_number: Optional[int] = None


class UnframedReader:
    """Each body chunk is one packet (as Suzu reads it)."""

    def feed(self, data: bytes) -> Iterator[Packet]:
        if data:
            yield Packet(bytes(data))

    def finish(self) -> None:
        pass


class FramedReader:
    """Packets out of header+payload records split anywhere across chunks."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Packet]:
        """The packets completed by `data`, in order; a bad record raises FramingError when
        reached (the packets before it are still handed out)."""
        self._buf += data
        while len(self._buf) >= HEADER.size:
            ts, seq, length = HEADER.unpack_from(self._buf)
            if length == 0 or length > MAX_PAYLOAD:
                raise FramingError(f"payload length {length} is not 1..{MAX_PAYLOAD}")
            end = HEADER.size + length
            if len(self._buf) < end:
                break
            packet = Packet(bytes(self._buf[HEADER.size:end]), ts, seq)
            del self._buf[:end]
            yield packet

    def finish(self) -> None:
        """The body ended: a record cut short is an error."""
        if self._buf:
            raise FramingError(f"the body ended inside a record ({len(self._buf)} bytes left)")


def reader(framed: bool):
    return FramedReader() if framed else UnframedReader()
