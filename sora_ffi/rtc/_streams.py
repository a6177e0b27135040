"""Data streams: text and bytes larger than one packet, sent in chunks on the room's
`#_rtc.stream` label (reliable, ordered) and reassembled and verified on receipt.

Messages, each one DataChannel message (after Sora's sender header):
  b"H" + JSON header  {id, topic, kind: "text"|"bytes", name, mime_type, total_size,
                       attributes, destinations, timestamp}
  b"C" + 16-byte id + u32 index + data
  b"T" + JSON trailer {id, chunks, size, sha256}
A receiver that is not in `destinations` (when given) ignores the stream. A stream whose
chunks are out of sequence, whose trailer disagrees with what arrived, whose sender leaves
before the trailer, or whose id is already open from that sender, fails: its reader raises
StreamError. Streams are not private (Sora delivers them to every member).
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Sequence, Union

from ._data import STREAM_TOPIC, check_topic, json_object
from ._emitter import call_handler, logger

if TYPE_CHECKING:
    from ._room import Room

#: data per chunk: well under a packet (MAX_PACKET_BYTES) with the chunk header
CHUNK_BYTES = 48 * 1024
#: an open incoming stream with no message for this long fails
IDLE_TIMEOUT = 30.0
#: a reader that lets more than this wait unread fails its stream (memory is bounded)
MAX_BUFFERED_BYTES = 64 * 1024 * 1024
_HEADER, _CHUNK, _TRAILER = b"H", b"C", b"T"
_CHUNK_HEAD = struct.Struct("!16sI")


class StreamError(Exception):
    """An incoming stream could not be completed or verified."""


@dataclass(frozen=True)
class StreamInfo:
    id: str
    topic: str
    mime_type: str
    timestamp: int  # ms since the epoch, when the sender opened it
    size: Optional[int]  # total bytes, when the sender said
    attributes: dict
    name: str = ""  # byte streams: the file name


TextStreamInfo = StreamInfo
ByteStreamInfo = StreamInfo


class _Reader:
    """What a handler gets: `info`, `async for chunk in reader`, `await reader.read_all()`."""

    def __init__(self, info: StreamInfo, text: bool) -> None:
        self.info = info
        self._text = text
        self._queue: asyncio.Queue[Union[bytes, BaseException, None]] = asyncio.Queue()
        self._digest = hashlib.sha256()
        self._next = 0
        self._received = 0
        self._pending_utf8 = b""
        self._last = time.monotonic()
        self._buffered = 0  # bytes received and not read yet

    # -- fed by the Streams of the room
    def _chunk(self, index: int, data: bytes) -> Optional[str]:
        if index != self._next:
            return f"chunk {index} arrived where {self._next} was due"
        self._next += 1
        self._received += len(data)
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED_BYTES:
            return f"the reader let more than {MAX_BUFFERED_BYTES} bytes wait unread"
        self._digest.update(data)
        self._last = time.monotonic()
        self._queue.put_nowait(data)
        return None

    def _finish(self, trailer: dict) -> Optional[str]:
        if trailer.get("chunks") != self._next or trailer.get("size") != self._received:
            return (f"the trailer says {trailer.get('chunks')} chunks / {trailer.get('size')} bytes, "
                    f"{self._next} / {self._received} arrived")
        if trailer.get("sha256") != self._digest.hexdigest():
            return "the content does not match the sender's checksum"
        self._queue.put_nowait(None)
        return None

    def _fail(self, reason: str) -> None:
        self._queue.put_nowait(StreamError(f"stream {self.info.id}: {reason}"))

    # -- the handler's side
    def __aiter__(self) -> "_Reader":
        return self

    async def __anext__(self) -> Any:
        while True:
            item = await self._queue.get()
            if item is None:
                self._queue.put_nowait(None)  # stays ended
                if self._text and self._pending_utf8:
                    raise StreamError(f"stream {self.info.id}: it ends inside a UTF-8 character")
                raise StopAsyncIteration
            if isinstance(item, BaseException):
                self._queue.put_nowait(item)  # stays failed
                raise item
            self._buffered -= len(item)
            if not self._text:
                return item
            data = self._pending_utf8 + item
            cut = _utf8_boundary(data)
            self._pending_utf8 = data[cut:]
            if cut:
                try:
                    return data[:cut].decode()
                except UnicodeDecodeError as e:
                    failed = StreamError(f"stream {self.info.id}: not UTF-8 text ({e.reason})")
                    self._queue.put_nowait(failed)
                    raise failed from None

    async def read_all(self) -> Any:
        parts = [part async for part in self]
        return "".join(parts) if self._text else b"".join(parts)


class TextStreamReader(_Reader):
    pass


class ByteStreamReader(_Reader):
    pass


def _utf8_boundary(data: bytes) -> int:
    """Where the last complete UTF-8 character of `data` ends."""
    i = len(data)
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 != 0x80:  # a lead byte (or ASCII)
            need = 1 if b < 0x80 else 2 if b >> 5 == 6 else 3 if b >> 4 == 14 else 4
            return i if need <= back else i - back
    return i


class _Writer:
    """`await writer.write(...)`, then `await writer.aclose()`; `info` describes it."""

    def __init__(self, streams: "Streams", info: StreamInfo, text: bool) -> None:
        self.info = info
        self._streams = streams
        self._text = text
        self._raw = uuid.UUID(info.id).bytes
        self._index = 0
        self._size = 0
        self._digest = hashlib.sha256()
        self._closed = False

    async def write(self, data: Any) -> None:
        if self._closed:
            raise RuntimeError("the stream is closed")
        if self._text:
            if not isinstance(data, str):
                raise TypeError(f"a text stream takes str, not {type(data).__name__}")
            payload = data.encode()
        else:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"a byte stream takes bytes, not {type(data).__name__}")
            payload = bytes(data)
        for at in range(0, len(payload), CHUNK_BYTES):
            piece = payload[at:at + CHUNK_BYTES]
            await self._streams._send(_CHUNK + _CHUNK_HEAD.pack(self._raw, self._index) + piece)
            self._index += 1
            self._size += len(piece)
            self._digest.update(piece)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        trailer = {"id": self.info.id, "chunks": self._index, "size": self._size,
                   "sha256": self._digest.hexdigest()}
        await self._streams._send(_TRAILER + json.dumps(trailer).encode())


class TextStreamWriter(_Writer):
    pass


class ByteStreamWriter(_Writer):
    pass


Handler = Callable[[Any, str], Optional[Awaitable[None]]]


@dataclass
class _Incoming:
    reader: _Reader
    sender: str


@dataclass
class Streams:
    """The room's streams: handlers by topic, incoming readers, outgoing writers."""
    room: "Room"
    text_handlers: dict[str, Handler] = field(default_factory=dict)
    byte_handlers: dict[str, Handler] = field(default_factory=dict)
    incoming: dict[tuple[str, str], _Incoming] = field(default_factory=dict)
    tasks: set = field(default_factory=set)

    # -- sending
    async def _send(self, message: bytes) -> None:
        await self.room._send_reserved(STREAM_TOPIC, message)

    async def open(self, *, text: bool, topic: str, name: str, mime_type: str,
                   total_size: Optional[int], attributes: Optional[dict],
                   destination_identities: Optional[Sequence[str]], stream_id: Optional[str]) -> _Writer:
        check_topic(topic)
        sid = str(uuid.UUID(stream_id)) if stream_id is not None else str(uuid.uuid4())
        attrs = dict(attributes or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in attrs.items()):
            raise TypeError("attributes must map str to str")
        dests = list(destination_identities or [])
        if not all(isinstance(d, str) for d in dests):
            raise TypeError("destination_identities must be a sequence of str")
        info = StreamInfo(sid, topic, mime_type, int(time.time() * 1000), total_size, attrs, name)
        header = {"id": sid, "topic": topic, "kind": "text" if text else "bytes", "name": name,
                  "mime_type": mime_type, "total_size": total_size, "attributes": attrs,
                  "destinations": dests, "timestamp": info.timestamp}
        await self._send(_HEADER + json.dumps(header).encode())
        return (TextStreamWriter if text else ByteStreamWriter)(self, info, text)

    async def send_text(self, text: str, **kwargs: Any) -> StreamInfo:
        if not isinstance(text, str):
            raise TypeError(f"send_text takes str, not {type(text).__name__}")
        writer = await self.open(text=True, name="", mime_type="text/plain",
                                 total_size=len(text.encode()), **kwargs)
        await writer.write(text)
        await writer.aclose()
        return writer.info

    async def send_file(self, file_path: str, *, mime_type: str = "application/octet-stream",
                        **kwargs: Any) -> StreamInfo:
        size = os.path.getsize(file_path)
        writer = await self.open(text=False, name=os.path.basename(file_path), mime_type=mime_type,
                                 total_size=size, **kwargs)
        with open(file_path, "rb") as f:
            while chunk := await asyncio.to_thread(f.read, CHUNK_BYTES * 8):
                await writer.write(chunk)
        await writer.aclose()
        return writer.info

    # -- receiving
    def on_message(self, sender: str, payload: bytes) -> None:
        kind, body = payload[:1], payload[1:]
        if kind == _HEADER:
            self._on_header(sender, body)
        elif kind == _CHUNK and len(body) >= _CHUNK_HEAD.size:
            raw, index = _CHUNK_HEAD.unpack_from(body)
            entry = self.incoming.get((sender, str(uuid.UUID(bytes=raw))))
            if entry is not None:
                problem = entry.reader._chunk(index, body[_CHUNK_HEAD.size:])
                if problem is not None:
                    self._fail((sender, entry.reader.info.id), problem)
        elif kind == _TRAILER:
            trailer = json_object(body)
            key = (sender, str(trailer.get("id"))) if trailer is not None else None
            entry = self.incoming.pop(key, None) if key is not None else None
            if entry is not None and trailer is not None:
                problem = entry.reader._finish(trailer)
                if problem is not None:
                    entry.reader._fail(problem)
        else:
            logger.warning("sora_ffi.rtc: a malformed stream message from %s was dropped", sender)

    def _on_header(self, sender: str, body: bytes) -> None:
        try:
            info, kind, dests = _parse_header(json_object(body))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            logger.warning("sora_ffi.rtc: a malformed stream header from %s was dropped (%s)", sender, e)
            return
        sid, topic = info.id, info.topic
        local = self.room.local_participant.identity
        if dests and local not in dests:
            return
        key = (sender, sid)
        if key in self.incoming:
            self._fail(key, "a second stream with the same id was opened")
            return
        handlers = self.text_handlers if kind == "text" else self.byte_handlers
        handler = handlers.get(topic)
        if handler is None:
            logger.info("sora_ffi.rtc: no %s stream handler for topic %r: stream %s ignored", kind, topic, sid)
            return
        reader = (TextStreamReader if kind == "text" else ByteStreamReader)(info, kind == "text")
        self.incoming[key] = _Incoming(reader, sender)
        call_handler(handler, (reader, sender), self.tasks, "stream handler")

    def _fail(self, key: tuple[str, str], reason: str) -> None:
        entry = self.incoming.pop(key, None)
        if entry is not None:
            entry.reader._fail(reason)

    def sender_left(self, identity: str) -> None:
        for key in [k for k in self.incoming if k[0] == identity]:
            self._fail(key, f"{identity} left before the stream ended")

    def expire(self) -> None:
        """Fails incoming streams idle for IDLE_TIMEOUT (called by the room's housekeeping)."""
        now = time.monotonic()
        for key, entry in list(self.incoming.items()):
            if now - entry.reader._last > IDLE_TIMEOUT:
                self._fail(key, f"nothing arrived for {IDLE_TIMEOUT:.0f} s")

    def close(self, reason: str) -> None:
        for key in list(self.incoming):
            self._fail(key, reason)


def _parse_header(h: Optional[dict]) -> tuple[StreamInfo, str, list]:
    """(info, "text" or "bytes", destinations); raises on a malformed header."""
    if h is None:
        raise ValueError("not a JSON object")
    sid, topic, kind = str(uuid.UUID(str(h["id"]))), h["topic"], h["kind"]
    if not isinstance(topic, str) or kind not in ("text", "bytes"):
        raise ValueError("bad topic or kind")
    dests = h.get("destinations") or []
    if not isinstance(dests, list):
        raise ValueError("destinations must be a list")
    size = h.get("total_size")
    info = StreamInfo(sid, topic, str(h.get("mime_type", "")), int(h.get("timestamp", 0)),
                      size if isinstance(size, int) else None,
                      {str(k): str(v) for k, v in (h.get("attributes") or {}).items()},
                      str(h.get("name", "")))
    return info, kind, dests


