"""Parsing and validating the ``connect`` message (sora-protocol.md §2.1).

Pure Python; a bad ``connect`` raises :class:`ProtocolError` carrying the WebSocket close
code (4400) and a human-readable reason.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from . import filters
from .sdp import REQUESTABLE_RIDS, SIMULCAST_RIDS, OpusParams, VideoCodec

ROLES = ("sendrecv", "sendonly", "recvonly")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly")
SYSTEM_LABELS = ("signaling", "notify", "push", "stats")
RPC_LABEL = "rpc"
MAX_ID_BYTES = 255
#: SCTP streams libdatachannel negotiates each way (cshim/patches/libdatachannel-sctp-256-streams.patch)
SCTP_STREAMS = 256
#: DataChannels the server can open on one connection: the ids of its parity below SCTP_STREAMS
MAX_SERVER_DATA_CHANNELS = SCTP_STREAMS // 2
#: messaging labels one connection may ask for: what is left beside the system labels and rpc
MAX_MESSAGING_LABELS = MAX_SERVER_DATA_CHANNELS - len(SYSTEM_LABELS) - 1

CLOSE_BAD_REQUEST = 4400


class ProtocolError(Exception):
    """A client error; the session closes its WebSocket with ``code`` and ``reason``."""

    def __init__(self, reason: str, code: int = CLOSE_BAD_REQUEST):
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass
class DataChannelSpec:
    """One DataChannel the server opens for a connection."""

    label: str
    direction: str = "sendrecv"
    compress: bool = False
    header: Optional[list] = None
    ordered: Optional[bool] = None
    max_packet_life_time: Optional[int] = None
    max_retransmits: Optional[int] = None
    protocol: Optional[str] = None

    @property
    def is_messaging(self) -> bool:
        return self.label.startswith("#")

    @property
    def sender_header(self) -> bool:
        """True when delivered messages get the 26-byte sender connection_id in front."""
        return bool(self.header) and any(
            isinstance(h, dict) and h.get("type") == "sender_connection_id" for h in self.header
        )

    @property
    def can_send(self) -> bool:
        return self.direction in ("sendrecv", "sendonly")

    @property
    def can_receive(self) -> bool:
        return self.direction in ("sendrecv", "recvonly")

    def offer_entry(self) -> dict:
        """The entry in ``offer.data_channels`` (``compress`` always present, §2.3)."""
        out: dict[str, Any] = {
            "label": self.label,
            "direction": self.direction,
            "compress": self.compress,
        }
        if self.header is not None:
            out["header"] = self.header
        for key in ("ordered", "max_packet_life_time", "max_retransmits", "protocol"):
            val = getattr(self, key)
            if val is not None:
                out[key] = val
        return out

    def dc_options(self) -> dict:
        """Options for ``sora_peer_create_data_channel``."""
        out: dict[str, Any] = {}
        for key in ("ordered", "max_packet_life_time", "max_retransmits", "protocol"):
            val = getattr(self, key)
            if val is not None:
                out[key] = val
        return out


@dataclass
class ConnectParams:
    """The effective parameters of one connection (after auth overrides)."""

    role: str
    channel_id: str
    client_id: Optional[str] = None
    bundle_id: Optional[str] = None
    metadata: Any = None
    signaling_notify_metadata: Any = None
    audio: bool = True
    opus: OpusParams = field(default_factory=OpusParams)
    audio_bit_rate: Optional[int] = None
    video: bool = True
    video_codec: VideoCodec = field(default_factory=VideoCodec)
    video_bit_rate: Optional[int] = None
    simulcast: bool = False
    simulcast_rid: Optional[str] = None
    #: the newer form (Sora 2025.2): also "none" (no video from simulcast senders)
    simulcast_request_rid: Optional[str] = None
    simulcast_encodings: Optional[list] = None
    #: the layers an RPC ``RequestSimulcastRid`` may ask for (None: any); told in the offer
    simulcast_rpc_rids: Optional[list] = None
    spotlight: bool = False
    spotlight_number: Optional[int] = None
    #: layers a spotlight receiver gets of focused / unfocused senders (None: the defaults)
    spotlight_focus_rid: Optional[str] = None
    spotlight_unfocus_rid: Optional[str] = None
    data_channel_signaling: bool = False
    ignore_disconnect_websocket: bool = False
    data_channels: list = field(default_factory=list)  # DataChannelSpec, requested ones
    rpc_methods: Optional[list] = None
    #: audio streaming: this connection's audio goes to the gateway with this code
    audio_streaming_language_code: Optional[str] = None
    #: ``forwarding_filter(s)``, in the order they are tried (filters.py)
    forwarding_filters: list = field(default_factory=list)
    redirect: bool = False
    sora_client: Optional[str] = None
    environment: Optional[str] = None
    libwebrtc: Optional[str] = None
    raw: dict = field(default_factory=dict)

    @property
    def sends(self) -> bool:
        return self.role in ("sendrecv", "sendonly")

    @property
    def receives(self) -> bool:
        return self.role in ("sendrecv", "recvonly")

    def server_data_channels(self) -> list:
        """Every DataChannel the server opens: system labels first, then messaging labels."""
        if not self.data_channel_signaling:
            return []
        given = {d.label: d for d in self.data_channels}
        out = []
        for label in SYSTEM_LABELS:
            spec = given.get(label) or DataChannelSpec(label=label)
            out.append(dataclasses.replace(spec, direction="sendrecv"))
        if self.rpc_methods:
            spec = given.get(RPC_LABEL) or DataChannelSpec(label=RPC_LABEL)
            out.append(dataclasses.replace(spec, direction="sendrecv"))
        out += [d for d in self.data_channels if d.is_messaging]
        return out


def _opt_bool(msg: dict, key: str, default: bool) -> bool:
    val = msg.get(key)
    if val is None:
        return default
    if not isinstance(val, bool):
        raise ProtocolError(f"INVALID-PARAMETER: {key} must be a boolean")
    return val


def _opt_id(msg: dict, key: str) -> Optional[str]:
    val = msg.get(key)
    if val is None:
        return None
    if not isinstance(val, str):
        raise ProtocolError(f"INVALID-PARAMETER: {key} must be a string")
    if len(val.encode()) > MAX_ID_BYTES:
        raise ProtocolError(f"INVALID-PARAMETER: {key} is longer than {MAX_ID_BYTES} bytes")
    return val


def _opt_int(obj: dict, key: str, lo: int = 0, hi: int = 1 << 31) -> Optional[int]:
    val = obj.get(key)
    if val is None:
        return None
    if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
        raise ProtocolError(f"INVALID-PARAMETER: {key} must be an integer in [{lo}, {hi}]")
    return val


_ENCODING_NUMBERS = {"scaleResolutionDownBy": 1.0, "maxBitrate": 1, "maxFramerate": 1}


def parse_simulcast_encodings(value: object) -> Optional[list]:
    """``simulcast_encodings`` (connect or auth result): at most one entry per rid r0-r2,
    each overriding that layer's ``offer.encodings`` entry. Numbers must be positive
    (``scaleResolutionDownBy`` at least 1); ``scaleResolutionDownTo`` (also written
    ``scale_resolution_down_to``, with ``max_width``/``max_height``) becomes the camelCase
    object the clients' ``setParameters`` takes. Raises ValueError."""
    if value is None:
        return None
    if not isinstance(value, list):
        raise ValueError("must be an array")
    out, seen = [], set()
    for e in value:
        if not isinstance(e, dict):
            raise ValueError("every entry must be an object")
        rid = e.get("rid")
        if rid not in SIMULCAST_RIDS:
            raise ValueError(f"rid must be r0, r1 or r2, not {rid!r}")
        if rid in seen:
            raise ValueError(f"rid {rid} given twice")
        seen.add(rid)
        entry = dict(e)
        if "active" in entry and not isinstance(entry["active"], bool):
            raise ValueError("active must be a boolean")
        for key, least in _ENCODING_NUMBERS.items():
            v = entry.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not v >= least or v != v or v == float("inf")):
                raise ValueError(f"{key} must be a number of at least {least}")
        to = entry.pop("scale_resolution_down_to", None)
        if to is not None:
            if "scaleResolutionDownTo" in entry:
                raise ValueError("scaleResolutionDownTo given twice")
            if isinstance(to, dict):
                to = {"maxWidth": to.get("max_width", to.get("maxWidth")),
                      "maxHeight": to.get("max_height", to.get("maxHeight"))}
            entry["scaleResolutionDownTo"] = to
        to = entry.get("scaleResolutionDownTo")
        if to is not None and not (isinstance(to, dict) and set(to) == {"maxWidth", "maxHeight"} and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16384 for v in to.values())):
            raise ValueError("scaleResolutionDownTo must be {maxWidth, maxHeight} in pixels")
        if "scalabilityMode" in entry and not isinstance(entry["scalabilityMode"], str):
            raise ValueError("scalabilityMode must be a string")
        out.append(entry)
    return out


def parse_data_channels(value: object) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProtocolError("INVALID-PARAMETER: data_channels must be an array")
    out = []
    seen = set()
    for entry in value:
        if not isinstance(entry, dict):
            raise ProtocolError("INVALID-PARAMETER: data_channels entries must be objects")
        label = entry.get("label")
        if not isinstance(label, str) or not label or len(label.encode()) > MAX_ID_BYTES:
            raise ProtocolError("INVALID-PARAMETER: data_channels label must be a non-empty string")
        if not label.startswith("#") and label not in SYSTEM_LABELS + (RPC_LABEL,):
            raise ProtocolError(f"INVALID-PARAMETER: data_channels label {label!r} not allowed")
        if label in seen:
            raise ProtocolError(f"INVALID-PARAMETER: duplicate data_channels label {label!r}")
        seen.add(label)
        direction = entry.get("direction", "sendrecv")
        if direction not in DIRECTIONS:
            raise ProtocolError(f"INVALID-PARAMETER: invalid direction for {label!r}")
        compress = entry.get("compress", False)
        if not isinstance(compress, bool):
            raise ProtocolError(f"INVALID-PARAMETER: compress of {label!r} must be a boolean")
        header = entry.get("header")
        if header is not None and not (
            isinstance(header, list) and all(isinstance(h, dict) for h in header)
        ):
            raise ProtocolError(f"INVALID-PARAMETER: header of {label!r} must be an array")
        ordered = entry.get("ordered")
        if ordered is not None and not isinstance(ordered, bool):
            raise ProtocolError(f"INVALID-PARAMETER: ordered of {label!r} must be a boolean")
        mplt = _opt_int(entry, "max_packet_life_time", 0, 65535)
        mr = _opt_int(entry, "max_retransmits", 0, 65535)
        if mplt is not None and mr is not None:
            raise ProtocolError(
                f"INVALID-PARAMETER: {label!r} sets both max_packet_life_time and max_retransmits"
            )
        protocol = entry.get("protocol")
        if protocol is not None and not isinstance(protocol, str):
            raise ProtocolError(f"INVALID-PARAMETER: protocol of {label!r} must be a string")
        out.append(DataChannelSpec(
            label=label, direction=direction, compress=compress, header=header,
            ordered=ordered, max_packet_life_time=mplt, max_retransmits=mr, protocol=protocol,
        ))
    messaging = sum(1 for d in out if d.is_messaging)
    if messaging > MAX_MESSAGING_LABELS:
        raise ProtocolError(f"INVALID-PARAMETER: {messaging} messaging labels in data_channels "
                            f"(at most {MAX_MESSAGING_LABELS})")
    return out


#: the longest language code accepted (bytes of UTF-8) [U: Sora's own limit is not known]
MAX_LANGUAGE_CODE_BYTES = 255


def parse_language_code(value: object) -> Optional[str]:
    """``audio_streaming_language_code`` of a connect or an auth result: None (absent) or a
    non-empty string that can be sent as an HTTP header value; ValueError otherwise."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("audio_streaming_language_code must be a string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("audio_streaming_language_code is not valid UTF-8") from None
    if not raw:
        raise ValueError("audio_streaming_language_code must not be empty")
    if len(raw) > MAX_LANGUAGE_CODE_BYTES:
        raise ValueError(f"audio_streaming_language_code is longer than {MAX_LANGUAGE_CODE_BYTES} bytes")
    if any(c < 0x20 or c == 0x7F for c in raw):
        raise ValueError("audio_streaming_language_code must not contain control characters")
    return value


def parse_connect(msg: object, *, default_data_channel_signaling: bool = False,
                  default_ignore_disconnect_websocket: bool = False) -> ConnectParams:
    """Validates ``msg`` (an already-decoded JSON value) as a ``connect`` message."""
    if not isinstance(msg, dict):
        raise ProtocolError("INVALID-MESSAGE: a JSON object is required")
    if msg.get("type") != "connect":
        raise ProtocolError("INVALID-MESSAGE: the first message must be type connect")
    role = msg.get("role")
    if role is None:
        raise ProtocolError("INVALID-PARAMETER: role is required")
    if role not in ROLES:
        raise ProtocolError(f"INVALID-PARAMETER: invalid role {role!r}")
    channel_id = msg.get("channel_id")
    if channel_id is None:
        raise ProtocolError("INVALID-PARAMETER: channel_id is required")
    if not isinstance(channel_id, str) or not channel_id:
        raise ProtocolError("INVALID-PARAMETER: channel_id must be a non-empty string")
    if len(channel_id.encode()) > MAX_ID_BYTES:
        raise ProtocolError(f"INVALID-PARAMETER: channel_id is longer than {MAX_ID_BYTES} bytes")

    p = ConnectParams(role=role, channel_id=channel_id, raw=msg)
    p.client_id = _opt_id(msg, "client_id")
    p.bundle_id = _opt_id(msg, "bundle_id")
    p.metadata = msg.get("metadata")
    p.signaling_notify_metadata = msg.get("signaling_notify_metadata")

    audio = msg.get("audio", True)
    if audio is None:
        audio = True
    if not isinstance(audio, (bool, dict)):
        raise ProtocolError("INVALID-PARAMETER: audio must be a boolean or an object")
    p.audio = audio is not False
    try:
        p.opus = OpusParams.from_connect(audio)
    except ValueError as e:
        raise ProtocolError(f"INVALID-PARAMETER: {e}") from None
    if isinstance(audio, dict):
        p.audio_bit_rate = _opt_int(audio, "bit_rate", 1, 1_000_000)

    video = msg.get("video", True)
    if video is None:
        video = True
    if not isinstance(video, (bool, dict)):
        raise ProtocolError("INVALID-PARAMETER: video must be a boolean or an object")
    p.video = video is not False
    try:
        p.video_codec = VideoCodec.from_connect(video)
    except ValueError as e:
        raise ProtocolError(f"INVALID-PARAMETER: {e}") from None
    if isinstance(video, dict):
        p.video_bit_rate = _opt_int(video, "bit_rate", 1, 1_000_000)

    sim = msg.get("simulcast")
    if isinstance(sim, dict):  # legacy {"rid": ...} form
        p.simulcast = True
    elif sim is not None:
        if not isinstance(sim, bool):
            raise ProtocolError("INVALID-PARAMETER: simulcast must be a boolean")
        p.simulcast = sim
    rid = msg.get("simulcast_rid")
    if rid is not None and rid not in SIMULCAST_RIDS:
        raise ProtocolError("INVALID-PARAMETER: simulcast_rid must be r0, r1 or r2")
    p.simulcast_rid = rid
    request_rid = msg.get("simulcast_request_rid")
    if request_rid is not None and request_rid not in REQUESTABLE_RIDS:
        raise ProtocolError("INVALID-PARAMETER: simulcast_request_rid must be none, r0, r1 or r2")
    p.simulcast_request_rid = request_rid
    rpc_rids = msg.get("simulcast_rpc_rids")
    if rpc_rids is not None and not (isinstance(rpc_rids, list) and all(r in REQUESTABLE_RIDS for r in rpc_rids)
                                     and len(set(rpc_rids)) == len(rpc_rids)):
        raise ProtocolError("INVALID-PARAMETER: simulcast_rpc_rids must be an array of distinct rids "
                            "(none, r0, r1, r2)")
    p.simulcast_rpc_rids = rpc_rids
    try:
        p.simulcast_encodings = parse_simulcast_encodings(msg.get("simulcast_encodings"))
    except ValueError as e:
        raise ProtocolError(f"INVALID-PARAMETER: simulcast_encodings: {e}") from None
    spot = msg.get("spotlight")
    p.spotlight = bool(spot) if isinstance(spot, (bool, int)) else False
    p.spotlight_number = _opt_int(msg, "spotlight_number", 1, 8)
    for key in ("spotlight_focus_rid", "spotlight_unfocus_rid"):
        value = msg.get(key)
        if value is not None and value not in REQUESTABLE_RIDS:
            raise ProtocolError(f"INVALID-PARAMETER: {key} must be none, r0, r1 or r2")
        setattr(p, key, value)
    if p.spotlight:
        p.simulcast = True  # spotlight moves receivers between a sender's simulcast layers

    p.data_channel_signaling = _opt_bool(
        msg, "data_channel_signaling", default_data_channel_signaling)
    p.ignore_disconnect_websocket = _opt_bool(
        msg, "ignore_disconnect_websocket", default_ignore_disconnect_websocket)
    if not p.data_channel_signaling:
        p.ignore_disconnect_websocket = False
    p.data_channels = parse_data_channels(msg.get("data_channels"))
    rpc = msg.get("rpc_methods")
    if rpc is not None and not (isinstance(rpc, list) and all(isinstance(m, str) for m in rpc)):
        raise ProtocolError("INVALID-PARAMETER: rpc_methods must be an array of strings")
    p.rpc_methods = rpc
    try:
        p.forwarding_filters = filters.parse_filters(msg.get("forwarding_filter"), msg.get("forwarding_filters"))
    except ValueError as e:
        raise ProtocolError(f"INVALID-PARAMETER: {e}") from None
    try:
        p.audio_streaming_language_code = parse_language_code(msg.get("audio_streaming_language_code"))
    except ValueError as e:
        raise ProtocolError(f"INVALID-PARAMETER: {e}") from None
    p.redirect = msg.get("redirect") is True
    for key in ("sora_client", "environment", "libwebrtc"):
        val = msg.get(key)
        setattr(p, key, val if isinstance(val, str) else None)
    return p
