"""One mounted export: the local-looking operations on it, with the metadata and content caches.

The intercepted functions translate their arguments and call these methods with a
:class:`~fluxon_fs.patcher.mount_table.MountedPath`; every error leaves here as the ``OSError`` a
local call would raise on the user's path. Every change this process makes forgets the affected
metadata at once and drops cached pieces of the version it produced (a same-size rewrite within the
agent's timestamp granularity keeps the version, and its old pieces must not be served).
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from typing import IO, TYPE_CHECKING, Any

from fluxon_fs.export.ops import DirEntryInfo, ExportOps, FileStat
from fluxon_fs.patcher.content_cache import (
    Piece,
    PieceCache,
    PieceReads,
    piece_key,
    read_version_hint,
    version_hint,
    version_hint_key,
)
from fluxon_fs.patcher.errors import os_error, raise_with_user_path
from fluxon_fs.patcher.metadata_cache import MetadataCache, StatEntry
from fluxon_fs.patcher.options import MountOptions

if TYPE_CHECKING:
    from fluxon_fs.patcher.mount_table import MountedPath
    from fluxon_fs.patcher.remote_dirs import RemoteScandirIterator


class _NoPieceCache:
    """Content caching switched off."""

    def get(self, key: str) -> Piece | None:
        return None

    def get_local(self, key: str) -> Piece | None:
        return None

    def put(self, key: str, data: Piece) -> None:
        pass

    def delete(self, key: str) -> None:
        pass

    def flush(self, timeout_s: float) -> bool:
        return True


class MountedExport:
    """An export mounted at ``mount_dir``: its operations, caches and options."""

    def __init__(
        self,
        *,
        mount_dir: str,
        export_name: str,
        ops: ExportOps,
        piece_cache: PieceCache | None,
        options: MountOptions,
        device: int,
    ) -> None:
        self.mount_dir = mount_dir
        self.export_name = export_name
        self.ops = ops
        self.piece_cache: PieceCache = piece_cache if piece_cache is not None else _NoPieceCache()
        self.piece_reads = PieceReads()
        """Pieces this mount's readers got from the cache (hits) and from agents (misses)."""
        self.options = options
        self.device = device
        """Synthetic ``st_dev`` of everything in this mount."""
        self.metadata = MetadataCache(options.metadata_cache_ttl_ms / 1000)
        self._ttl_s = options.metadata_cache_ttl_ms / 1000
        self._open_window_s = min(options.stale_window_ms, options.metadata_cache_ttl_ms) / 1000

    def __repr__(self) -> str:
        return f"<MountedExport {self.export_name!r} at {self.mount_dir!r}>"

    # -- metadata -------------------------------------------------------------------------------

    def stat_result(self, target: MountedPath, follow_symlinks: bool = True) -> os.stat_result:
        """``os.stat``/``os.lstat`` (metadata cached for the TTL)."""
        entry = self.metadata.fresh_stat(target.relpath, follow_symlinks, self._ttl_s)
        if entry is None:
            entry = self._fetch_stat(target.relpath, target.user_path, follow_symlinks)
        stat = entry.stat
        if stat is None:
            raise os_error(errno.ENOENT, target.user_path)
        if target.must_be_dir and not stat_module.S_ISDIR(stat.mode):
            raise os_error(errno.ENOTDIR, target.user_path)
        result = entry.result
        if result is None:
            result = entry.result = self.stat_result_of(stat)
        return result

    def file_stat(self, target: MountedPath, follow_symlinks: bool = True) -> FileStat:
        """The export's :class:`FileStat` of an entry (metadata cached for the TTL)."""
        entry = self.metadata.fresh_stat(target.relpath, follow_symlinks, self._ttl_s)
        if entry is None:
            entry = self._fetch_stat(target.relpath, target.user_path, follow_symlinks)
        if entry.stat is None:
            raise os_error(errno.ENOENT, target.user_path)
        return entry.stat

    def _fetch_stat(self, relpath: str, user_path: Any, follow_symlinks: bool) -> StatEntry:
        generation = self.metadata.generation
        try:
            stat: FileStat | None = self.ops.stat(relpath, follow_symlinks=follow_symlinks)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise_with_user_path(exc, user_path)
            stat = None
        except Exception as exc:
            raise_with_user_path(exc, user_path)
        return self.metadata.put_stat(relpath, follow_symlinks, stat, generation)

    def stat_result_of(self, stat: FileStat) -> os.stat_result:
        """An ``os.stat_result`` for an export stat, with this mount's device number."""
        second = 1_000_000_000
        fields = (
            stat.mode,
            stat.ino,
            self.device,
            stat.nlink,
            stat.uid,
            stat.gid,
            stat.size,
            stat.atime_ns // second,
            stat.mtime_ns // second,
            stat.ctime_ns // second,
        )
        extra = {
            "st_atime": stat.atime_ns / second,
            "st_mtime": stat.mtime_ns / second,
            "st_ctime": stat.ctime_ns / second,
            "st_atime_ns": stat.atime_ns,
            "st_mtime_ns": stat.mtime_ns,
            "st_ctime_ns": stat.ctime_ns,
            "st_blksize": self.options.piece_bytes,
            "st_blocks": -(-stat.size // 512),
            "st_rdev": 0,
        }
        return os.stat_result(fields, extra)

    def require_directory(self, relpath: str, user_path: Any) -> None:
        """Raise ``ENOENT``/``ENOTDIR`` (on ``user_path``) unless ``relpath`` is a directory."""
        entry = self.metadata.fresh_stat(relpath, True, self._ttl_s)
        if entry is None:
            entry = self._fetch_stat(relpath, user_path, True)
        if entry.stat is None:
            raise os_error(errno.ENOENT, user_path)
        if not stat_module.S_ISDIR(entry.stat.mode):
            raise os_error(errno.ENOTDIR, user_path)

    def access(self, target: MountedPath, mode: int, follow_symlinks: bool = True) -> bool:
        """``os.access`` judged from the entry's owner permission bits (the agent enforces the rest)."""
        try:
            stat = self.file_stat(target, follow_symlinks)
        except OSError:
            return False
        wanted = [
            (os.R_OK, stat_module.S_IRUSR),
            (os.W_OK, stat_module.S_IWUSR),
            (os.X_OK, stat_module.S_IXUSR),
        ]
        return all(stat.mode & bit for flag, bit in wanted if mode & flag)

    # -- directories ----------------------------------------------------------------------------

    def entries(self, target: MountedPath) -> list[DirEntryInfo]:
        """Entries of a directory with their lstat (cached for the TTL)."""
        cached = self.metadata.fresh_listing(target.relpath)
        if cached is not None:
            return cached
        generation = self.metadata.generation
        try:
            entries = self.ops.list_dir(target.relpath)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        self.metadata.put_listing(target.relpath, entries, generation)
        return entries

    def listdir(self, target: MountedPath) -> list[Any]:
        """``os.listdir``: names, as bytes when the caller passed bytes."""
        names = [entry.name for entry in self.entries(target)]
        if target.is_bytes:
            return [os.fsencode(name) for name in names]
        return names

    def scandir(self, target: MountedPath, scandir_path: Any) -> RemoteScandirIterator:
        """``os.scandir``: entries carrying type and lstat, no call per entry."""
        from fluxon_fs.patcher.remote_dirs import RemoteScandirIterator

        return RemoteScandirIterator(target, scandir_path, self.entries(target))

    def mkdir(self, target: MountedPath, mode: int) -> None:
        """``os.mkdir``."""
        try:
            self.ops.mkdir(target.relpath, mode)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        finally:
            self.metadata.forget(target.relpath)

    def rmdir(self, target: MountedPath) -> None:
        """``os.rmdir``."""
        try:
            self.ops.rmdir(target.relpath)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        finally:
            self.metadata.forget_tree(target.relpath)

    def unlink(self, target: MountedPath) -> None:
        """``os.unlink``/``os.remove``."""
        try:
            self.ops.unlink(target.relpath)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        finally:
            self.metadata.forget(target.relpath)

    def rename(self, source: MountedPath, destination: MountedPath) -> None:
        """``os.rename``/``os.replace`` inside this export (POSIX: a file target is replaced).

        The destination then holds the source's bytes under the source's version, which the
        destination may have had before with other bytes (same size, same timestamp tick: the
        write-then-rename save pattern); its pieces of that version are dropped.
        """
        known = self.metadata.fresh_stat(source.relpath, False, self._ttl_s) or self.metadata.fresh_stat(
            source.relpath, True, self._ttl_s
        )
        try:
            self.ops.rename(source.relpath, destination.relpath)
        except Exception as exc:
            raise_with_user_path(exc, source.user_path, destination.user_path)
        finally:
            self.metadata.forget_tree(source.relpath)
            self.metadata.forget_tree(destination.relpath)
        moved = known.stat if known is not None else None
        if moved is None:
            try:
                moved = self.ops.stat(destination.relpath, follow_symlinks=False)
            except Exception:
                return
        if stat_module.S_ISREG(moved.mode):
            self.content_changed(destination.relpath, moved)

    def chmod(self, target: MountedPath, mode: int, follow_symlinks: bool = True) -> None:
        """``os.chmod``; like Linux, a symlink itself cannot change mode (``ENOTSUP``)."""
        if not follow_symlinks and stat_module.S_ISLNK(self.file_stat(target, False).mode):
            raise os_error(errno.ENOTSUP, target.user_path)
        try:
            self.ops.chmod(target.relpath, mode)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        finally:
            self.metadata.forget(target.relpath)

    def utime(self, target: MountedPath, times_ns: tuple[int, int] | None, follow_symlinks: bool = True) -> None:
        """``os.utime`` with nanosecond times (or now). Like CPython's, its errors name no file."""
        try:
            if not follow_symlinks and stat_module.S_ISLNK(self.file_stat(target, False).mode):
                raise os_error(errno.ENOTSUP)
            self.ops.utime(target.relpath, times_ns)
        except Exception as exc:
            raise_with_user_path(exc, None)
        finally:
            self.metadata.forget(target.relpath)
        if times_ns is not None:
            # Explicit times can recreate an old version (same size and mtime): drop its pieces.
            try:
                stat = self.ops.stat(target.relpath)
            except Exception:
                return
            self.content_changed(target.relpath, stat)

    def touch(self, target: MountedPath, mode: int, exist_ok: bool) -> None:
        """``Path.touch``: bump the times of an existing file, else create it empty."""
        if exist_ok:
            try:
                self.utime(target, None)
                return
            except OSError:
                pass
        stat = None
        try:
            session = self.ops.session_open(
                target.relpath, create=True, exclusive=not exist_ok, truncate=False, mode=mode
            )
            stat = self.ops.session_finalize(session.session_id)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        finally:
            self.content_changed(target.relpath, stat)

    def truncate(self, target: MountedPath, length: int) -> None:
        """``os.truncate`` of a path."""
        stat = None
        try:
            stat = self.ops.truncate(target.relpath, length)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        finally:
            self.content_changed(target.relpath, stat)

    # -- content --------------------------------------------------------------------------------

    def open(self, target: MountedPath, file: Any, *args: Any) -> IO[Any]:
        """``open()`` (arguments as for ``io.open`` after the file)."""
        from fluxon_fs.patcher.remote_file import open_remote

        return open_remote(target, file, *args)

    def snapshot_for_read(self, target: MountedPath) -> tuple[FileStat, Piece | None]:
        """The version a reader opens, and the first piece when it is already at hand.

        A stat younger than ``stale_window_ms`` is trusted. A file whose content is likely cached —
        this process knew it, or this host's pool holds a version hint — is revalidated with
        ``stat`` so its pieces come from the pool. Any other file is probed with one ``read_chunk``
        of a whole piece, which is the entire read for a small file: the only call of a cold open.
        The hint is looked up in this host's pool only: a hint on another host would cost a call
        to the owner and one to the kv master before the ``stat``, more than the probe it saves.
        A file shorter than a piece is cached inside its hint (:meth:`cache_piece`): the hint's
        content is the first piece when the hint names the version opened.
        """
        relpath = target.relpath
        entry = self.metadata.fresh_stat(relpath, True, self._open_window_s)
        first_piece = None
        hint: Piece | None = None
        if entry is None:
            known = self.metadata.stat_entry(relpath, True)
            if known is None or known.stat is None:
                hint = self.piece_cache.get_local(version_hint_key(self.export_name, relpath))
            if (known is not None and known.stat is not None) or hint is not None:
                entry = self._fetch_stat(target.relpath, target.user_path, True)
            else:
                entry, first_piece = self._probe(target)
        stat = entry.stat
        if stat is None:
            raise os_error(errno.ENOENT, target.user_path)
        if stat_module.S_ISDIR(stat.mode):
            raise os_error(errno.EISDIR, target.user_path)
        if target.must_be_dir:
            raise os_error(errno.ENOTDIR, target.user_path)
        if first_piece is None and 0 < stat.size < self.options.piece_bytes:
            first_piece = self._content_in_hint(relpath, stat, hint)
        return stat, first_piece

    def _content_in_hint(self, relpath: str, stat: FileStat, hint: Piece | None) -> Piece | None:
        """The whole content of a one-piece file from its version hint, when the hint is of ``stat``'s version."""
        if hint is None:
            hint = self.piece_cache.get_local(version_hint_key(self.export_name, relpath))
            if hint is None:
                return None
        version, content = read_version_hint(hint)
        if content is None or version != stat.version or len(content) != stat.size:
            return None
        self.piece_reads.hit()
        return content

    def _probe(self, target: MountedPath) -> tuple[StatEntry, Piece | None]:
        generation = self.metadata.generation
        piece_bytes = self.options.piece_bytes
        try:
            read_chunk = getattr(self.ops, "read_chunk_view", self.ops.read_chunk)  # no copy of the frame
            stat, data = read_chunk(target.relpath, 0, piece_bytes)
        except OSError as exc:
            if exc.errno == errno.EISDIR or (exc.errno == errno.ENOTDIR and target.must_be_dir):
                return self._fetch_stat(target.relpath, target.user_path, True), None
            if exc.errno == errno.ENOENT:
                self.metadata.put_stat(target.relpath, True, None, generation)
            raise_with_user_path(exc, target.user_path)
        except Exception as exc:
            raise_with_user_path(exc, target.user_path)
        entry = self.metadata.put_stat(target.relpath, True, stat, generation)
        if len(data) != min(stat.size, piece_bytes):
            return entry, None  # changing while read: fetch pieces normally
        if stat.size:
            self.piece_reads.miss()
        self.cache_piece(target.relpath, stat.version, 0, data)
        return entry, data

    def cache_piece(self, relpath: str, version: str, index: int, data: Piece) -> None:
        """Put a piece in the pool (the first piece also leaves a version hint for other processes).

        A first piece shorter than a piece is the whole file: it travels inside the hint, one value
        to stage instead of two. Puts are queued (the caller does not wait); a hint goes after its
        piece, so a process that finds the hint finds the piece.
        """
        hint_key = version_hint_key(self.export_name, relpath)
        if index == 0 and len(data) < self.options.piece_bytes:
            self.piece_cache.put(hint_key, version_hint(version, data))
            return
        self.piece_cache.put(piece_key(self.export_name, relpath, version, index), data)
        if index == 0:
            self.piece_cache.put(hint_key, version_hint(version))

    def content_changed(self, relpath: str, stat: FileStat | None, changed: tuple[int, int] | None = None) -> None:
        """This process changed a file: forget its metadata; with its new stat, remember that instead.

        Pieces cached under the new version are dropped where the bytes changed (``changed`` is the
        byte range, None for anywhere): only a same-size change within one timestamp tick keeps the
        version, and then only the changed pieces can differ from what was cached.
        """
        self.metadata.forget(relpath)
        if stat is None:
            return
        piece_bytes = self.options.piece_bytes
        count = max(-(-stat.size // piece_bytes), 1)
        first, last = (
            (0, count - 1) if changed is None else (changed[0] // piece_bytes, (changed[1] - 1) // piece_bytes)
        )
        for index in range(first, min(last, count - 1) + 1):
            if stat.size < piece_bytes:  # the content of a one-piece file is in its hint (cache_piece)
                self.piece_cache.delete(version_hint_key(self.export_name, relpath))
            else:
                self.piece_cache.delete(piece_key(self.export_name, relpath, stat.version, index))
        self.metadata.put_stat(relpath, True, stat, self.metadata.generation)
