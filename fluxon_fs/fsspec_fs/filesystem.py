"""``FluxonFileSystem``: the ``fluxon://<export>/<path>`` filesystem of fsspec, over the exports' own operations.

Every path is turned into the same :class:`~fluxon_fs.patcher.mount_table.MountedPath` a mount
would make (with the URL as the path errors name) and handed to a
:class:`~fluxon_fs.patcher.mounted_export.MountedExport` that the
:class:`~fluxon_fs.patcher.export_client.ExportClient` opened without mounting it: metadata caching,
versioned pieces in the host pool, readahead and write sessions are the mount's. Nothing is
patched.
"""

from __future__ import annotations

import errno
import posixpath
import stat as stat_module
from datetime import UTC, datetime
from typing import IO, Any

from fsspec import AbstractFileSystem

from fluxon_core.relpath import split_relpath
from fluxon_fs.export.ops import FileStat
from fluxon_fs.fsspec_fs.connection import (
    ConfigSource,
    ConnectionOptions,
    FluxonConnection,
    close_shared_connection,
    shared_connection,
)
from fluxon_fs.patcher.errors import os_error
from fluxon_fs.patcher.mount_table import MountedPath
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.patcher.piece_reader import PinnedContent

PROTOCOL = "fluxon"
COPY_CHUNK_BYTES = 8 * 1024 * 1024


class FluxonFileSystem(AbstractFileSystem):  # type: ignore[misc]  # fsspec is untyped
    """fsspec filesystem of a Fluxon FS cluster: ``fluxon://<export>/<path>``.

    ``storage_options``: ``config`` (the mount client's config: YAML path, YAML text or mapping
    with ``kvclient`` and ``fluxon_fs.master``), and ``username``/``password`` (default: the
    config's ``fluxon_fs.identity``).
    """

    protocol = PROTOCOL
    root_marker = ""

    def __init__(
        self,
        config: ConfigSource,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(config=config, username=username, password=password, **kwargs)
        self._options = ConnectionOptions(config, username, password)
        shared_connection(self._options)  # fail now on a bad config or identity

    @property
    def _connection(self) -> FluxonConnection:
        return shared_connection(self._options)

    def close(self) -> None:
        """Detach this process from the owner now (else at interpreter exit); a later call attaches again."""
        close_shared_connection(self._options)

    # ----- paths --------------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = super()._strip_protocol(path)
        return text.strip("/")

    def unstrip_protocol(self, name: str) -> str:
        """The full URL of a path."""
        return f"{PROTOCOL}://{self._strip_protocol(name)}"

    def _locate(self, path: Any, *, must_be_dir: bool = False) -> tuple[MountedExport, MountedPath]:
        """The export and mount-style path of a URL (``PermissionError`` for a path leaving the export)."""
        stripped = self._strip_protocol(path)
        url = f"{PROTOCOL}://{stripped}"
        name, _, rest = stripped.partition("/")
        if not name:
            raise os_error(errno.EISDIR, url, message="the root of fluxon:// lists exports; name an export")
        try:
            relpath = "/".join(split_relpath(rest))
        except PermissionError as exc:
            raise PermissionError(errno.EACCES, exc.strerror, url) from None
        try:
            export = self._connection.export(name)
        except ValueError as exc:
            raise FileNotFoundError(errno.ENOENT, f"no such export ({exc})", url) from None
        return export, MountedPath(export, relpath, url, must_be_dir)

    # ----- metadata -----------------------------------------------------------------------------

    def info(self, path: Any, **kwargs: Any) -> dict[str, Any]:
        """Name, size, type and times of an entry (symlinks followed)."""
        stripped = self._strip_protocol(path)
        if not stripped:
            return {"name": "", "size": 0, "type": "directory"}
        export, target = self._locate(stripped)
        return _info(stripped, export.file_stat(target))

    def ls(self, path: Any, detail: bool = True, **kwargs: Any) -> list[Any]:
        """Entries of a directory (a file lists itself); the root lists the exports."""
        stripped = self._strip_protocol(path)
        if not stripped:
            entries = [{"name": name, "size": 0, "type": "directory"} for name in self._connection.export_names()]
        else:
            export, target = self._locate(stripped)
            try:
                listed = export.entries(target)
            except NotADirectoryError:
                entries = [_info(stripped, export.file_stat(target))]
            else:
                entries = []
                for entry in listed:
                    name = f"{stripped}/{entry.name}"
                    stat = entry.stat
                    if stat_module.S_ISLNK(stat.mode):
                        try:
                            stat = export.file_stat(self._locate(name)[1])
                        except OSError:
                            pass  # a dangling link, or one leaving the export, lists as itself
                    entries.append(_info(name, stat))
        return entries if detail else [entry["name"] for entry in entries]

    def created(self, path: Any) -> datetime:
        """Change time of the entry (POSIX keeps no creation time), UTC."""
        return datetime.fromtimestamp(self.info(path)["created"], tz=UTC)

    def modified(self, path: Any) -> datetime:
        """Modification time of the entry, UTC."""
        return datetime.fromtimestamp(self.info(path)["mtime"], tz=UTC)

    # ----- directories --------------------------------------------------------------------------

    def mkdir(self, path: Any, create_parents: bool = True, **kwargs: Any) -> None:
        """Create a directory (its missing parents too with ``create_parents``); ``FileExistsError`` if it exists."""
        if create_parents:
            self.makedirs(path, exist_ok=False)
            return
        export, target = self._locate(path)
        export.mkdir(target, 0o777)

    def makedirs(self, path: Any, exist_ok: bool = False) -> None:
        """Create a directory and its missing parents (``FileExistsError`` if it exists, unless ``exist_ok``)."""
        export, target = self._locate(path)
        if not target.relpath:
            if exist_ok:
                return
            raise os_error(errno.EEXIST, target.user_path)
        self._make_tree(export, target, exist_ok, leaf=True)

    def _make_tree(self, export: MountedExport, target: MountedPath, exist_ok: bool, *, leaf: bool) -> None:
        # Leaf first, parents only when missing: a user scoped to a subtree may not touch its ancestors.
        try:
            export.mkdir(target, 0o777)
        except FileNotFoundError:
            parent = target.relpath.rpartition("/")[0]
            if not parent:
                raise
            self._make_tree(export, MountedPath(export, parent, target.user_path, False), True, leaf=False)
            export.mkdir(target, 0o777)
        except FileExistsError:
            if not exist_ok:
                raise
            if not stat_module.S_ISDIR(export.file_stat(target).mode):
                raise os_error(errno.EEXIST if leaf else errno.ENOTDIR, target.user_path) from None

    def rmdir(self, path: Any) -> None:
        """Remove an empty directory."""
        export, target = self._locate(path)
        export.rmdir(target)

    def rm_file(self, path: Any) -> None:
        """Remove a file, or an empty directory (``rm(recursive=True)`` removes children first)."""
        export, target = self._locate(path)
        entry = export.file_stat(MountedPath(export, target.relpath, target.user_path, False), follow_symlinks=False)
        if stat_module.S_ISDIR(entry.mode):
            export.rmdir(target)
        else:
            export.unlink(target)

    _rm = rm_file

    # ----- moving and copying -------------------------------------------------------------------

    def mv(self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None, **kwargs: Any) -> None:
        """Rename within one export (into ``path2`` when it is a directory); other cases copy then remove."""
        single = isinstance(path1, str) and isinstance(path2, str) and not any(c in path1 for c in "*?[")
        if single:
            source, target = self._strip_protocol(path1), self._strip_protocol(path2)
            if source.partition("/")[0] == target.partition("/")[0]:
                if source == target:
                    return
                if self.isdir(target):
                    target = f"{target}/{posixpath.basename(source)}"
                export, src = self._locate(source)
                _, dst = self._locate(target)
                export.rename(src, dst)
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)

    def cp_file(self, path1: Any, path2: Any, **kwargs: Any) -> None:
        """Copy one file's bytes (read through the pool, written with a write session)."""
        if self.isdir(path1):
            self.makedirs(path2, exist_ok=True)
            return
        with self.open(path1, "rb") as source, self.open(path2, "wb") as destination:
            while chunk := source.read(COPY_CHUNK_BYTES):
                destination.write(chunk)

    # ----- content ------------------------------------------------------------------------------

    def _open(
        self,
        path: Any,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> IO[bytes]:
        """A binary file: a read pins the version as of open; a write is a session published on close."""
        if not autocommit:
            raise NotImplementedError("fluxon:// has no transactions: every write is published when its file closes")
        export, target = self._locate(path)
        try:
            file: IO[bytes] = export.open(target, target.user_path, mode)
        except FileNotFoundError:
            if "r" in mode or "/" not in target.relpath:
                raise
            # Like object stores (and fsspec's memory filesystem), writing a file makes its directories.
            self.makedirs(self._parent(path), exist_ok=True)
            file = export.open(target, target.user_path, mode)
        return file

    def cat_file(self, path: Any, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        """The file's bytes, or ``[start, end)`` of them, fetching only the pieces that range needs."""
        if start is None and end is None:
            with self.open(path, "rb") as file:
                data: bytes = file.read()
                return data
        export, target = self._locate(path)
        stat = export.file_stat(target)
        if stat_module.S_ISDIR(stat.mode):
            raise os_error(errno.EISDIR, target.user_path)
        begin = _clip(start, stat.size, 0)
        stop = _clip(end, stat.size, stat.size)
        content = PinnedContent(target, stat, None)
        try:
            return content.read(begin, max(stop - begin, 0))
        finally:
            content.close()

    def pipe_file(self, path: Any, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Write the file's bytes (``mode="create"``: ``FileExistsError`` if it exists, checked by the agent)."""
        with self.open(path, "xb" if mode == "create" else "wb") as file:
            file.write(value)

    def touch(self, path: Any, truncate: bool = True, **kwargs: Any) -> None:
        """Create an empty file, or (``truncate=False``) bump an existing file's times."""
        if truncate:
            with self.open(path, "wb"):
                return
        export, target = self._locate(path)
        export.touch(target, 0o666, exist_ok=True)

    def ukey(self, path: Any) -> str:
        """The content version of a file (size and mtime)."""
        export, target = self._locate(path)
        return export.file_stat(target).version


def _info(name: str, stat: FileStat) -> dict[str, Any]:
    if stat_module.S_ISDIR(stat.mode):
        kind = "directory"
    elif stat_module.S_ISREG(stat.mode):
        kind = "file"
    else:
        kind = "other"
    return {
        "name": name,
        "size": stat.size if kind == "file" else 0,
        "type": kind,
        "mode": stat.mode,
        "mtime": stat.mtime_ns / 1e9,
        "created": stat.ctime_ns / 1e9,
        "version": stat.version,
        "islink": stat_module.S_ISLNK(stat.mode),
    }


def _clip(offset: int | None, size: int, default: int) -> int:
    if offset is None:
        return default
    if offset < 0:
        return max(size + offset, 0)
    return min(offset, size)
