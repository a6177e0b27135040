"""What the gateway does with one stream, by path (Suzu's endpoints): ``/speech``
recognizes it, ``/test`` answers each packet with its size, ``/dump`` with the packet
itself (and appends it to the dump file when one is set)."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from typing import Optional

from .._lazy import np
from .._opus import OpusDecoder
from .framing import Packet
from .recognizers import SAMPLE_RATE, RecognizerFactory, UnsupportedLanguage

log = logging.getLogger("sora_ffi.gateway")

#: Suzu's silent Opus packet (a 20 ms SILK frame), fed to the recognizer when nothing
#: arrives for a while so that an utterance in progress can end.
SILENT_OPUS = bytes([0xFC, 0xFF, 0xFE])


@dataclass
class StreamInfo:
    """Who the stream is (the request's ``sora-*`` headers)."""

    channel_id: str
    connection_id: str
    session_id: str
    language_code: str


class Service:
    """One stream's handling: packets in, result objects out."""

    async def on_packet(self, packet: Packet) -> list:
        raise NotImplementedError  # pragma: no cover - every service overrides it

    async def on_idle(self) -> list:
        """Nothing arrived for a while."""
        return []

    async def finish(self) -> list:
        """The request body ended."""
        return []


class TestService(Service):
    """One line per packet with its payload size (Sora's byte counts can be checked)."""

    async def on_packet(self, packet: Packet) -> list:
        return [{"type": "test", "message": f"n: {len(packet.payload)}"}]


class DumpService(Service):
    """One line per packet with the packet (base64) and its header fields."""

    def __init__(self, info: StreamInfo, dump_file: Optional[str]) -> None:
        self.info = info
        self.dump_file = dump_file

    async def on_packet(self, packet: Packet) -> list:
        line = {"type": "dump", "channel_id": self.info.channel_id,
                "connection_id": self.info.connection_id,
                "payload": base64.b64encode(packet.payload).decode()}
        if packet.timestamp_us is not None:
            line["timestamp"] = packet.timestamp_us
            line["sequence_number"] = packet.sequence_number
        if self.dump_file:
            await asyncio.to_thread(_append, self.dump_file, json.dumps(line))
        return [line]


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


class SpeechService(Service):
    """Opus decoded to 16 kHz mono (natively, on the loop: microseconds a packet) and handed
    to a recognizer in a worker thread, BATCH seconds at a time: one thread hop per packet
    was what a gateway with 100 streams could not keep up with."""

    BATCH = 0.1

    def __init__(self, recognizer) -> None:
        self.recognizer = recognizer
        self.decoder = OpusDecoder(SAMPLE_RATE, 1)
        self._pending: list = []
        self._pending_samples = 0

    @classmethod
    async def open(cls, factory: RecognizerFactory, info: StreamInfo) -> "SpeechService":
        """Raises UnsupportedLanguage."""
        return cls(await asyncio.to_thread(factory, info.language_code))

    def _decode(self, payload: Optional[bytes]):
        try:
            return self.decoder.decode(payload)
        except ValueError:  # not Opus: conceal it as a lost packet
            return self.decoder.decode(None)

    def _add(self, payload: Optional[bytes]) -> bool:
        """Decodes into the batch; whether the batch is due."""
        pcm = self._decode(payload)[:, 0]
        self._pending.append(pcm)
        self._pending_samples += len(pcm)
        return self._pending_samples >= SAMPLE_RATE * self.BATCH

    async def _feed(self) -> list:
        if not self._pending:
            return []
        batch = np.concatenate(self._pending)
        self._pending, self._pending_samples = [], 0
        return await asyncio.to_thread(self.recognizer.feed, batch)

    async def on_packet(self, packet: Packet) -> list:
        return await self._feed() if self._add(packet.payload) else []

    async def on_idle(self) -> list:
        self._add(SILENT_OPUS)
        return await self._feed()

    async def finish(self) -> list:
        out = await self._feed()
        return out + await asyncio.to_thread(self.recognizer.finish)


__all__ = ["DumpService", "Service", "SpeechService", "StreamInfo", "TestService",
           "UnsupportedLanguage"]
