"""Data packets on Sora messaging labels (docs/rtc.md, "Data").

A topic is a pair of labels fixed at connect time: `#<topic>` (reliable: ordered, with
retransmissions) and `#~<topic>` (lossy: unordered, `max_retransmits` 0); the default
topic "" is `#` and `#~`. Every label asks the server for the sender's connection id in
front of each message (Sora's messaging `header`), which is how a receiver knows who sent
it. A packet with destinations carries them in a small envelope; receivers that are not
named drop it. Sora still delivers it to every member with the label, so destinations are
a filter, not privacy.
"""
from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional, Union

if TYPE_CHECKING:
    from ._participant import RemoteParticipant

#: Sora's messaging header: the sender's connection id, 26 ASCII bytes.
SENDER_ID_BYTES = 26
#: What one packet (envelope included) may hold: a DataChannel message is at most 64 KiB
#: here, and the server adds the sender header on delivery. Larger payloads: streams.
MAX_PACKET_BYTES = 65536 - SENDER_ID_BYTES - 512
_ENVELOPE = b"\x00sfd"  # a packet with destinations: magic, u16 length, JSON list, payload
_LOSSY = "~"
_TOPIC_MAX_BYTES = 200
#: topics the room uses itself (streams, RPC): reliable labels `#_rtc.<name>`
RESERVED = "_rtc."
STREAM_TOPIC = RESERVED + "stream"
RPC_TOPIC = RESERVED + "rpc"


class DataPacketKind(enum.IntEnum):
    KIND_LOSSY = 0
    KIND_RELIABLE = 1


@dataclass(frozen=True)
class DataPacket:
    """A received packet: `participant` is None when the sender is not (or no longer)
    known as a participant of the room."""
    data: bytes
    kind: DataPacketKind
    participant: Optional["RemoteParticipant"] = None
    topic: str = ""


def json_object(text: Union[str, bytes]) -> Optional[dict]:
    """`text` as a JSON object; None for anything else, malformed or nested too deep to
    parse (a peer's message is input like any other)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def check_topic(topic: object) -> str:
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    if topic.startswith(_LOSSY):
        raise ValueError(f"topic must not start with {_LOSSY!r} (it marks lossy labels)")
    if topic.startswith(RESERVED):
        raise ValueError(f"topics starting with {RESERVED!r} are the room's own (streams, RPC)")
    if len(topic.encode()) > _TOPIC_MAX_BYTES:
        raise ValueError(f"topic must be at most {_TOPIC_MAX_BYTES} bytes")
    return topic


def label(topic: str, kind: DataPacketKind) -> str:
    return "#" + (_LOSSY if kind == DataPacketKind.KIND_LOSSY else "") + topic


def parse_label(name: str) -> Optional[tuple[str, DataPacketKind]]:
    """(topic, kind) of an rtc label, None for other labels."""
    if not name.startswith("#"):
        return None
    if name.startswith("#" + _LOSSY):
        return name[2:], DataPacketKind.KIND_LOSSY
    return name[1:], DataPacketKind.KIND_RELIABLE


def data_channels(topics: Iterable[str], reserved: Iterable[str] = ()) -> list[dict]:
    """The connect's `data_channels` entries for the user's `topics` (a reliable and a
    lossy label each) and the room's `reserved` topics (reliable only)."""
    header = [{"type": "sender_connection_id"}]

    def reliable(topic: str) -> dict:
        return {"label": label(topic, DataPacketKind.KIND_RELIABLE), "direction": "sendrecv",
                "ordered": True, "header": header}
    out = []
    for topic in topics:
        out.append(reliable(topic))
        out.append({"label": label(topic, DataPacketKind.KIND_LOSSY), "direction": "sendrecv",
                    "ordered": False, "max_retransmits": 0, "header": header})
    out.extend(reliable(topic) for topic in reserved)
    return out


def encode(payload: bytes, destinations: tuple[str, ...]) -> bytes:
    """The message for `payload`. A plain payload that happens to start like an envelope
    is wrapped in one (with no destinations) so that it is never misread."""
    if destinations or payload.startswith(_ENVELOPE):
        names = json.dumps(list(destinations), separators=(",", ":")).encode()
        if len(names) > 0xFFFF:
            raise ValueError("destination_identities is too long")
        payload = _ENVELOPE + struct.pack("!H", len(names)) + names + payload
    if len(payload) > MAX_PACKET_BYTES:
        raise ValueError(f"a data packet holds at most {MAX_PACKET_BYTES} bytes "
                         f"(this one: {len(payload)}); send larger payloads as a stream "
                         "(send_file / stream_bytes)")
    return payload


def decode(message: bytes) -> Optional[tuple[str, bytes, Optional[list[str]]]]:
    """(sender connection id, payload, destinations or None for everyone); None for a
    message too short to carry the sender header or with a broken envelope."""
    if len(message) < SENDER_ID_BYTES:
        return None
    sender = message[:SENDER_ID_BYTES].decode("ascii", "replace")
    body = message[SENDER_ID_BYTES:]
    if not body.startswith(_ENVELOPE):
        return sender, body, None
    head = len(_ENVELOPE) + 2
    if len(body) < head:
        return None
    (n,) = struct.unpack("!H", body[len(_ENVELOPE):head])
    try:
        names = json.loads(body[head:head + n])
    except (ValueError, RecursionError):
        return None
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        return None
    return sender, body[head + n:], (names or None)
