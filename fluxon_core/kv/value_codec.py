"""A flat value dict ``{str: int | float | bool | str | bytes}`` as one blob, and back.

Layout (little endian)::

    b"FXV1" | field_count u16 | reserved u16 | header_len u32
    per field: type u8 | name_len u16 | name (utf-8) | int i64 / float f64 / bool u8 / str-or-bytes length u64
    data section: the str and bytes payloads, in field order

Encoding returns the header plus the payloads as separate parts, so large ``bytes`` fields are
never copied on the way into the pool. Decoding hands ``bytes`` fields back as ``memoryview``
slices of the blob: when the blob is a view of the shared pool, reading them is zero-copy.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from fluxon_core.errors import InvalidArgumentError

Buffer = bytes | bytearray | memoryview
Value = int | float | bool | str | bytes | memoryview

MAGIC = b"FXV1"
_PREFIX = struct.Struct("<4sHHI")
_FIELD_HEAD = struct.Struct("<BH")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_U8 = struct.Struct("<B")
_U64 = struct.Struct("<Q")

_INT, _FLOAT, _BOOL, _STR, _BYTES = 1, 2, 3, 4, 5
_MAX_FIELDS = 0xFFFF
_MAX_NAME = 0xFFFF


def encode_value(value: Mapping[str, Any]) -> list[Buffer]:
    """The parts whose concatenation is the blob of ``value``; raises InvalidArgumentError on bad input."""
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"a KV value must be a dict of str to int/float/bool/str/bytes, got {type(value).__name__}"
        )
    if len(value) > _MAX_FIELDS:
        raise InvalidArgumentError(f"a KV value holds at most {_MAX_FIELDS} fields, got {len(value)}")
    header = bytearray(_PREFIX.size)
    payloads: list[Buffer] = []
    for name, item in value.items():
        if not isinstance(name, str):
            raise InvalidArgumentError(f"KV value field names must be str, got {type(name).__name__} {name!r}")
        name_bytes = name.encode("utf-8")
        if len(name_bytes) > _MAX_NAME:
            raise InvalidArgumentError(f"KV value field name {name[:40]!r}… is longer than {_MAX_NAME} bytes")
        if isinstance(item, bool):
            header += _FIELD_HEAD.pack(_BOOL, len(name_bytes)) + name_bytes + _U8.pack(int(item))
        elif isinstance(item, int):
            try:
                packed = _I64.pack(item)
            except struct.error:
                raise InvalidArgumentError(f"KV value field {name!r}: int {item} does not fit in 64 bits") from None
            header += _FIELD_HEAD.pack(_INT, len(name_bytes)) + name_bytes + packed
        elif isinstance(item, float):
            header += _FIELD_HEAD.pack(_FLOAT, len(name_bytes)) + name_bytes + _F64.pack(item)
        elif isinstance(item, str):
            data = item.encode("utf-8")
            header += _FIELD_HEAD.pack(_STR, len(name_bytes)) + name_bytes + _U64.pack(len(data))
            payloads.append(data)
        elif isinstance(item, bytes | bytearray | memoryview):
            data_view = memoryview(item)
            if not data_view.c_contiguous:
                raise InvalidArgumentError(f"KV value field {name!r}: the buffer must be contiguous")
            data_view = data_view.cast("B") if data_view.format != "B" or data_view.ndim != 1 else data_view
            header += _FIELD_HEAD.pack(_BYTES, len(name_bytes)) + name_bytes + _U64.pack(data_view.nbytes)
            payloads.append(data_view)
        else:
            raise InvalidArgumentError(
                f"KV value field {name!r} has type {type(item).__name__}; allowed: int, float, bool, str, bytes"
            )
    _PREFIX.pack_into(header, 0, MAGIC, len(value), 0, len(header))
    return [bytes(header), *payloads]


def encoded_size(parts: list[Buffer]) -> int:
    """Total bytes of the blob made of ``parts``."""
    return sum(memoryview(part).nbytes for part in parts)


def decode_value(blob: Buffer) -> dict[str, Value]:
    """The dict stored in ``blob``; ``bytes`` fields are zero-copy ``memoryview`` slices of ``blob``."""
    view = memoryview(blob)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    try:
        magic, count, _reserved, header_len = _PREFIX.unpack_from(view, 0)
        if magic != MAGIC or header_len > view.nbytes:
            raise ValueError("bad magic or header length")
        out: dict[str, Value] = {}
        offset = _PREFIX.size
        data_offset = header_len
        for _ in range(count):
            kind, name_len = _FIELD_HEAD.unpack_from(view, offset)
            offset += _FIELD_HEAD.size
            name = bytes(view[offset : offset + name_len]).decode("utf-8")
            offset += name_len
            if kind == _INT:
                out[name] = _I64.unpack_from(view, offset)[0]
                offset += _I64.size
            elif kind == _FLOAT:
                out[name] = _F64.unpack_from(view, offset)[0]
                offset += _F64.size
            elif kind == _BOOL:
                out[name] = bool(_U8.unpack_from(view, offset)[0])
                offset += _U8.size
            elif kind in (_STR, _BYTES):
                length = _U64.unpack_from(view, offset)[0]
                offset += _U64.size
                end = data_offset + length
                if end > view.nbytes:
                    raise ValueError("payload past the end of the blob")
                payload = view[data_offset:end]
                out[name] = str(payload, "utf-8") if kind == _STR else payload.toreadonly()
                data_offset = end
            else:
                raise ValueError(f"unknown field type {kind}")
            if offset > header_len:
                raise ValueError("field table past the header")
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgumentError(f"stored bytes are not a Fluxon KV value ({exc})") from None
    return out
