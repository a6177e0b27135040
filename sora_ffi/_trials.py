"""`Sora(field_trials=...)`: libwebrtc's field trial string, "Name1/Value1/Name2/Value2/".

The official SDK hands it to libwebrtc. sora_ffi has no libwebrtc: the string is parsed
(a malformed one is a ValueError, as libwebrtc would reject it) and every trial this engine
does not implement is named in one warning, so nothing is silently ignored. No libwebrtc
trial has an equivalent in this engine yet; `IMPLEMENTED` lists those that will.
"""
from __future__ import annotations

import logging
from typing import Optional

logger = logging.getLogger("sora_ffi")

IMPLEMENTED: frozenset = frozenset()


def parse_field_trials(text: Optional[str]) -> dict[str, str]:
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
    unknown = sorted(set(trials) - IMPLEMENTED)
    if unknown:
        logger.warning("field_trials not implemented by sora_ffi (no libwebrtc) and not "
                       "applied: %s", ", ".join(unknown))
    return trials
