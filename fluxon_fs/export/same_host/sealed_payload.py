"""A payload fd received from a client, checked, and copied into a file inside the kernel.

The fd comes from another process, so the agent trusts nothing about it: it must be a regular
file that is a memfd sealed against shrinking (only memfds and hugetlbfs files answer
``F_GET_SEALS``), at least as long as the payload. That excludes FIFOs and sockets (a read could
block an agent thread forever), directories, files on a filesystem the client controls (FUSE),
and files that could be truncated under the copy. The agent never maps it; it splices the bytes
through a pipe into the target file (the pages go by reference into the pipe, and are copied
once, into the target's page cache).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading

import attrs

from fluxon_fs.export.same_host.protocol import MAX_PAYLOAD_BYTES

PIPE_BYTES = 1024 * 1024
"""Pipe size asked for (``F_SETPIPE_SZ``; the default pipe-max-size); each splice moves at most this."""


@attrs.frozen
class SealedPayload:
    """``length`` bytes at offset 0 of ``fd``, checked by :meth:`check` (the caller owns ``fd``)."""

    fd: int
    length: int

    @classmethod
    def check(cls, fd: int, length: int) -> SealedPayload:
        """Validate a received fd; ``OSError(EINVAL)`` saying why when it is not a usable payload."""
        if not 0 < length <= MAX_PAYLOAD_BYTES:
            raise OSError(errno.EINVAL, f"payload length must be 1..{MAX_PAYLOAD_BYTES}, got {length}")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "the payload fd is not a regular file")
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE not in (os.O_RDONLY, os.O_RDWR):
            raise OSError(errno.EINVAL, "the payload fd is not open for reading")
        try:
            seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        except OSError:
            raise OSError(errno.EINVAL, "the payload fd is not a memfd") from None
        if not seals & fcntl.F_SEAL_SHRINK:
            raise OSError(errno.EINVAL, "the payload memfd is not sealed against shrinking")
        if info.st_size < length:
            raise OSError(errno.EINVAL, f"the payload memfd holds {info.st_size} bytes, fewer than {length}")
        return cls(fd, length)

    def copy_to(self, target_fd: int, offset: int) -> None:
        """Write the payload into ``target_fd`` at ``offset`` (like a full ``pwrite``)."""
        pipe = _thread_pipe()
        done = 0
        try:
            while done < self.length:
                moved = os.splice(self.fd, pipe.write_fd, min(pipe.size, self.length - done), offset_src=done)
                if not moved:
                    raise OSError(errno.EIO, "the payload memfd ended early")
                sent = 0
                while sent < moved:
                    step = os.splice(pipe.read_fd, target_fd, moved - sent, offset_dst=offset + done + sent)
                    if not step:
                        raise OSError(errno.EIO, "the target file took no bytes")
                    sent += step
                done += moved
        except BaseException:
            pipe.discard()  # it may still hold bytes of this payload
            raise


class _Pipe:
    """A pipe a serving thread splices through; closed when discarded or when its thread ends."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            self.size = fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:  # above the user's pipe quota: the default size works, in more steps
            self.size = fcntl.fcntl(self.write_fd, fcntl.F_GETPIPE_SZ)
        self._open = True

    def discard(self) -> None:
        """Close the pipe and forget it (the thread's next copy makes a new one)."""
        if getattr(_local, "pipe", None) is self:
            del _local.pipe
        self.close()

    def close(self) -> None:
        """Close both ends (once)."""
        if self._open:
            self._open = False
            os.close(self.read_fd)
            os.close(self.write_fd)

    __del__ = close


_local = threading.local()


def _thread_pipe() -> _Pipe:
    """This thread's pipe (one per serving thread, dropped with the thread's local state)."""
    pipe: _Pipe | None = getattr(_local, "pipe", None)
    if pipe is None:
        pipe = _local.pipe = _Pipe()
    return pipe
