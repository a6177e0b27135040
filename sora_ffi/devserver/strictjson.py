"""Standard JSON only, in and out, for everything the dev server reads and writes.

Python's ``json`` accepts more than RFC 8259: ``NaN``/``Infinity``, numbers that overflow a
double (``1e400`` becomes ``inf``), lone UTF-16 surrogates (``"\\ud800"``), and nesting until
the interpreter's recursion limit. Whatever the server accepts it may copy to other clients
(metadata in notifies), and a strict peer (serde_json, boost.json) rejects such a message,
so one hostile client could break a whole channel. :func:`loads` therefore refuses all of it
with :class:`InvalidJson` (a ``ValueError``), and :func:`dumps` writes only standard JSON.
"""
from __future__ import annotations

import json
import math
from typing import Any, Union

# Deep enough for any real message (Sora's own limit is not documented; metadata of a few
# levels is usual), shallow enough that nothing downstream recurses into trouble.
MAX_DEPTH = 64


class InvalidJson(ValueError):
    """Input that is not standard JSON (or is nested deeper than :data:`MAX_DEPTH`)."""


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidJson(f"number {text[:20]}... overflows a double")
    return value


def _bounded_int(text: str) -> int:
    # 309 digits is the most a double can hold; longer integers are refused by strict peers.
    if len(text.lstrip("-")) > 309:
        raise InvalidJson("integer overflows a double")
    return int(text)


def validate(value: Any) -> None:
    """Raises :class:`InvalidJson` unless ``value`` (already parsed, e.g. JWT claims) would
    be standard JSON: finite numbers, no lone surrogates, at most :data:`MAX_DEPTH` deep.
    Iterative, so nothing recurses."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            _check_text(v)
        elif isinstance(v, float) and not math.isfinite(v):
            raise InvalidJson(f"{v} is not valid JSON")
        elif isinstance(v, (list, dict)):
            if depth > MAX_DEPTH:
                raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(v, dict):
                for k, item in v.items():
                    _check_text(k)
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in v)


def _check_text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidJson("string holds a lone UTF-16 surrogate") from None


def loads(data: Union[str, bytes, bytearray]) -> Any:
    """Parses standard JSON; anything else raises :class:`InvalidJson`."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJson("not UTF-8") from None
    try:
        value = json.loads(data, parse_constant=_reject_constant,
                           parse_float=_finite_float, parse_int=_bounded_int)
    except InvalidJson:
        raise
    except RecursionError:
        raise InvalidJson(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, int digit limits
        raise InvalidJson(f"malformed JSON: {e}") from None
    validate(value)
    return value


def dumps(value: Any) -> str:
    """Standard JSON text (no NaN/Infinity; raises ``ValueError`` on them)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
