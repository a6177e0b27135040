"""Checks every argument of `Sora.create_connection` before anything touches the network,
and turns them into the config JSON object of `sora_connection_new` (docs/c-abi.md).

Wrong types raise TypeError, wrong values ValueError, always naming the parameter.
"""
from __future__ import annotations

import json
from functools import partial
from typing import Any, Callable, Iterable, Mapping, Optional
from urllib.parse import urlsplit

from ._enums import SoraDegradationPreference
from ._encoded import SoraEncodedVideoSource
from ._source import SoraAudioSource, SoraVideoSource
from ._transform import SoraAudioFrameTransformer, SoraVideoFrameTransformer

__all__ = ["connection_config", "MAX_ID_BYTES"]

MAX_ID_BYTES = 255  # channel_id, client_id, bundle_id (Sora's limit)
ROLES = ("sendrecv", "sendonly", "recvonly")
AUDIO_CODECS = ("OPUS",)
VIDEO_CODECS = ("VP8", "VP9", "AV1", "H264", "H265")
SIMULCAST_RIDS = ("r0", "r1", "r2")
SPOTLIGHT_RIDS = ("none", "r0", "r1", "r2")
DIRECTIONS = ("sendrecv", "sendonly", "recvonly")
VIDEO_BIT_RATE = (1, 15000)  # kbps
AUDIO_BIT_RATE = (6, 510)  # kbps
SPOTLIGHT_NUMBER = (1, 8)
TIMEOUTS = (
    "data_channel_signaling_timeout",
    "disconnect_wait_timeout",
    "websocket_close_timeout",
    "websocket_connection_timeout",
)
BOOLS = ("audio", "video", "simulcast", "spotlight", "data_channel_signaling",
         "ignore_disconnect_websocket", "insecure")
PARAM_DICTS = ("video_vp9_params", "video_av1_params", "video_h264_params", "video_h265_params",
               "audio_opus_params")
PLAIN_STRINGS = ("audio_streaming_language_code", "proxy_username", "proxy_password",
                 "proxy_agent", "user_agent")
CERTS = ("client_cert", "client_key", "ca_cert")
# Encoded transforms are not available yet: only None is accepted.
# What a video_source can be encoded as in this build.
#: H264 through the OpenH264 library given as Sora(openh264=...) (the shim checks it works)
ENCODABLE_VIDEO_CODECS = ("VP8", "VP9", "AV1", "H264")
DATA_CHANNEL_KEYS = ("label", "direction", "ordered", "max_packet_life_time", "max_retransmits",
                     "protocol", "compress", "header")
HEADER_TYPES = ("sender_connection_id",)
INT32_MAX = 2**31 - 1


def _type_name(value: Any) -> str:
    return type(value).__name__


def _require(name: str, value: Any, types: type | tuple[type, ...], what: str) -> None:
    # bool is an int subclass, but True is never a sensible bit rate or timeout.
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise TypeError(f"{name} must be {what}, not {_type_name(value)}")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _check_str(name: str, value: Any) -> str:
    _require(name, value, str, "a str")
    return value


def _check_bool(name: str, value: Any) -> bool:
    _require(name, value, bool, "a bool")
    return value


def _check_int_range(name: str, value: Any, low: int, high: Optional[int] = None, unit: str = "") -> int:
    _require(name, value, int, "an int")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"{name} must be {bound}{unit}, not {value}")
    return int(value)


def _check_seconds(name: str, value: Any, low: float, high: float) -> float:
    _require(name, value, (int, float), "a number of seconds")
    if not (low <= value <= high):  # NaN fails too
        raise ValueError(f"{name} must be between {low} and {high} seconds, not {value}")
    return float(value)


def _check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    _check_str(name, value)
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


def _check_id(name: str, value: Any, allow_empty: bool = True) -> str:
    _check_str(name, value)
    if not allow_empty and not value:
        raise ValueError(f"{name} must not be empty")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_ID_BYTES:
        raise ValueError(f"{name} must be at most {MAX_ID_BYTES} bytes in UTF-8, not {size}")
    return value


def _check_json(name: str, value: Any) -> Any:
    """The value itself, once it is known to serialise as strict JSON."""
    try:
        json.dumps(value, allow_nan=False)
    except TypeError as e:
        raise TypeError(f"{name} must be JSON-serialisable: {e}") from None
    except ValueError as e:  # NaN/Infinity, circular references
        raise ValueError(f"{name} must be JSON-serialisable: {e}") from None
    return value


def _check_dict(name: str, value: Any) -> dict:
    _require(name, value, dict, "a dict")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, not {_type_name(key)}")
    return _check_json(name, value)


def _check_list(name: str, value: Any) -> list:
    # Tuples are fine too; a str is a sequence but never what was meant.
    _require(name, value, (list, tuple), "a list")
    return list(value)


def _check_url(name: str, value: Any, schemes: tuple[str, ...]) -> str:
    _check_str(name, value)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as e:
        raise ValueError(f"{name} is not a valid URL: {value!r} ({e})") from None
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise ValueError(f"{name} must be a {' or '.join(s + '://' for s in schemes)} URL with a host, not {value!r}")
    return value


def _check_signaling_urls(value: Any) -> list[str]:
    urls = _check_list("signaling_urls", value)
    if not urls:
        raise ValueError("signaling_urls must not be empty")
    return [_check_url(f"signaling_urls[{i}]", url, ("ws", "wss")) for i, url in enumerate(urls)]


def _check_header(name: str, value: Any) -> list[dict]:
    entries = _check_list(name, value)
    for i, entry in enumerate(entries):
        item = f"{name}[{i}]"
        _require(item, entry, dict, "a dict")
        unknown = set(entry) - {"type"}
        if unknown:
            raise ValueError(f"{item} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
        if "type" not in entry:
            raise ValueError(f"{item} needs a 'type'")
        _check_choice(f"{item}['type']", entry["type"], HEADER_TYPES)
    return [dict(e) for e in entries]


def _check_data_channel(name: str, dc: Any) -> dict:
    _require(name, dc, dict, "a dict")
    unknown = [k for k in dc if k not in DATA_CHANNEL_KEYS]
    if unknown:
        raise ValueError(f"{name} has unknown keys: {', '.join(map(repr, unknown))} "
                         f"(known: {', '.join(DATA_CHANNEL_KEYS)})")
    for required in ("label", "direction"):
        if required not in dc:
            raise ValueError(f"{name} needs a {required!r}")
    label = _check_str(f"{name}['label']", dc["label"])
    if not label.startswith("#"):
        raise ValueError(f"{name}['label'] must start with '#' (a messaging channel), not {label!r}")
    if len(label.encode("utf-8", "surrogatepass")) > 65535:
        raise ValueError(f"{name}['label'] is longer than 65535 bytes")
    _check_choice(f"{name}['direction']", dc["direction"], DIRECTIONS)
    for key in ("ordered", "compress"):
        if key in dc:
            _check_bool(f"{name}[{key!r}]", dc[key])
    for key in ("max_packet_life_time", "max_retransmits"):
        if key in dc:
            _check_int_range(f"{name}[{key!r}]", dc[key], 0, INT32_MAX)
    if "max_packet_life_time" in dc and "max_retransmits" in dc:
        raise ValueError(f"{name}: max_packet_life_time and max_retransmits cannot be used together")
    if "protocol" in dc:
        _check_str(f"{name}['protocol']", dc["protocol"])
    out = dict(dc)
    if "header" in dc:
        out["header"] = _check_header(f"{name}['header']", dc["header"])
    return out


def _check_data_channels(value: Any) -> list[dict]:
    channels = [_check_data_channel(f"data_channels[{i}]", dc)
                for i, dc in enumerate(_check_list("data_channels", value))]
    labels = [dc["label"] for dc in channels]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"data_channels lists a label more than once: {', '.join(duplicates)}")
    return channels


def _check_forwarding_filters(value: Any) -> list[dict]:
    filters = _check_list("forwarding_filters", value)
    return [_check_dict(f"forwarding_filters[{i}]", f) for i, f in enumerate(filters)]


def _check_pem(name: str, value: Any) -> str:
    """PEM bytes -> PEM text (the shim takes text)."""
    _require(name, value, (bytes, bytearray, memoryview), "bytes (PEM)")
    raw = bytes(value)
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{name} must be PEM text (ASCII); DER is not accepted") from None
    if "-----BEGIN " not in text:
        raise ValueError(f"{name} must be PEM ('-----BEGIN ...'), got {len(raw)} bytes without a PEM header")
    return text


def _check_degradation_preference(value: Any) -> int:
    # Accept our enum and plain ints (the official enum is an IntEnum too); bool is neither.
    _require("degradation_preference", value, int, "a SoraDegradationPreference")
    try:
        return int(SoraDegradationPreference(value))
    except ValueError:
        valid = ", ".join(f"{m.name} ({m.value})" for m in SoraDegradationPreference)
        raise ValueError(f"degradation_preference must be one of {valid}, not {value!r}") from None


def _check_transformer(name: str, value: Any, cls: type) -> int:
    """A transformer of the right kind -> its native id (the shim looks it up)."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__name__}, not {_type_name(value)}")
    return int(value._id)


def _check_source(name: str, value: Any, cls: type | tuple[type, ...]) -> int:
    """A source made by this package's Sora -> its native id (the shim looks it up)."""
    if not isinstance(value, cls):
        wanted = ("a SoraAudioSource (from Sora.create_audio_source)" if cls is SoraAudioSource else
                  "a SoraVideoSource or SoraEncodedVideoSource (from Sora.create_video_source or "
                  "Sora.create_encoded_video_source)")
        raise TypeError(f"{name} must be {wanted}, not {_type_name(value)}")
    source: Any = value
    return int(source._native_id)


# name -> checker(value) returning the JSON value; one entry per optional parameter.
_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "client_id": partial(_check_id, "client_id"),
    "bundle_id": partial(_check_id, "bundle_id"),
    "metadata": partial(_check_json, "metadata"),
    "signaling_notify_metadata": partial(_check_json, "signaling_notify_metadata"),
    "audio_codec_type": partial(_check_choice, "audio_codec_type", choices=AUDIO_CODECS),
    "video_codec_type": partial(_check_choice, "video_codec_type", choices=VIDEO_CODECS),
    "video_bit_rate": partial(_check_int_range, "video_bit_rate", low=VIDEO_BIT_RATE[0],
                              high=VIDEO_BIT_RATE[1], unit=" kbps"),
    "audio_bit_rate": partial(_check_int_range, "audio_bit_rate", low=AUDIO_BIT_RATE[0],
                              high=AUDIO_BIT_RATE[1], unit=" kbps"),
    "spotlight_number": partial(_check_int_range, "spotlight_number", low=SPOTLIGHT_NUMBER[0],
                                high=SPOTLIGHT_NUMBER[1]),
    "simulcast_rid": partial(_check_choice, "simulcast_rid", choices=SIMULCAST_RIDS),
    "simulcast_request_rid": partial(_check_choice, "simulcast_request_rid",
                                     choices=SPOTLIGHT_RIDS),
    "spotlight_focus_rid": partial(_check_choice, "spotlight_focus_rid", choices=SPOTLIGHT_RIDS),
    "spotlight_unfocus_rid": partial(_check_choice, "spotlight_unfocus_rid", choices=SPOTLIGHT_RIDS),
    "forwarding_filter": partial(_check_dict, "forwarding_filter"),
    "forwarding_filters": _check_forwarding_filters,
    "data_channels": _check_data_channels,
    "proxy_url": partial(_check_url, "proxy_url", schemes=("http", "https")),
    "degradation_preference": _check_degradation_preference,
    "audio_frame_transformer": partial(_check_transformer, "audio_frame_transformer",
                                       cls=SoraAudioFrameTransformer),
    "video_frame_transformer": partial(_check_transformer, "video_frame_transformer",
                                       cls=SoraVideoFrameTransformer),
    "audio_source": partial(_check_source, "audio_source", cls=SoraAudioSource),
    "video_source": partial(_check_source, "video_source", cls=(SoraVideoSource, SoraEncodedVideoSource)),
    "ping_timeout": partial(_check_seconds, "ping_timeout", low=0.1, high=3600.0),
    **{name: partial(_check_bool, name) for name in BOOLS},
    **{name: partial(_check_dict, name) for name in PARAM_DICTS},
    **{name: partial(_check_str, name) for name in PLAIN_STRINGS},
    **{name: partial(_check_int_range, name, low=1, unit=" seconds") for name in TIMEOUTS},
    **{name: partial(_check_pem, name) for name in CERTS},
}


def connection_config(signaling_urls: Any, role: Any, channel_id: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """Validates the arguments of `create_connection` and returns the shim's config object.

    `options` holds every optional keyword parameter (None = not given)."""
    config: dict[str, Any] = {
        "signaling_urls": _check_signaling_urls(signaling_urls),
        "role": _check_choice("role", role, ROLES),
        "channel_id": _check_id("channel_id", channel_id, allow_empty=False),
    }
    if options.get("audio_codec_type") == "LYRA":
        raise ValueError("audio_codec_type 'LYRA' was removed (Sora and the official SDKs dropped Lyra "
                         "support); use 'OPUS'")
    for name, value in options.items():
        if value is None:
            continue
        checker = _CHECKERS.get(name)
        if checker is None:
            raise TypeError(f"create_connection() got an unexpected keyword argument {name!r}")
        config[name] = checker(value)
    encoded = options.get("video_source")
    if isinstance(encoded, SoraEncodedVideoSource):
        _check_encoded_codec(config, encoded)
    else:
        _check_combinations(config)
    return config


def _check_encoded_codec(config: dict[str, Any], source: SoraEncodedVideoSource) -> None:
    """An encoded source sends its own codec: video_codec_type may only repeat it (and is set
    to it when not given, so Sora is asked for that codec)."""
    _check_combinations({k: v for k, v in config.items() if k != "video_source"})
    asked = config.get("video_codec_type")
    if asked is not None and asked != source.codec_type:
        raise ValueError(f"video_codec_type {asked!r} does not match the encoded video source, "
                         f"which sends {source.codec_type}")
    config["video_codec_type"] = source.codec_type


def _check_combinations(config: Mapping[str, Any]) -> None:
    if "forwarding_filter" in config and "forwarding_filters" in config:
        raise ValueError("give forwarding_filter or forwarding_filters, not both")
    if ("client_cert" in config) != ("client_key" in config):
        raise ValueError("client_cert and client_key must be given together")
    for name in ("proxy_username", "proxy_password", "proxy_agent"):
        if name in config and "proxy_url" not in config:
            raise ValueError(f"{name} needs proxy_url")
    codec = config.get("video_codec_type")
    if "video_source" in config and codec is not None and codec not in ENCODABLE_VIDEO_CODECS:
        raise ValueError(f"video_codec_type {codec!r} cannot be sent from a video_source: this build "
                         f"encodes VP8, VP9, AV1 and H264 (H264 with Sora(openh264=...))")
