"""Where a pool keeps its files and how one value file is laid out.

Pool directory::

    pool.ctl      control block: change counter, generation, capacity, usage (see control.py)
    owner.lock    flock held by the live owner for its whole life
    touch.log     readers append recency notes (32-byte key digests) for the owner's LRU
    values/<sha256(key) hex>   one committed, immutable value per file
    staging/<token>            values written but not yet adopted by the owner

Value file: ``magic(4) key_len(u32) value_len(u64)``, the UTF-8 key, zero padding to a 64-byte
boundary, then the value bytes. The key inside lets a reader verify the file belongs to its key.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct

import attrs

from fluxon_core.errors import ApiError, InvalidArgumentError

VALUE_MAGIC = b"FXV1"
VALUE_HEADER = struct.Struct("<4sIQ")
VALUE_ALIGN = 64
PAGE_BYTES = 4096
MAX_KEY_BYTES = 4096
DIGEST_BYTES = 32

_TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")


class CorruptValueError(ApiError):
    """A value file in the pool does not have the expected layout."""

    code = "corrupt_pool_value"


def encode_key(key: str) -> bytes:
    """The key as stored in value files; rejects non-strings and keys over ``MAX_KEY_BYTES``."""
    if not isinstance(key, str):
        raise InvalidArgumentError(f"pool key must be a str, got {type(key).__name__}")
    encoded = key.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidArgumentError(f"pool key must be at most {MAX_KEY_BYTES} bytes UTF-8, got {len(encoded)}")
    return encoded


def key_digest(key_bytes: bytes) -> bytes:
    """The 32-byte digest naming a key's value file and its touch notes."""
    return hashlib.sha256(key_bytes).digest()


def value_offset(key_len: int) -> int:
    """Offset of the value bytes in a file whose key is ``key_len`` bytes."""
    raw = VALUE_HEADER.size + key_len
    return (raw + VALUE_ALIGN - 1) // VALUE_ALIGN * VALUE_ALIGN


def value_prefix(key_bytes: bytes, value_len: int) -> bytes:
    """Header, key and padding: everything a value file holds before the value."""
    header = VALUE_HEADER.pack(VALUE_MAGIC, len(key_bytes), value_len)
    padding = b"\0" * (value_offset(len(key_bytes)) - VALUE_HEADER.size - len(key_bytes))
    return header + key_bytes + padding


def charged_bytes(file_size: int) -> int:
    """What a value file costs against the budget: its tmpfs footprint in whole pages."""
    return (file_size + PAGE_BYTES - 1) // PAGE_BYTES * PAGE_BYTES


def read_header(prefix: bytes | memoryview, file_size: int, where: str) -> tuple[int, int]:
    """``(key_len, value_len)`` from the start of a value file of ``file_size`` bytes."""
    if len(prefix) < VALUE_HEADER.size:
        raise CorruptValueError(f"value file {where} is {len(prefix)} bytes, shorter than its header")
    magic, key_len, value_len = VALUE_HEADER.unpack_from(prefix, 0)
    if magic != VALUE_MAGIC:
        raise CorruptValueError(f"value file {where} has magic {bytes(magic)!r}, expected {VALUE_MAGIC!r}")
    if value_offset(key_len) + value_len != file_size:
        raise CorruptValueError(
            f"value file {where} is {file_size} bytes but its header says {value_offset(key_len)} + {value_len}"
        )
    return key_len, value_len


def holds_key(prefix: bytes | memoryview, key_bytes: bytes) -> bool:
    """True when the value file starting with ``prefix`` belongs to ``key_bytes``."""
    stored = prefix[VALUE_HEADER.size : VALUE_HEADER.size + len(key_bytes)]
    return VALUE_HEADER.unpack_from(prefix, 0)[1] == len(key_bytes) and stored == key_bytes


def parse_value(buf: memoryview, key_bytes: bytes, where: str) -> memoryview | None:
    """The value bytes of a whole value file ``buf``; None when the file belongs to another key."""
    key_len, value_len = read_header(buf, len(buf), where)
    if not holds_key(buf, key_bytes):
        return None
    start = value_offset(key_len)
    return buf[start : start + value_len]


def new_token() -> str:
    """A fresh random name for a staged value."""
    return os.urandom(16).hex()


def check_token(token: str) -> str:
    """``token`` if it is a staging name this module could have produced, else InvalidArgumentError."""
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise InvalidArgumentError(f"staged value token must be 32 lowercase hex digits, got {token!r}")
    return token


@attrs.frozen
class PoolLayout:
    """The paths of one pool directory."""

    root: str

    @property
    def control_path(self) -> str:
        """The control block file."""
        return os.path.join(self.root, "pool.ctl")

    @property
    def lock_path(self) -> str:
        """The file the live owner holds an exclusive flock on."""
        return os.path.join(self.root, "owner.lock")

    @property
    def touch_path(self) -> str:
        """The readers' recency log."""
        return os.path.join(self.root, "touch.log")

    @property
    def values_dir(self) -> str:
        """Committed values, one file per key."""
        return os.path.join(self.root, "values")

    @property
    def staging_dir(self) -> str:
        """Values written but not yet adopted."""
        return os.path.join(self.root, "staging")

    def value_path(self, digest: bytes) -> str:
        """The file of the key whose digest is ``digest``."""
        return os.path.join(self.root, "values", digest.hex())
