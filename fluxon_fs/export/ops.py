"""The operations an export offers, identical on both sides of the wire.

The fs agent implements :class:`ExportOps` on a real directory (fd-anchored, no-follow); the mount
client reaches the same interface over RPC (``/fluxon_fs/<export>/<op>``). Paths are export-relative,
``/``-separated, ``""`` for the export root; they never start with ``/``. Failures raise
``OSError`` with the errno the local filesystem would give (the client re-raises it with the
user-visible mount path).
"""

from __future__ import annotations

import os
import stat as stat_module
from typing import Any, Protocol

import attrs

from fluxon_fs.export.same_host.protocol import SameHostAddress


@attrs.frozen
class FileStat:
    """What ``os.stat`` says about an export entry; ``version`` identifies file content."""

    mode: int
    size: int
    mtime_ns: int
    atime_ns: int
    ctime_ns: int
    ino: int = 0
    nlink: int = 1
    uid: int = 0
    gid: int = 0

    @classmethod
    def from_os(cls, st: os.stat_result) -> FileStat:
        """Convert a local ``os.stat_result``."""
        # Positional: an agent builds one per listed entry, and keywords cost attrs twice as much.
        return cls(
            st.st_mode,
            st.st_size,
            st.st_mtime_ns,
            st.st_atime_ns,
            st.st_ctime_ns,
            st.st_ino,
            st.st_nlink,
            st.st_uid,
            st.st_gid,
        )

    @property
    def version(self) -> str:
        """Content version: a changed file (size or mtime) is a new version."""
        return f"{self.size}-{self.mtime_ns}"

    def is_dir(self) -> bool:
        """True for a directory."""
        return stat_module.S_ISDIR(self.mode)

    def is_file(self) -> bool:
        """True for a regular file."""
        return stat_module.S_ISREG(self.mode)

    def to_stat_result(self) -> os.stat_result:
        """An ``os.stat_result`` with integer and float times filled like the local one."""
        fields: list[Any] = [
            self.mode,
            self.ino,
            0,
            self.nlink,
            self.uid,
            self.gid,
            self.size,
            self.atime_ns // 1_000_000_000,
            self.mtime_ns // 1_000_000_000,
            self.ctime_ns // 1_000_000_000,
        ]
        extra = {
            "st_atime": self.atime_ns / 1e9,
            "st_mtime": self.mtime_ns / 1e9,
            "st_ctime": self.ctime_ns / 1e9,
            "st_atime_ns": self.atime_ns,
            "st_mtime_ns": self.mtime_ns,
            "st_ctime_ns": self.ctime_ns,
        }
        return os.stat_result(fields, extra)

    def to_wire(self) -> list[int]:
        """Compact JSON form."""
        return [
            self.mode,
            self.size,
            self.mtime_ns,
            self.atime_ns,
            self.ctime_ns,
            self.ino,
            self.nlink,
            self.uid,
            self.gid,
        ]

    @classmethod
    def from_wire(cls, data: list[int]) -> FileStat:
        """Inverse of :meth:`to_wire`."""
        return cls(*data)


@attrs.frozen
class DirEntryInfo:
    """One directory entry with its ``lstat`` (so ``scandir`` needs no extra calls)."""

    name: str
    stat: FileStat


@attrs.frozen
class WriteSessionInfo:
    """An open write session: its id and the file's stat after open (after truncation if any)."""

    session_id: str
    stat: FileStat
    same_host: SameHostAddress | None = None
    """The agent's same-host write channel, when it has one (the mount uses it only if it reaches it)."""


class ExportOps(Protocol):
    """Every operation of one export (FS.md §7)."""

    def stat(self, relpath: str, *, follow_symlinks: bool = True) -> FileStat:
        """``os.stat``/``os.lstat`` of an entry."""
        ...

    def list_dir(self, relpath: str) -> list[DirEntryInfo]:
        """Entries of a directory with their lstat, sorted by name."""
        ...

    def read_chunk(self, relpath: str, offset: int, length: int) -> tuple[FileStat, bytes]:
        """Up to ``length`` bytes at ``offset`` plus the file's stat at the time of the read."""
        ...

    def write_chunk(self, relpath: str, offset: int, data: bytes) -> FileStat:
        """Write ``data`` at ``offset`` into an existing file."""
        ...

    def truncate(self, relpath: str, length: int) -> FileStat:
        """Set the file's size."""
        ...

    def mkdir(self, relpath: str, mode: int = 0o777) -> None:
        """Create one directory (parent must exist)."""
        ...

    def rmdir(self, relpath: str) -> None:
        """Remove an empty directory."""
        ...

    def unlink(self, relpath: str) -> None:
        """Remove a file or symlink."""
        ...

    def rename(self, src_relpath: str, dst_relpath: str) -> None:
        """``os.rename``/``os.replace`` within the export (POSIX: replaces a file target)."""
        ...

    def chmod(self, relpath: str, mode: int) -> None:
        """Change permission bits."""
        ...

    def utime(self, relpath: str, times_ns: tuple[int, int] | None) -> None:
        """Set (atime_ns, mtime_ns), or now when None."""
        ...

    def session_open(
        self, relpath: str, *, create: bool, exclusive: bool, truncate: bool, mode: int = 0o666
    ) -> WriteSessionInfo:
        """Open a file for writing (``open`` flags semantics); returns a session id."""
        ...

    def session_write(self, session_id: str, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` within the session."""
        ...

    def session_flush(self, session_id: str) -> FileStat:
        """Make everything written so far visible to other readers."""
        ...

    def session_finalize(self, session_id: str) -> FileStat:
        """Flush and close the session."""
        ...

    def session_abort(self, session_id: str) -> None:
        """Close the session; the file keeps what was flushed."""
        ...


class ExportOpsByName:
    """:class:`ExportOps` whose every operation is one ``_call(op_name, **arguments)``.

    The arguments are keyed by the :class:`ExportOps` parameter names, as
    :data:`fluxon_fs.export.wire.OPS` declares them: the RPC client sends them over the wire, the
    agent's in-process authorised view checks them like its RPC endpoint does.
    """

    def _call(self, op: str, **args: Any) -> Any:
        raise NotImplementedError

    def stat(self, relpath: str, *, follow_symlinks: bool = True) -> FileStat:
        """``os.stat``/``os.lstat`` of an entry."""
        return self._call("stat", relpath=relpath, follow_symlinks=follow_symlinks)

    def list_dir(self, relpath: str) -> list[DirEntryInfo]:
        """Entries of a directory with their lstat, sorted by name."""
        return self._call("list_dir", relpath=relpath)

    def read_chunk(self, relpath: str, offset: int, length: int) -> tuple[FileStat, bytes]:
        """Up to ``length`` bytes at ``offset`` and the stat they belong to (short only at EOF or the agent's cap)."""
        return self._call("read_chunk", relpath=relpath, offset=offset, length=length)

    def write_chunk(self, relpath: str, offset: int, data: bytes) -> FileStat:
        """Write ``data`` at ``offset`` into an existing file."""
        return self._call("write_chunk", relpath=relpath, offset=offset, data=data)

    def truncate(self, relpath: str, length: int) -> FileStat:
        """Set the file's size."""
        return self._call("truncate", relpath=relpath, length=length)

    def mkdir(self, relpath: str, mode: int = 0o777) -> None:
        """Create one directory (parent must exist)."""
        self._call("mkdir", relpath=relpath, mode=mode)

    def rmdir(self, relpath: str) -> None:
        """Remove an empty directory."""
        self._call("rmdir", relpath=relpath)

    def unlink(self, relpath: str) -> None:
        """Remove a file or symlink."""
        self._call("unlink", relpath=relpath)

    def rename(self, src_relpath: str, dst_relpath: str) -> None:
        """``os.replace`` within the export."""
        self._call("rename", src_relpath=src_relpath, dst_relpath=dst_relpath)

    def chmod(self, relpath: str, mode: int) -> None:
        """Change permission bits."""
        self._call("chmod", relpath=relpath, mode=mode)

    def utime(self, relpath: str, times_ns: tuple[int, int] | None) -> None:
        """Set (atime_ns, mtime_ns), or now when None."""
        self._call("utime", relpath=relpath, times_ns=times_ns)

    def session_open(
        self, relpath: str, *, create: bool, exclusive: bool, truncate: bool, mode: int = 0o666
    ) -> WriteSessionInfo:
        """Open a file for writing (``open`` flags semantics); returns the session."""
        return self._call(
            "session_open", relpath=relpath, create=create, exclusive=exclusive, truncate=truncate, mode=mode
        )

    def session_write(self, session_id: str, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` within the session."""
        self._call("session_write", session_id=session_id, offset=offset, data=data)

    def session_flush(self, session_id: str) -> FileStat:
        """Make everything written so far visible; returns the file's stat."""
        return self._call("session_flush", session_id=session_id)

    def session_finalize(self, session_id: str) -> FileStat:
        """Close the session after its writes; returns the file's final stat."""
        return self._call("session_finalize", session_id=session_id)

    def session_abort(self, session_id: str) -> None:
        """Close the session; the file keeps what was written."""
        self._call("session_abort", session_id=session_id)
