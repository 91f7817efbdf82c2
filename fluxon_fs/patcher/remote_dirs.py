"""``os.scandir`` on a mount: entries that carry their type and lstat, like ``os.DirEntry``.

The listing already holds every entry's lstat, so ``is_dir``/``is_file``/``is_symlink``/``stat``
cost nothing more; only ``stat()`` (following) of a symlink asks the export about its target.
"""

from __future__ import annotations

import os
import posixpath
import stat as stat_module
from collections.abc import Iterator
from types import GenericAlias, TracebackType
from typing import Any

from fluxon_fs.export.ops import DirEntryInfo
from fluxon_fs.patcher.mount_table import MountedPath


class RemoteDirEntry:
    """One entry of a remote directory, with the interface of ``os.DirEntry``."""

    __slots__ = ("_info", "_lstat", "_target", "name", "path")

    __class_getitem__ = classmethod(GenericAlias)

    def __init__(self, directory: MountedPath, scandir_path: Any, info: DirEntryInfo) -> None:
        name: Any = os.fsencode(info.name) if directory.is_bytes else info.name
        self.name = name
        self.path = posixpath.join(scandir_path, name)
        self._info = info
        relpath = f"{directory.relpath}/{info.name}" if directory.relpath else info.name
        self._target = MountedPath(directory.export, relpath, self.path, False)
        self._lstat: os.stat_result | None = None

    def __fspath__(self) -> Any:
        return self.path

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"

    def inode(self) -> int:
        """Inode number on the agent."""
        return self._info.stat.ino

    def is_symlink(self) -> bool:
        """The entry itself is a symlink."""
        return stat_module.S_ISLNK(self._info.stat.mode)

    def is_junction(self) -> bool:
        """Never (a Windows notion)."""
        return False

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        """A directory (a symlink's target when following)."""
        return stat_module.S_ISDIR(self._mode(follow_symlinks))

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        """A regular file (a symlink's target when following)."""
        return stat_module.S_ISREG(self._mode(follow_symlinks))

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        """The entry's stat (its lstat unless following a symlink)."""
        if follow_symlinks and self.is_symlink():
            return self._target.export.stat_result(self._target, True)
        if self._lstat is None:
            self._lstat = self._target.export.stat_result_of(self._info.stat)
        return self._lstat

    def _mode(self, follow_symlinks: bool) -> int:
        if follow_symlinks and self.is_symlink():
            try:
                return self._target.export.stat_result(self._target, True).st_mode
            except OSError:
                return 0  # dangling: neither a directory nor a file, like os.DirEntry
        return self._info.stat.mode


class RemoteScandirIterator:
    """What ``os.scandir`` returns for a mount: an iterator and context manager of entries."""

    def __init__(self, directory: MountedPath, scandir_path: Any, entries: list[DirEntryInfo]) -> None:
        self._directory = directory
        self._scandir_path = scandir_path
        self._entries: Iterator[DirEntryInfo] | None = iter(entries)

    def __iter__(self) -> RemoteScandirIterator:
        return self

    def __next__(self) -> RemoteDirEntry:
        if self._entries is None:
            raise StopIteration
        for info in self._entries:
            return RemoteDirEntry(self._directory, self._scandir_path, info)
        self._entries = None
        raise StopIteration

    def close(self) -> None:
        """Stop the iteration."""
        self._entries = None

    def __enter__(self) -> RemoteScandirIterator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
