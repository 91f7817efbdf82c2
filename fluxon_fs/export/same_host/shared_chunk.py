"""A write-chunk buffer in a sealed memfd, so the same-host channel can pass it to the agent as an fd.

A :class:`SharedChunk` is an ``mmap`` of its own memfd: the writer fills it like a ``bytearray``
(slice assignment, no system call), and over the RPC path it is sent like any buffer. The memfd is
sealed against shrinking and growing, which is what the agent checks before it reads from it: a
file that cannot shrink cannot end under a reader (no ``SIGBUS``, no short copy).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import weakref
from typing import Any

SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
"""The seals a chunk's memfd carries (size fixed for good)."""

SUPPORTED = hasattr(os, "memfd_create") and hasattr(os, "splice")
"""Whether this platform has memfds and ``splice`` (Linux)."""


class SharedChunk(mmap.mmap):
    """A fixed-size writable buffer backed by a sealed memfd (:attr:`memfd`, closed with the chunk)."""

    memfd: int
    payload_bytes: int
    """Length of the payload view last handed out by :meth:`payload` (0: none)."""

    def __new__(cls, size: int) -> SharedChunk:
        """A zero-filled chunk of ``size`` bytes."""
        fd = os.memfd_create("fluxon-write-chunk", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
            chunk = super().__new__(cls, fd, size)
        except BaseException:
            os.close(fd)
            raise
        chunk.memfd = fd
        chunk.payload_bytes = 0
        weakref.finalize(chunk, os.close, fd)
        return chunk

    def payload(self, length: int) -> memoryview:
        """A view of the first ``length`` bytes, recognised by :func:`shared_payload` as this chunk's payload."""
        self.payload_bytes = length
        return memoryview(self)[:length]


def shared_payload(data: Any) -> SharedChunk | None:
    """The chunk whose :meth:`SharedChunk.payload` view ``data`` is, or None for any other buffer."""
    if not isinstance(data, memoryview):
        return None
    chunk = data.obj
    if isinstance(chunk, SharedChunk) and chunk.payload_bytes == data.nbytes and data.nbytes > 0:
        return chunk
    return None
