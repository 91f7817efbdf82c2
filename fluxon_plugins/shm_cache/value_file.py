"""Writing one value file invisibly and loading one as a read-only view.

A value is written into an anonymous ``O_TMPFILE`` inode under an exclusive flock, so a writer
that dies mid-write leaves nothing with a name: the kernel frees the inode with its last fd.
Only a complete value is ever linked into ``staging/`` and then renamed into ``values/``; the
rename replaces any previous value atomically, and readers that still map the old inode keep
reading it intact (tmpfs frees it when the last mapping goes).

A complete value is sealed (its mtime set to the trailer's ``seal_ns``) and made read-only. A
loader checks size, seal and, for small values, the CRC-32 before it hands out a single byte, and
reads the trailer with ``pread`` before mapping anything, so a truncated, extended or overwritten
file is a miss (logged), never a ``SIGBUS`` or wrong bytes. A mapping is live, though: a view handed
out earlier reflects what later happens to the file, so a cached mapping is re-checked with one
``stat`` (:func:`still_intact`) before it is handed out again.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import time
import zlib
from collections.abc import Sequence

import attrs

from fluxon_core.errors import InvalidArgumentError, StorageFullError, StoreInitFailedError
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import Buffer
from fluxon_plugins.shm_cache.layout import (
    CHECKSUMMED_VALUE_BYTES,
    VALUE_FILE_MODE,
    CorruptValueError,
    ValueTrailer,
    new_token,
    parse_suffix,
    suffix_size,
    value_suffix,
)

log = get_logger("fluxon.shm_cache")

_IOV_MAX = 1024


def buffer_size(part: Buffer) -> int:
    """Bytes in one part (a memoryview's ``len`` counts items, not bytes)."""
    return part.nbytes if isinstance(part, memoryview) else len(part)


def write_all(fd: int, parts: Sequence[Buffer]) -> int:
    """Write every part in order with as few syscalls as the kernel allows; returns bytes written."""
    views = [memoryview(p).cast("B") if isinstance(p, memoryview) else memoryview(p) for p in parts]
    total = 0
    index = 0
    while index < len(views):
        batch = views[index : index + _IOV_MAX]
        written = os.writev(fd, batch)
        total += written
        # skip the buffers the kernel took whole, trim the one it took in part
        for view in batch:
            if written >= len(view):
                written -= len(view)
                index += 1
                continue
            views[index] = view[written:]
            break
    return total


def check_tmpfile_support(directory: str) -> None:
    """StoreInitFailedError unless ``directory`` supports anonymous O_TMPFILE inodes."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise StoreInitFailedError(
                f"the pool directory {directory} is on a filesystem without O_TMPFILE; "
                "put shared_memory_path on a tmpfs such as /dev/shm"
            ) from None
        raise
    os.close(fd)


class ValueWriter:
    """One value being written: invisible until :meth:`link_staged`, locked until :meth:`close`.

    The key and trailer follow the value; they go out with the write that completes the value.
    """

    def __init__(self, staging_dir: str, key_bytes: bytes, value_size: int, *, lock: bool = True) -> None:
        if value_size < 0:
            raise InvalidArgumentError(f"value size must be >= 0, got {value_size}")
        self.key_bytes = key_bytes
        self.value_size = value_size
        self.file_size = value_size + suffix_size(len(key_bytes))
        self._staging_dir = staging_dir
        self._fd = os.open(staging_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        if lock:
            try:
                # tells the owner's sweep this file's writer is alive, from before the file has a name
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(self._fd)
                raise
        self._value_written = 0
        self._suffix_written = False
        self._crc32: int | None = 0 if value_size <= CHECKSUMMED_VALUE_BYTES else None

    @property
    def fd(self) -> int:
        """The open file (for fstat)."""
        return self._fd

    def write(self, parts: Sequence[Buffer]) -> None:
        """Append ``parts`` to the value; more bytes than declared is InvalidArgumentError."""
        incoming = sum(buffer_size(p) for p in parts)
        total = self._value_written + incoming
        if total > self.value_size:
            raise InvalidArgumentError(f"value declared as {self.value_size} bytes but {total} were written")
        last = total == self.value_size and not self._suffix_written
        if self._crc32 is not None:
            for part in parts:
                self._crc32 = zlib.crc32(part, self._crc32)
        try:
            if last:
                seal_ns = time.time_ns()
                write_all(self._fd, [*parts, value_suffix(self.key_bytes, self.value_size, seal_ns, self._crc32)])
                # The seal: any later write or truncate moves the mtime away from the trailer's seal_ns,
                # and a read-only file cannot be opened for writing at all (but by root).
                os.utime(self._fd, ns=(seal_ns, seal_ns))
                os.fchmod(self._fd, VALUE_FILE_MODE)
            else:
                write_all(self._fd, parts)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StorageFullError(
                    f"the filesystem holding {self._staging_dir} is full; the pool's capacity is larger than the "
                    "space other users of that tmpfs left"
                ) from None
            raise
        self._suffix_written = last or self._suffix_written
        self._value_written = total

    def check_complete(self) -> None:
        """InvalidArgumentError unless exactly the declared number of bytes was written."""
        if self._value_written != self.value_size:
            raise InvalidArgumentError(
                f"value declared as {self.value_size} bytes but only {self._value_written} were written"
            )
        if not self._suffix_written:  # an empty value never saw a write
            self.write([])

    def link_staged(self, staging_dir_fd: int) -> str:
        """Give the complete value a name in ``staging/``; returns that name (the token)."""
        self.check_complete()
        token = new_token()
        os.link(f"/proc/self/fd/{self._fd}", token, dst_dir_fd=staging_dir_fd, follow_symlinks=True)
        return token

    def close(self) -> None:
        """Close the file (releasing the lock); an unlinked value vanishes. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@attrs.define(slots=True)  # not frozen: built on every cold get, and frozen attrs init is slower
class LoadedValue:
    """A value read from the pool, with what identifies the file it came from."""

    ino: int
    file_size: int
    seal_ns: int
    view: memoryview
    mapped: bool
    """True for a view of a shared mapping (live: see :func:`still_intact`), False for a private copy."""


def _damaged(path: str, problem: str) -> None:
    log.warning("pool value file %s is damaged (%s); treated as absent", path, problem)


def _read_tail(fd: int, key_bytes: bytes, size: int) -> bytes:
    """The key and trailer at the end of a ``size``-byte file (fewer bytes if it is shorter now)."""
    tail = min(size, suffix_size(len(key_bytes)))
    return os.pread(fd, tail, size - tail)


def _checked_trailer(path: str, tail: bytes, key_bytes: bytes, stat: os.stat_result) -> ValueTrailer | None:
    """The trailer ending ``tail`` when the file is whole and sealed; None for another key's or a damaged file."""
    try:
        trailer = parse_suffix(tail, stat.st_size, key_bytes, path)
    except CorruptValueError as exc:
        _damaged(path, exc.message)
        return None
    if trailer is not None and stat.st_mtime_ns != trailer.seal_ns:
        _damaged(path, "changed after it was written: its mtime is not its seal")
        return None
    return trailer


def _crc_matches(path: str, value: memoryview, trailer: ValueTrailer) -> bool:
    if trailer.crc32 is None or zlib.crc32(value) == trailer.crc32:
        return True
    _damaged(path, "its bytes do not match their CRC-32")
    return False


def load_value(path: str, key_bytes: bytes, copy_below: int) -> LoadedValue | None:
    """Open ``path`` and return its value as a read-only view; None when absent, another key's or damaged.

    Files of at most ``copy_below`` bytes are copied (one read); larger ones are mapped shared
    and read-only, so the view is zero-copy and stays valid after the file is replaced or removed.
    The trailer is read and checked before anything is mapped.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        mapped = stat.st_size > copy_below
        # A small file is read whole in one call; a short read leaves no trailer at its end.
        data = _read_tail(fd, key_bytes, stat.st_size) if mapped else os.pread(fd, stat.st_size, 0)
        trailer = _checked_trailer(path, data, key_bytes, stat)
        if trailer is None:
            return None
        source = mmap.mmap(fd, stat.st_size, access=mmap.ACCESS_READ) if mapped else data
        view = memoryview(source)[: trailer.value_len]
    finally:
        os.close(fd)
    if not _crc_matches(path, view, trailer):
        return None
    return LoadedValue(stat.st_ino, stat.st_size, trailer.seal_ns, view, mapped)


def still_intact(path: str, ino: int, file_size: int, seal_ns: int) -> bool:
    """True while ``path`` is still the sealed file (inode, size, seal) a view was loaded from."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return False
    if stat.st_ino != ino:
        return False
    if stat.st_size != file_size or stat.st_mtime_ns != seal_ns:
        _damaged(path, "changed since it was mapped")
        return False
    return True


def writable_bytes(out: bytearray | memoryview) -> memoryview:
    """``out`` as a writable byte view; InvalidArgumentError for a read-only buffer."""
    view = memoryview(out)
    if view.readonly:
        raise InvalidArgumentError("read_into needs a writable buffer (bytearray, writable memoryview)")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def copy_range(value: memoryview, out: memoryview, offset: int) -> int:
    """Copy ``value[offset:]`` into the start of ``out`` as far as it fits; returns bytes copied."""
    if offset < 0:
        raise InvalidArgumentError(f"read offset must be >= 0, got {offset}")
    count = max(0, min(len(out), len(value) - offset))
    out[:count] = value[offset : offset + count]
    return count


def read_value_into(path: str, key_bytes: bytes, out: memoryview, offset: int) -> int | None:
    """Read ``value[offset:]`` of the file at ``path`` into ``out`` without mapping it; None when absent or damaged.

    For a consumer that copies anyway this beats map + fault + copy on a value not yet mapped here.
    A value carrying a CRC-32 is read whole and checked before any byte reaches ``out``.
    """
    if offset < 0:
        raise InvalidArgumentError(f"read offset must be >= 0, got {offset}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        stat = os.fstat(fd)
        trailer = _checked_trailer(path, _read_tail(fd, key_bytes, stat.st_size), key_bytes, stat)
        if trailer is None:
            return None
        count = max(0, min(len(out), trailer.value_len - offset))
        if trailer.crc32 is not None:
            value = memoryview(os.pread(fd, trailer.value_len, 0))
            if len(value) != trailer.value_len:
                _damaged(path, f"it ended at {len(value)} bytes, before its trailer")
                return None
            if not _crc_matches(path, value, trailer):
                return None
            out[:count] = value[offset : offset + count]
            return count
        done = 0
        while done < count:
            got = os.preadv(fd, [out[done:count]], offset + done)
            if got <= 0:
                _damaged(path, f"it ended at {offset + done} bytes, before its trailer")
                return None
            done += got
        return count
    finally:
        os.close(fd)
