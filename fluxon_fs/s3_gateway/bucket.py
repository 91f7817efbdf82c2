"""One user's view of one bucket (an export): objects read, written and removed through the mount machinery.

Reads go through :class:`~fluxon_fs.patcher.mounted_export.MountedExport` exactly as a mount's do
(same versioned pieces in the host pool, same read-whole-at-open for small files, readahead for
large ones). Writes go to a staging file beside the key through an agent write session and are
published with one ``rename`` when complete, so a reader sees the old object or the new one,
never a part. Every call carries the user's session token: the agent applies the same scopes as
for the user's mounts, and resolves the path without leaving the export.
"""

from __future__ import annotations

import errno
import hashlib
import secrets
import stat as stat_module
from collections.abc import Iterator
from typing import IO

from fluxon_fs.export.ops import DirEntryInfo, FileStat
from fluxon_fs.patcher.mount_table import MountedPath
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.patcher.piece_reader import PinnedContent
from fluxon_fs.s3_gateway.errors import S3Error, s3_error_of
from fluxon_fs.s3_gateway.keys import STAGING_PREFIX, is_folder_key, key_relpath
from fluxon_fs.s3_gateway.listing import ListingPage, list_page

READ_SLICE_BYTES = 4 * 1024 * 1024
"""Bytes handed to the HTTP server per step of a GET."""


def etag_of(stat: FileStat) -> str:
    """The quoted ETag of a file version (changes with its size, mtime and inode)."""
    return '"' + hashlib.md5(f"{stat.version}-{stat.ino}".encode(), usedforsecurity=False).hexdigest() + '"'


def parent_of(relpath: str) -> str:
    """The directory part of an export-relative path ("" at the root)."""
    return relpath.rpartition("/")[0]


def join(directory: str, name: str) -> str:
    """``directory/name`` (``name`` at the root)."""
    return f"{directory}/{name}" if directory else name


class StagedWrite:
    """An object being written under a staging name, published onto its key by :meth:`commit`."""

    def __init__(self, bucket: Bucket, relpath: str) -> None:
        self._bucket = bucket
        self.relpath = relpath
        self.staging_relpath = join(parent_of(relpath), f"{STAGING_PREFIX}{secrets.token_hex(12)}.tmp")
        self.size = 0
        self._file: IO[bytes] = bucket.open_new(self.staging_relpath)
        self._closed = False

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        try:
            self._file.write(data)
        except Exception as exc:
            self.abort()
            raise s3_error_of(exc, bucket=self._bucket.name, key=self.relpath) from exc
        self.size += len(data)

    def commit(self) -> FileStat:
        """Finish the write and publish it at the key in one rename; the new object's stat."""
        try:
            self._file.close()
            self._closed = True
            self._bucket.rename(self.staging_relpath, self.relpath)
            return self._bucket.stat(self.relpath, key=self.relpath)
        except BaseException as exc:
            self.abort()
            raise s3_error_of(exc, bucket=self._bucket.name, key=self.relpath) from exc

    def abort(self) -> None:
        """Drop what was written (nothing is published)."""
        if not self._closed:
            self._closed = True
            try:
                self._file.close()
            except Exception:
                pass
        self._bucket.remove_quietly(self.staging_relpath)


class Bucket:
    """The export ``name`` as the user of ``export``'s token sees it."""

    def __init__(self, name: str, export: MountedExport) -> None:
        self.name = name
        self.export = export

    def _target(self, relpath: str, *, must_be_dir: bool = False) -> MountedPath:
        return MountedPath(self.export, relpath, f"/{self.name}/{relpath}", must_be_dir)

    def _error(self, exc: BaseException, key: str) -> S3Error:
        return s3_error_of(exc, bucket=self.name, key=key)

    # ----- bucket ------------------------------------------------------------------------------

    def check_reachable(self) -> None:
        """Raise ``AccessDenied`` unless the user may reach the export at all."""
        try:
            self.export.file_stat(self._target(""))
        except Exception as exc:
            raise self._error(exc, "") from exc

    def listing(self, *, prefix: str, delimiter: str, marker: str, max_keys: int) -> ListingPage:
        """A page of the listing (see :mod:`fluxon_fs.s3_gateway.listing`)."""
        dir_key = prefix.rpartition("/")[0]
        if dir_key:
            key_relpath(self.name, dir_key + "/")  # a prefix climbing out of the bucket is refused

        def entries(relpath: str) -> list[DirEntryInfo]:
            return self.export.entries(self._target(relpath, must_be_dir=True))

        try:
            return list_page(entries, prefix=prefix, delimiter=delimiter, marker=marker, max_keys=max_keys)
        except Exception as exc:
            raise self._error(exc, prefix) from exc

    # ----- objects -----------------------------------------------------------------------------

    def stat(self, relpath: str, *, key: str) -> FileStat:
        """The stat of the object at ``relpath``: a regular file, or a directory for a folder key."""
        try:
            stat = self.export.file_stat(self._target(relpath))
        except Exception as exc:
            raise self._error(exc, key) from exc
        wanted_dir = is_folder_key(key)
        if stat_module.S_ISDIR(stat.mode) != wanted_dir or not (wanted_dir or stat_module.S_ISREG(stat.mode)):
            raise S3Error("NoSuchKey", "The specified key does not exist.", resource=f"/{self.name}/{key}")
        return stat

    def open_content(self, relpath: str, *, key: str) -> PinnedContent:
        """The content of the object's current version, read through the host pool."""
        target = self._target(relpath)
        try:
            stat, first_piece = self.export.snapshot_for_read(target)
            if not stat_module.S_ISREG(stat.mode):
                raise S3Error("NoSuchKey", "The specified key does not exist.", resource=f"/{self.name}/{key}")
            return PinnedContent(target, stat, first_piece)
        except Exception as exc:
            raise self._error(exc, key) from exc

    def read_stream(self, content: PinnedContent, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of ``content``, a slice at a time; closes it when done."""
        try:
            offset = start
            while offset < end:
                views = content.slices(offset, min(READ_SLICE_BYTES, end - offset))
                if not views:
                    break  # the file shrank after open
                for view in views:
                    yield bytes(view)
                    offset += len(view)
        finally:
            content.close()

    def open_new(self, relpath: str) -> IO[bytes]:
        """A new file for writing at ``relpath`` (its directories are made when missing)."""
        target = self._target(relpath)
        try:
            try:
                file: IO[bytes] = self.export.open(target, target.user_path, "xb")
            except FileNotFoundError:
                self.make_dirs(parent_of(relpath))
                file = self.export.open(target, target.user_path, "xb")
            return file
        except Exception as exc:
            raise self._error(exc, relpath) from exc

    def make_dirs(self, relpath: str) -> None:
        """``mkdir -p`` inside the export."""
        if not relpath:
            return
        done = ""
        for part in relpath.split("/"):
            done = join(done, part)
            try:
                self.export.mkdir(self._target(done), 0o777)
            except FileExistsError:
                continue

    def rename(self, source: str, destination: str) -> None:
        """Move ``source`` onto ``destination`` (replacing a file there) inside the export."""
        self.export.rename(self._target(source), self._target(destination))

    def remove_quietly(self, relpath: str) -> None:
        """Unlink a staging file, ignoring that it is already gone."""
        try:
            self.export.unlink(self._target(relpath))
        except Exception:
            pass

    def put_folder(self, relpath: str, key: str) -> FileStat:
        """A folder marker: the directory (and its parents)."""
        try:
            self.make_dirs(relpath)
            return self.export.file_stat(self._target(relpath))
        except Exception as exc:
            raise self._error(exc, key) from exc

    def delete(self, relpath: str, key: str) -> None:
        """Remove the object (a missing key is not an error, as in S3); a folder key removes an empty directory."""
        target = self._target(relpath)
        try:
            if is_folder_key(key):
                self.export.rmdir(target)
            else:
                self.export.unlink(target)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTEMPTY, errno.ENOTDIR):
                return
            if exc.errno == errno.EISDIR or isinstance(exc, IsADirectoryError):
                return  # a directory is not an object: nothing to delete under this key
            raise self._error(exc, key) from exc
        except Exception as exc:
            raise self._error(exc, key) from exc

    def entries(self, relpath: str) -> list[DirEntryInfo]:
        """A directory's entries (for multipart uploads' staging files)."""
        return self.export.entries(self._target(relpath, must_be_dir=True))

    def forget(self, relpath: str) -> None:
        """Drop cached metadata of ``relpath`` (after another path changed it)."""
        self.export.metadata.forget(relpath)

    def unlink(self, relpath: str) -> None:
        """Remove a file (errors as the agent raised them)."""
        self.export.unlink(self._target(relpath))


def copy_into(content: PinnedContent, writer: StagedWrite) -> None:
    """Stream ``content`` into ``writer`` (CopyObject, CompleteMultipartUpload)."""
    offset = 0
    try:
        while offset < content.size:
            views = content.slices(offset, READ_SLICE_BYTES)
            if not views:
                break
            for view in views:
                writer.write(bytes(view))
                offset += len(view)
    finally:
        content.close()
