"""Self-checking values for pool tests: a torn or mixed value fails :func:`value_seed`."""

from __future__ import annotations

import hashlib
import random

_HEAD = 40


def make_value(seed: int, size: int) -> bytes:
    """``size`` bytes (at least 40) naming ``seed`` and carrying a digest of the rest."""
    if size < _HEAD:
        raise ValueError(f"self-checking values need at least {_HEAD} bytes, got {size}")
    block = random.Random(seed).randbytes(4096)
    body = (block * ((size - _HEAD) // len(block) + 1))[: size - _HEAD]
    return seed.to_bytes(8, "little") + hashlib.sha256(body).digest() + body


def value_seed(view: bytes | memoryview) -> int:
    """The seed a value was made from; AssertionError when its bytes are not one whole value."""
    data = memoryview(view)
    if len(data) < _HEAD:
        raise AssertionError(f"value of {len(data)} bytes is shorter than its self-check header")
    if hashlib.sha256(data[_HEAD:]).digest() != bytes(data[8:_HEAD]):
        raise AssertionError("torn value: body does not match its digest")
    return int.from_bytes(data[:8], "little")
