"""One live owner per resource, enforced by an exclusive ``flock`` held for the owner's whole life.

The lock is tied to the open file description: it goes away when the owner closes the fd or its
process dies, however it dies, so a crashed owner never blocks its successor and there is no stale
lock file to clean up.
"""

from __future__ import annotations

import fcntl
import os

from fluxon_core.errors import StoreInitFailedError


def hold_single_owner_lock(lock_path: str | os.PathLike[str], taken: str) -> int:
    """Take the exclusive lock on ``lock_path`` (created ``0600`` if missing) and return its fd.

    The caller keeps the fd open while it owns the resource and closes it to let go. When another
    live process holds the lock, :class:`StoreInitFailedError` with the message ``taken`` is raised.
    """
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInitFailedError(taken) from None
    return fd
