"""``LocalExportOps``: the :class:`~fluxon_fs.export.ops.ExportOps` of a real directory on the agent.

Every path goes through :class:`~fluxon_fs.export.serving.confinement.ExportRoot` (fd-anchored, no-follow);
files are opened relative to their confined parent fd with ``O_NOFOLLOW``. Failures are the
``OSError`` the local call gives (same class and errno) with the export-relative path as
``filename`` (and the destination as ``filename2`` for ``rename``), so the mount client only swaps
in the user-visible path. Operations on the export root itself behave like a mount point:
``rmdir``/``rename`` of ``""`` fail with ``EBUSY``.

Only regular files and directories are served: opening a FIFO, socket or device for read or
write raises ``OSError(EOPNOTSUPP)`` instead of blocking an agent thread.

Every mode the agent applies (``chmod``, ``mkdir``, creating a file in ``session_open``) loses its
setuid, setgid and sticky bits (:data:`SETID_BITS`) unless the export allows them
(``allow_setid_bits``): a user who may write an export must not be able to plant a set-user-ID
program owned by the agent's user on the agent host.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from collections.abc import Callable
from types import TracebackType

from fluxon_fs.export.ops import DirEntryInfo, FileStat, WriteSessionInfo
from fluxon_fs.export.same_host.sealed_payload import SealedPayload
from fluxon_fs.export.serving.confinement import (
    ROOT_NAME,
    ExportRoot,
    lstat_no_link,
    open_inode_path,
    open_no_link,
    with_filename,
)
from fluxon_fs.export.serving.write_sessions import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_SESSIONS,
    WriteSession,
    WriteSessionTable,
    stamp_fresh_version,
)

SETID_BITS = 0o7000
"""setuid, setgid and sticky: cleared from applied modes unless the export allows them."""

DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024
"""Largest ``read_chunk`` answer; a longer request gets a short read (callers loop, as with ``pread``)."""

# Consistent content+stat for one read: retry when the file changed during the read.
_READ_ATTEMPTS = 3


class LocalExportOps:
    """Serve one export root directory. Thread-safe; call :meth:`close` when done."""

    def __init__(
        self,
        root_dir: str,
        *,
        session_idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
        allow_setid_bits: bool = False,
    ) -> None:
        if not (isinstance(max_chunk_bytes, int) and max_chunk_bytes > 0):
            raise ValueError(f"max_chunk_bytes must be a positive int, got {max_chunk_bytes!r}")
        self.root = ExportRoot(root_dir)
        self.sessions = WriteSessionTable(idle_timeout_s=session_idle_timeout_s, max_sessions=max_sessions)
        self.max_chunk_bytes = max_chunk_bytes
        self._mode_mask = ~0 if allow_setid_bits else ~SETID_BITS

    def close(self) -> None:
        """Close open write sessions (files keep their data) and the root fd; idempotent."""
        self.sessions.close()
        self.root.close()

    def __enter__(self) -> LocalExportOps:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- metadata -------------------------------------------------------------------------------

    def stat(self, relpath: str, *, follow_symlinks: bool = True) -> FileStat:
        """``os.stat`` (or ``os.lstat`` with ``follow_symlinks=False``) of an entry."""
        if follow_symlinks:
            st = self.root.resolve(relpath, lstat_no_link, follow_final=True)
        else:
            st = self.root.resolve(
                relpath, lambda d, n: os.stat(n, dir_fd=d, follow_symlinks=False), follow_final=False
            )
        return FileStat.from_os(st)

    def list_dir(self, relpath: str) -> list[DirEntryInfo]:
        """Entries with their lstat, sorted by name (entries vanishing meanwhile are skipped)."""

        def listing(dir_fd: int, name: str) -> list[DirEntryInfo]:
            fd = _open_dir_no_link(dir_fd, name)
            try:
                found = []
                with os.scandir(fd) as it:
                    for entry in it:
                        try:
                            found.append((entry.name, entry.stat(follow_symlinks=False)))
                        except FileNotFoundError:
                            continue
            finally:
                os.close(fd)
            found.sort()  # by name: names in one directory are unique, so the stats are never compared
            from_os = FileStat.from_os
            return [DirEntryInfo(name, from_os(st)) for name, st in found]

        return self.root.resolve(relpath, listing, follow_final=True)

    def chmod(self, relpath: str, mode: int) -> None:
        """``os.chmod`` (follows symlinks inside the export), without needing read/write access;
        set-id bits are cleared unless the export allows them."""
        mode &= self._mode_mask
        self._on_inode(relpath, lambda proc_path: os.chmod(proc_path, mode))

    def utime(self, relpath: str, times_ns: tuple[int, int] | None) -> None:
        """``os.utime`` with ``(atime_ns, mtime_ns)``, or the current time for None."""
        if times_ns is None:
            self._on_inode(relpath, lambda proc_path: os.utime(proc_path))
        else:
            atime_ns, mtime_ns = times_ns
            self._on_inode(relpath, lambda proc_path: os.utime(proc_path, ns=(atime_ns, mtime_ns)))

    def _on_inode(self, relpath: str, change: Callable[[str], None]) -> None:
        def apply(dir_fd: int, name: str) -> None:
            fd = open_inode_path(dir_fd, name)
            try:
                # The fd pins the checked inode; /proc/self/fd reaches it without another lookup.
                change(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)

        self.root.resolve(relpath, apply, follow_final=True)

    # -- file content ---------------------------------------------------------------------------

    def read_chunk(self, relpath: str, offset: int, length: int) -> tuple[FileStat, bytes]:
        """Up to ``length`` bytes at ``offset`` (short only at EOF or beyond ``max_chunk_bytes``).

        The stat is the file's as of the read: when the file changes during the read it is read
        again, so content and version match unless the file keeps changing.
        """
        if offset < 0 or length < 0:
            _check_non_negative(relpath, offset=offset, length=length)
        wanted = min(length, self.max_chunk_bytes)

        def read(dir_fd: int, name: str) -> tuple[FileStat, bytes]:
            fd, before = _open_regular_with_stat(dir_fd, name, os.O_RDONLY)
            try:
                for _ in range(_READ_ATTEMPTS):
                    # Up to the size as of the stat: a small file is one pread, not a second one to see
                    # EOF. A file that grew meanwhile has another stat after the read and is read again.
                    data = _pread_full(fd, offset, min(wanted, max(before.st_size - offset, 0)))
                    after = os.fstat(fd)
                    if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                        break
                    before = after
                return FileStat.from_os(before), data
            finally:
                os.close(fd)

        return self.root.resolve(relpath, read, follow_final=True)

    def write_chunk(self, relpath: str, offset: int, data: bytes) -> FileStat:
        """Write ``data`` at ``offset`` into an existing regular file; returns its stat after."""
        _check_non_negative(relpath, offset=offset)
        return self._with_open_file(relpath, os.O_WRONLY, lambda fd: _pwrite_full(fd, offset, data))

    def truncate(self, relpath: str, length: int) -> FileStat:
        """Set the size of an existing regular file; returns its stat after."""
        _check_non_negative(relpath, length=length)
        return self._with_open_file(relpath, os.O_WRONLY, lambda fd: os.ftruncate(fd, length))

    def _with_open_file(self, relpath: str, flags: int, work: Callable[[int], object]) -> FileStat:
        def run(dir_fd: int, name: str) -> FileStat:
            fd = _open_regular(dir_fd, name, flags)
            try:
                work(fd)
                return FileStat.from_os(os.fstat(fd))
            finally:
                os.close(fd)

        return self.root.resolve(relpath, run, follow_final=True)

    # -- namespace ------------------------------------------------------------------------------

    def mkdir(self, relpath: str, mode: int = 0o777) -> None:
        """Create one directory (``EEXIST`` if the name exists, even as a symlink)."""
        mode &= self._mode_mask
        self.root.resolve(relpath, lambda d, n: os.mkdir(n, mode, dir_fd=d), follow_final=False)

    def rmdir(self, relpath: str) -> None:
        """Remove an empty directory (``ENOTEMPTY``, ``ENOTDIR`` for files and symlinks)."""

        def remove(dir_fd: int, name: str) -> None:
            if name == ROOT_NAME:
                raise _root_busy("removed")
            os.rmdir(name, dir_fd=dir_fd)

        self.root.resolve(relpath, remove, follow_final=False)

    def unlink(self, relpath: str) -> None:
        """Remove a file or a symlink (never its target); ``EISDIR`` for a directory."""
        self.root.resolve(relpath, lambda d, n: os.unlink(n, dir_fd=d), follow_final=False)

    def rename(self, src_relpath: str, dst_relpath: str) -> None:
        """``os.replace`` within the export; neither side's final symlink is followed."""

        def at_source(src_dir: int, src_name: str) -> None:
            def at_destination(dst_dir: int, dst_name: str) -> None:
                try:
                    if ROOT_NAME in (src_name, dst_name):
                        raise _root_busy("renamed or replaced")
                    os.rename(src_name, dst_name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
                except OSError as exc:
                    raise _AlreadyNamed(with_filename(exc, src_relpath, dst_relpath)) from None

            try:
                self.root.resolve(dst_relpath, at_destination, follow_final=False)
            except OSError as exc:  # resolving the destination failed; it names dst_relpath
                raise _AlreadyNamed(exc) from None

        try:
            self.root.resolve(src_relpath, at_source, follow_final=False)
        except _AlreadyNamed as named:
            raise named.error from None

    # -- write sessions -------------------------------------------------------------------------

    def session_open(
        self, relpath: str, *, create: bool, exclusive: bool, truncate: bool, mode: int = 0o666
    ) -> WriteSessionInfo:
        """Open a regular file for writing with ``open(2)`` flag semantics; returns the session."""
        flags = os.O_WRONLY
        if create:
            flags |= os.O_CREAT
        if exclusive:
            flags |= os.O_EXCL
        if truncate:
            flags |= os.O_TRUNC
        mode &= self._mode_mask
        session_id = self.sessions.open(
            relpath,
            lambda: self.root.resolve(relpath, lambda d, n: _open_regular(d, n, flags, mode), follow_final=True),
        )
        with self.sessions.use(session_id) as session:
            return WriteSessionInfo(session_id, FileStat.from_os(os.fstat(session.fd)))

    def session_write(self, session_id: str, offset: int, data: bytes) -> None:
        """``pwrite`` ``data`` at ``offset``; concurrent writes of one session are allowed."""
        self._session_write(session_id, offset, lambda fd: _pwrite_full(fd, offset, data))

    def session_write_sealed(self, session_id: str, offset: int, data: SealedPayload) -> None:
        """:meth:`session_write` of a payload a same-host client passed as a sealed memfd (copied in the kernel)."""
        self._session_write(session_id, offset, lambda fd: data.copy_to(fd, offset))

    def _session_write(self, session_id: str, offset: int, write: Callable[[int], None]) -> None:
        with self.sessions.use(session_id) as session:
            _check_non_negative(session.relpath, offset=offset)
            try:
                session.wrote = True  # before the write: a failed write may still have changed bytes
                write(session.fd)
            except OSError as exc:
                raise with_filename(exc, session.relpath) from None

    def session_flush(self, session_id: str) -> FileStat:
        """Everything written is already visible to readers (``pwrite``); returns the current stat."""
        with self.sessions.use(session_id) as session:
            return FileStat.from_os(os.fstat(session.fd))

    def session_finalize(self, session_id: str) -> FileStat:
        """Wait for the session's running writes, close it and return the file's final stat.

        A session that wrote leaves the file at a fresh version (:func:`stamp_fresh_version`).
        """

        def last(session: WriteSession) -> FileStat:
            return FileStat.from_os(stamp_fresh_version(session.fd) if session.wrote else os.fstat(session.fd))

        return self.sessions.finish(session_id, last)

    def session_abort(self, session_id: str) -> None:
        """Close the session; the file keeps what was written (at a fresh version, as after finalize)."""
        self.sessions.finish(session_id, lambda session: stamp_fresh_version(session.fd) if session.wrote else None)

    def session_relpath(self, session_id: str) -> str:
        """The export-relative path an open session writes (``OSError(EBADF)`` when not open)."""
        return self.sessions.relpath(session_id)


class _AlreadyNamed(Exception):
    """Carries an OSError already naming the right path(s) past the outer ``resolve``'s renaming."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


def _root_busy(what: str) -> OSError:
    return OSError(errno.EBUSY, f"the export root cannot be {what}")


def _check_non_negative(relpath: str, **values: int) -> None:
    for field, value in values.items():
        if value < 0:
            raise OSError(errno.EINVAL, f"{field} must be >= 0, got {value}", relpath)


def _open_dir_no_link(dir_fd: int, name: str) -> int:
    """A readable directory fd (``ELOOP`` for a symlink so the walker follows it, else ``ENOTDIR``)."""
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except NotADirectoryError:
        # O_DIRECTORY|O_NOFOLLOW reports a symlink as ENOTDIR; tell the walker it is a link.
        lstat_no_link(dir_fd, name)
        raise


def _open_regular(dir_fd: int, name: str, flags: int, mode: int = 0o666) -> int:
    """Open a regular file without following a final symlink and without blocking on special files."""
    return _open_regular_with_stat(dir_fd, name, flags, mode)[0]


def _open_regular_with_stat(dir_fd: int, name: str, flags: int, mode: int = 0o666) -> tuple[int, os.stat_result]:
    """:func:`_open_regular`, also returning the ``fstat`` it checked the file type with."""
    fd = open_no_link(dir_fd, name, flags | os.O_NONBLOCK, mode)
    try:
        stat = os.fstat(fd)
        if stat_module.S_ISDIR(stat.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        if not stat_module.S_ISREG(stat.st_mode):
            raise OSError(errno.EOPNOTSUPP, "only regular files can be read or written through an export")
    except BaseException:
        os.close(fd)
        raise
    return fd, stat


def _pread_full(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length:
        more = os.pread(fd, length - got, offset + got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _pwrite_full(fd: int, offset: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
