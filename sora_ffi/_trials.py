"""`Sora(field_trials=...)`: libwebrtc's field trial string, "Name1/Value1/Name2/Value2/".

The official SDK hands it to libwebrtc. sora_ffi has no libwebrtc: the string is parsed (a
malformed one is a ValueError, as libwebrtc would reject it), the trials below that have an
equivalent in this engine become its settings (the connection config's `tuning`), and
every other trial is named in one warning, so nothing is silently ignored.

* ``WebRTC-Video-Pacing/factor:F,max_delay:D/``: the video pacer sends at F times the
  target bitrate (default 2.5) and drains faster once its backlog is older than D ("500ms",
  "2s"; a bare number is milliseconds; 0 = no limit; default 2 s).
* ``WebRTC-Audio-OpusMinPacketLossRate/Enabled-N/``: the Opus encoder plans its in-band FEC
  for at least N % loss (0-100), above what receivers report; ``Disabled`` keeps reports only.
"""
from __future__ import annotations

import logging
import math
import re
from typing import Any, Callable, Optional

logger = logging.getLogger("sora_ffi")


def _number(trial: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"field_trials: {trial} {key} must be a number, not {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"field_trials: {trial} {key} must be finite, not {text!r}")
    return value


def _milliseconds(trial: str, key: str, text: str) -> float:
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*(us|ms|s)?\s*", text)
    if not m:
        raise ValueError(f"field_trials: {trial} {key} must be a duration such as 500ms or 2s, not {text!r}")
    value = _number(trial, key, m.group(1))
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}[m.group(2)]


def _video_pacing(value: str) -> dict[str, Any]:
    trial = "WebRTC-Video-Pacing"
    out: dict[str, Any] = {}
    for item in filter(None, value.split(",")):
        key, sep, text = item.partition(":")
        if not sep:
            raise ValueError(f"field_trials: {trial} expects key:value items, not {item!r}")
        if key == "factor":
            factor = _number(trial, key, text)
            if not 0 < factor <= 100:
                raise ValueError(f"field_trials: {trial} factor must be above 0 and at most 100, not {text}")
            out["video_pacing_factor"] = factor
        elif key == "max_delay":
            ms = _milliseconds(trial, key, text)
            if not 0 <= ms <= 60_000:
                raise ValueError(f"field_trials: {trial} max_delay must be 0 to 60 s, not {text}")
            out["video_pacing_max_delay_ms"] = ms
        else:
            raise ValueError(f"field_trials: {trial} has no key {key!r} (factor, max_delay)")
    return out


def _opus_min_packet_loss(value: str) -> dict[str, Any]:
    trial = "WebRTC-Audio-OpusMinPacketLossRate"
    if value.startswith("Disabled"):
        return {}
    m = re.fullmatch(r"Enabled-(\d{1,3})", value)
    if not m or int(m.group(1)) > 100:
        raise ValueError(f"field_trials: {trial} must be Enabled-N (N a percentage 0-100) or "
                         f"Disabled, not {value!r}")
    return {"opus_min_packet_loss_percent": int(m.group(1))}


# trial name → its value's settings of this engine
IMPLEMENTED: dict[str, Callable[[str], dict[str, Any]]] = {
    "WebRTC-Video-Pacing": _video_pacing,
    "WebRTC-Audio-OpusMinPacketLossRate": _opus_min_packet_loss,
}


def parse_field_trials(text: Optional[str]) -> dict[str, Any]:
    """The engine settings (the config's `tuning`) that ``text`` asks for."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise TypeError(f"field_trials must be a str or None, not {type(text).__name__}")
    if text == "":
        return {}
    if not text.endswith("/"):
        raise ValueError("field_trials must be 'Name/Value/' pairs ending with '/'")
    parts = text[:-1].split("/")
    if len(parts) % 2:
        raise ValueError("field_trials must be 'Name/Value/' pairs (a value is missing)")
    trials: dict[str, str] = {}
    for name, value in zip(parts[::2], parts[1::2]):
        if not name:
            raise ValueError("field_trials: empty trial name")
        if name in trials:
            raise ValueError(f"field_trials: {name} is given twice")
        trials[name] = value
    tuning: dict[str, Any] = {}
    for name, value in trials.items():
        if name in IMPLEMENTED:
            tuning.update(IMPLEMENTED[name](value))
    unknown = sorted(set(trials) - set(IMPLEMENTED))
    if unknown:
        logger.warning("field_trials not implemented by sora_ffi (no libwebrtc) and not "
                       "applied: %s", ", ".join(unknown))
    return tuning
