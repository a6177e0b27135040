"""Hostile values and seeded mutations shared by the tests/test_hostile_*.py suites.

Values are JSON *text* fragments, because the most dangerous ones (``NaN``, ``1e400``,
``"\\ud800"``, 100,000-deep arrays) are not what ``json.dumps`` would write.
"""
from __future__ import annotations

import json
import random

DEEP = "[" * 100_000 + "]" * 100_000

HOSTILE_VALUES = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" * 400,
    '"\\ud800"', '"a\\udfff"', '{"\\ud800": 1}',
    DEEP, "[" * 70 + "]" * 70, '{"a":' * 70 + "1" + "}" * 70,
    json.dumps("x" * 300_000), json.dumps("\u0000\u202e\ufeff"), '""',
    "null", "true", "false", "0", "-1", "4294967296", "1.5", "[]", "{}", '[null]',
    '{"type": "connect"}', json.dumps(["r0"] * 1000),
]


def splice(template: dict, path: tuple, raw_value: str) -> str:
    """``template`` as JSON text with the value at ``path`` replaced by ``raw_value``."""
    marker = "__HOSTILE_VALUE__"
    obj = json.loads(json.dumps(template))
    cur = obj
    for key in path[:-1]:
        cur = cur[key]
    cur[path[-1]] = marker
    return json.dumps(obj).replace(json.dumps(marker), raw_value, 1)


def paths(obj, prefix=()) -> list:
    """Every (key path) in a JSON object tree, containers included."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append(prefix + (k,))
            out.extend(paths(v, prefix + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append(prefix + (i,))
            out.extend(paths(v, prefix + (i,)))
    return out


def mutate_message(rng: random.Random, template: dict) -> str:
    """One hostile variant of ``template``: a value replaced, a field dropped or added, the
    text cut, bytes flipped, or plain garbage."""
    choice = rng.randrange(10)
    if choice < 5:
        path = rng.choice(paths(template))
        return splice(template, path, rng.choice(HOSTILE_VALUES))
    if choice == 5:
        obj = json.loads(json.dumps(template))
        key = rng.choice(list(obj))
        del obj[key]
        return json.dumps(obj)
    if choice == 6:
        obj = dict(template)
        obj[rng.choice(["x", "type2", "\u00e9", "sdp", "redirect"])] = rng.choice(
            [None, 1, "s", [1], {"a": 1}])
        return splice(obj, ("__pad",), rng.choice(HOSTILE_VALUES)) if rng.random() < 0.5 \
            else json.dumps(obj)
    text = json.dumps(template)
    if choice == 7:
        return text[:rng.randrange(len(text))]
    if choice == 8:
        b = bytearray(text.encode())
        for _ in range(rng.randrange(1, 6)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        return b.decode("utf-8", "replace")
    return rng.choice(["", " ", "null", "[]", "42", '"connect"', "{", "}" * 10, DEEP,
                       "\x00" * 10, "{\"type\": null}"])
