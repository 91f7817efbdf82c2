"""Where a pool keeps its files and how one value file is laid out.

Pool directory::

    pool.ctl      control block: change counter, generation, capacity, usage (see control.py)
    owner.lock    flock held by the live owner for its whole life
    touch.log     readers append recency notes (32-byte key digests) for the owner's LRU
    values/<sha256(key) hex>   one committed, immutable value per file
    staging/<token>            values written but not yet adopted by the owner

Value file: the value bytes from offset 0 (so a mapping of a large value is page-aligned), then
the UTF-8 key, then a 16-byte trailer ``key_len(u32) value_len(u64) magic(4)``. The key inside
lets a reader verify the file belongs to its key; the trailer lets it check the file is whole.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
import struct

import attrs

from fluxon_core.errors import ApiError, InvalidArgumentError

VALUE_MAGIC = b"FXV2"
VALUE_TRAILER = struct.Struct("<IQ4s")
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


def value_suffix(key_bytes: bytes, value_len: int) -> bytes:
    """What a value file holds after the value: the key and the trailer."""
    return key_bytes + VALUE_TRAILER.pack(len(key_bytes), value_len, VALUE_MAGIC)


def suffix_size(key_len: int) -> int:
    """Bytes after the value in a file whose key is ``key_len`` bytes."""
    return key_len + VALUE_TRAILER.size


def charged_bytes(file_size: int) -> int:
    """What a value file costs against the budget: its tmpfs footprint in whole pages."""
    return (file_size + PAGE_BYTES - 1) // PAGE_BYTES * PAGE_BYTES


def parse_suffix(suffix: bytes | mmap.mmap, file_size: int, key_bytes: bytes, where: str) -> int | None:
    """The value length from a file's end (``suffix`` holds at least its key and trailer); None for another key.

    CorruptValueError when the trailer is not one this module wrote or disagrees with the size.
    """
    end = len(suffix)
    if end < VALUE_TRAILER.size:
        raise CorruptValueError(f"value file {where} is {end} bytes, shorter than its trailer")
    trailer_at = end - VALUE_TRAILER.size
    key_len, value_len, magic = VALUE_TRAILER.unpack_from(suffix, trailer_at)
    if magic != VALUE_MAGIC:
        raise CorruptValueError(f"value file {where} has magic {bytes(magic)!r}, expected {VALUE_MAGIC!r}")
    if value_len + key_len + VALUE_TRAILER.size != file_size:
        raise CorruptValueError(f"value file {where} is {file_size} bytes but its trailer says {value_len} + {key_len}")
    if key_len != len(key_bytes) or suffix[trailer_at - key_len : trailer_at] != key_bytes:
        return None
    return int(value_len)


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
