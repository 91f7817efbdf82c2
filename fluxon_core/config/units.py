"""Byte sizes written as ints or strings with units (1024-based): ``"1GiB"``, ``"512MB"``, ``"8k"``."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import NewType

ByteSize = NewType("ByteSize", int)

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1024**4,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_byte_size(value: int | str) -> int:
    """Bytes for ``value``; raises ``ValueError`` describing the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("must be a byte size (int or string like '512MiB'), got bool")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must be a non-negative byte size, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(2).lower() in _UNITS:
            # Exact decimal arithmetic: "1.5GiB" is 1610612736 bytes; "0.3k" is not a whole number of bytes.
            amount = Fraction(match.group(1)) * _UNITS[match.group(2).lower()]
            if amount.denominator != 1:
                raise ValueError(f"must be a whole number of bytes, got {value!r} = {float(amount)} bytes")
            return int(amount)
        raise ValueError(f"must be a byte size like 1048576, '512MiB' or '1GiB', got {value!r}")
    raise ValueError(f"must be a byte size (int or string like '512MiB'), got {type(value).__name__}")
