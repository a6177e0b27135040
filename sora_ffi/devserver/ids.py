"""Sora-style identifiers.

Sora's ``connection_id`` / ``session_id`` are 26 characters of Crockford Base32: the 16 bytes
of a random UUIDv4 encoded 5 bits at a time, most significant first, the last character
padded with two zero bits (e.g. ``WCJC78EWK935N7P7Z8FYAKFW9M``). The messaging header
(``sender_connection_id``) relies on the id being exactly 26 ASCII bytes.
"""
from __future__ import annotations

import uuid

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_LENGTH = 26


def encode(data: bytes) -> str:
    """Crockford Base32 of ``data`` (no padding characters, final bits zero-filled)."""
    value = int.from_bytes(data, "big")
    nbits = len(data) * 8
    nchars = -(-nbits // 5)
    value <<= nchars * 5 - nbits
    out = []
    for _ in range(nchars):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def decode(text: str) -> bytes:
    """Inverse of :func:`encode` for 26-character ids (accepts lower case, I/L→1, O→0)."""
    norm = text.upper().replace("O", "0").replace("I", "1").replace("L", "1")
    value = 0
    for ch in norm:
        idx = ALPHABET.find(ch)
        if idx < 0:
            raise ValueError(f"invalid Crockford Base32 character {ch!r}")
        value = (value << 5) | idx
    nbits = len(norm) * 5
    nbytes = nbits // 8
    value >>= nbits - nbytes * 8
    return value.to_bytes(nbytes, "big")


def new_id() -> str:
    """A new 26-character id from a random UUIDv4."""
    return encode(uuid.uuid4().bytes)


def is_valid(text: object) -> bool:
    return (
        isinstance(text, str)
        and len(text) == ID_LENGTH
        and all(c in ALPHABET for c in text)
        and ALPHABET.index(text[-1]) & 3 == 0
    )
