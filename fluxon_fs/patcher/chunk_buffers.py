"""Write-chunk buffers kept across files, so a new file's chunks need no fresh pages.

Filling a freshly allocated 8 MiB buffer faults in 2,048 pages; on a busy 2-CPU host the faults of
a 64 MiB write cost about as much CPU as the local write of the same bytes. A stream hands its
chunk buffers back here when it ends and takes them from here when it starts a run; at most
:data:`KEPT_BYTES` stay allocated in the process between writes. Buffers are ``bytearray`` s, or
memfd-backed shared chunks for sessions whose agent takes payloads over the same-host channel.
"""

from __future__ import annotations

import os
import threading

from fluxon_fs.export.same_host.shared_chunk import SharedChunk

ChunkBuffer = bytearray | SharedChunk

KEPT_BYTES = 32 * 1024 * 1024

_lock = threading.Lock()
_kept: list[ChunkBuffer] = []


def take(size: int, *, shared: bool = False) -> ChunkBuffer | None:
    """A kept buffer of exactly ``size`` bytes (its old content still in it), or None.

    ``shared``: a :class:`~fluxon_fs.export.same_host.shared_chunk.SharedChunk` (else a ``bytearray``).
    """
    with _lock:
        for index in range(len(_kept) - 1, -1, -1):
            kept = _kept[index]
            if len(kept) == size and isinstance(kept, SharedChunk) == shared:
                return _kept.pop(index)
    return None


def give(buffers: list[ChunkBuffer]) -> None:
    """Keep ``buffers`` (no longer used by their stream) while the total stays within :data:`KEPT_BYTES`."""
    with _lock:
        kept = sum(len(b) for b in _kept)
        for buffer in buffers:
            if kept + len(buffer) > KEPT_BYTES:
                break
            _kept.append(buffer)
            kept += len(buffer)


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    _kept.clear()


os.register_at_fork(after_in_child=_forget_in_child)
