"""Where a pool keeps its files and how one value file is laid out.

Pool directory::

    pool.ctl      control block: change counter, generation, capacity, usage (see control.py)
    owner.lock    flock held by the live owner for its whole life
    touch.log     readers append recency notes (32-byte key digests) for the owner's LRU
    values/<sha256(key) hex>   one committed, immutable value per file
    staging/<token>            values written but not yet adopted by the owner

Value file: the value bytes from offset 0 (so a mapping of a large value is page-aligned), then
the UTF-8 key, then a 32-byte trailer
``key_len(u32) flags(u32) value_len(u64) seal_ns(i64) crc32(u32) magic(4)``. The key inside lets a
reader verify the file belongs to its key; the trailer lets it check the file is whole and
unchanged:

* the file size must be exactly value + key + trailer (a truncated or extended file is damaged);
* ``seal_ns`` is the file's modification time, set by the writer after the last byte: any later
  ``write``, ``truncate`` or rewrite moves the mtime, so the file no longer matches its seal;
* values of at most :data:`CHECKSUMMED_VALUE_BYTES` carry the CRC-32 of their bytes
  (``flags & FLAG_CRC32``), verified whenever they are loaded. Larger values are mapped, not
  copied; checking every byte of them would cost a second pass over the data on every cold read.

Committed value files are read-only (mode ``0400``), so no process but root can write into one.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
from typing import NamedTuple

import attrs

from fluxon_core.errors import ApiError, InvalidArgumentError
from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.shm_cache")

VALUE_MAGIC = b"FXV3"
VALUE_TRAILER = struct.Struct("<IIQqI4s")
FLAG_CRC32 = 1
CHECKSUMMED_VALUE_BYTES = 64 * 1024
"""Values up to this size carry a CRC-32 of their bytes (the default ``copy_below``: they are copied)."""
VALUE_FILE_MODE = 0o400
"""Mode of a complete value file: nobody (but root) may write into a value readers map."""
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


class ValueTrailer(NamedTuple):  # a tuple: parsed on every cold get, where attrs init shows
    """What a value file's trailer says about the value before it."""

    value_len: int
    seal_ns: int
    crc32: int | None
    """The value's CRC-32, or None for a value too large to carry one."""


def value_suffix(key_bytes: bytes, value_len: int, seal_ns: int, crc32: int | None) -> bytes:
    """What a value file holds after the value: the key and the trailer."""
    flags = 0 if crc32 is None else FLAG_CRC32
    return key_bytes + VALUE_TRAILER.pack(len(key_bytes), flags, value_len, seal_ns, crc32 or 0, VALUE_MAGIC)


def suffix_size(key_len: int) -> int:
    """Bytes after the value in a file whose key is ``key_len`` bytes."""
    return key_len + VALUE_TRAILER.size


def charged_bytes(file_size: int) -> int:
    """What a value file costs against the budget: its tmpfs footprint in whole pages."""
    return (file_size + PAGE_BYTES - 1) // PAGE_BYTES * PAGE_BYTES


def parse_suffix(suffix: bytes, file_size: int, key_bytes: bytes, where: str) -> ValueTrailer | None:
    """The trailer at the end of ``suffix`` (which holds at least the key and trailer); None for another key.

    CorruptValueError when the trailer is not one this module wrote or disagrees with ``file_size``.
    """
    end = len(suffix)
    if end < VALUE_TRAILER.size:
        raise CorruptValueError(f"value file {where} is {end} bytes, shorter than its trailer")
    trailer_at = end - VALUE_TRAILER.size
    key_len, flags, value_len, seal_ns, crc32, magic = VALUE_TRAILER.unpack_from(suffix, trailer_at)
    if magic != VALUE_MAGIC:
        raise CorruptValueError(f"value file {where} has magic {bytes(magic)!r}, expected {VALUE_MAGIC!r}")
    if value_len + key_len + VALUE_TRAILER.size != file_size:
        raise CorruptValueError(f"value file {where} is {file_size} bytes but its trailer says {value_len} + {key_len}")
    if key_len != len(key_bytes) or suffix[trailer_at - key_len : trailer_at] != key_bytes:
        return None
    return ValueTrailer(value_len, seal_ns, crc32 if flags & FLAG_CRC32 else None)


def new_token() -> str:
    """A fresh random name for a staged value."""
    return os.urandom(16).hex()


def check_token(token: str) -> str:
    """``token`` if it is a staging name this module could have produced, else InvalidArgumentError."""
    if not isinstance(token, str) or not _TOKEN_RE.match(token):
        raise InvalidArgumentError(f"staged value token must be 32 lowercase hex digits, got {token!r}")
    return token


def make_owner_only(target: str | int, what: str) -> None:
    """Clear the group and other bits of a pool file or directory (path or open fd) that has any.

    The pool is private to the owner's user: readers attach as that same user (see the README).
    """
    mode = stat.S_IMODE(os.stat(target).st_mode)
    if mode & 0o077:
        os.chmod(target, mode & 0o700)
        log.info("pool %s was mode %04o; made it owner-only (%04o)", what, mode, mode & 0o700)


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
