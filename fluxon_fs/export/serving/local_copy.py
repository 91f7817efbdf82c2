"""Copying files between two exports served by the same agent, relative to two directory fds.

A transfer worker whose source and target exports are both local copies a directory's files of a
batch here instead of through one export operation per step (read, create, write, finalize,
utime, rename: five confined path resolutions and six access checks per file). Each directory is
resolved once with :meth:`~fluxon_fs.export.serving.confinement.ExportRoot.resolve` (fd-anchored,
no-follow), the caller's access is checked once per directory for all its files with the same
``authorize`` hook and operation names the export's RPC endpoint uses, and every file is then opened
by its single name relative to the directory fd with ``O_NOFOLLOW``; the bytes of a large file move
with ``os.copy_file_range`` (in the kernel, no Python buffer), those of a small file (or where the
kernel cannot) with ``pread``/``pwrite``.

Whatever this fast path does not handle identically is left to the generic per-operation path,
which follows symlinks inside an export and re-authorises them on their real path:

* a directory reached through a symlink (the lookup followed one), or one that cannot be opened;
* a file that is a symlink (opening it with ``O_NOFOLLOW`` fails with ``ELOOP``) or not a regular
  file;
* a refused access check (the generic path then reports the refusal per file).

The result of a copy is what the generic path produces: the file is written to a temporary name
next to its target and renamed into place after a size and version check, with the source's
permission bits (never set-id bits) and times.
"""

from __future__ import annotations

import errno
import math
import os
import secrets
import stat as stat_module
from collections.abc import Callable, Sequence

import attrs

from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.export.ops import FileStat
from fluxon_fs.export.serving.confinement import ROOT_NAME, ExportRoot, guard_resolved_paths, with_filename
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.export.serving.rpc_service import Authorize
from fluxon_fs.export.wire import op_path

COPY_CHUNK_BYTES = 8 * 1024 * 1024
TEMP_MARKER = ".fluxon-part-"
COPIED_MODE_BITS = 0o777
"""The mode bits a copy keeps: permissions only, never setuid, setgid or sticky."""

_NO_MESSAGE = RpcMessage()
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
KERNEL_COPY_MIN_BYTES = 1024 * 1024
"""Files at least this large are copied with ``copy_file_range``; smaller ones with one ``pread`` and
one ``pwrite`` per chunk, which costs less for them (measured: 16 KiB files copy about a quarter
faster that way, 8 MiB files about three times slower)."""
# copy_file_range refuses some file pairs (other filesystems on old kernels, special filesystems).
_NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


def temp_name(name: str) -> str:
    """The temporary name a copy of ``name`` is written under in the same directory."""
    return f".{name}{TEMP_MARKER}{secrets.token_hex(4)}"


@attrs.frozen
class FileOutcome:
    """What happened to one file: copied (``stat`` is the source stat the copy corresponds to),
    ``skipped`` (vanished since the scan, or identical on the target with ``skip_existing``),
    or ``error``."""

    name: str
    stat: FileStat | None = None
    skipped: bool = False
    error: OSError | None = None


class _ThroughSymlink(Exception):
    """A directory lookup followed a symlink: the generic path handles (and re-authorises) it."""


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _open_dir(root: ExportRoot, relpath: str) -> int | None:
    """An ``O_PATH`` fd of directory ``relpath`` reached without any symlink, else None."""

    def refuse_links(real_relpath: str) -> None:
        raise _ThroughSymlink(real_relpath)

    def open_it(dir_fd: int, name: str) -> int:
        # A final symlink fails here with ENOTDIR (O_DIRECTORY|O_NOFOLLOW): never followed.
        return os.open("." if name == ROOT_NAME else name, _DIR_FLAGS, dir_fd=dir_fd)

    try:
        with guard_resolved_paths(refuse_links):
            return root.resolve(relpath, open_it, follow_final=False)
    except (_ThroughSymlink, OSError):
        return None


class LocalDirectoryCopier:
    """Copies files from one local export to another as the holder of ``auth()``'s token.

    ``authorize`` is the agent's access check (the one its RPC endpoint applies); ``caller`` names
    this process in the checks.
    """

    def __init__(
        self,
        source: LocalExportOps,
        source_export: str,
        target: LocalExportOps,
        target_export: str,
        authorize: Authorize,
        auth: Callable[[], str],
        *,
        caller: str,
    ) -> None:
        self._source, self._source_export = source, source_export
        self._target, self._target_export = target, target_export
        self._authorize = authorize
        self._auth = auth
        self._caller = caller

    def _allowed(self, export_name: str, op: str, relpaths: Sequence[str], is_write: bool) -> bool:
        call = RpcCall(op_path(export_name, op), self._caller, self._auth(), _NO_MESSAGE, math.inf)
        try:
            self._authorize(call, export_name, op, relpaths, is_write)
        except Exception:  # the generic path repeats the check per file and reports the refusal
            return False
        return True

    def copy_files(
        self,
        source_dir: str,
        target_dir: str,
        names: Sequence[str],
        *,
        skip_existing: bool,
        should_continue: Callable[[], bool],
        on_progress: Callable[[int], None] | None = None,
    ) -> list[FileOutcome]:
        """Copy ``source_dir/<name>`` to ``target_dir/<name>`` for each name (the target directory exists).

        Returns the outcomes of the files handled here, in order; a name without an outcome is left
        to the generic path (or was not reached because ``should_continue`` said stop).
        """
        if not names:
            return []
        source_paths = [_join(source_dir, name) for name in names]
        target_paths = [_join(target_dir, name) for name in names]
        temps = [temp_name(name) for name in names]
        temp_paths = [_join(target_dir, temp) for temp in temps]
        if not (
            self._allowed(self._source_export, "read_chunk", source_paths, False)
            and self._allowed(self._target_export, "session_open", temp_paths, True)
            and self._allowed(self._target_export, "rename", [*temp_paths, *target_paths], True)
            and (not skip_existing or self._allowed(self._target_export, "stat", target_paths, False))
        ):
            return []
        source_fd = _open_dir(self._source.root, source_dir)
        if source_fd is None:
            return []
        try:
            target_fd = _open_dir(self._target.root, target_dir)
            if target_fd is None:
                return []
            try:
                outcomes: list[FileOutcome] = []
                for name, temp, source_path in zip(names, temps, source_paths, strict=True):
                    if not should_continue():
                        break
                    try:
                        outcome = _copy_one(source_fd, target_fd, name, temp, skip_existing, on_progress)
                    except OSError as exc:
                        outcome = FileOutcome(name, error=with_filename(exc, source_path))
                    if outcome is None:
                        continue  # not handled here
                    outcomes.append(outcome)
                return outcomes
            finally:
                os.close(target_fd)
        finally:
            os.close(source_fd)


def _copy_one(
    source_dir_fd: int,
    target_dir_fd: int,
    name: str,
    temp: str,
    skip_existing: bool,
    on_progress: Callable[[int], None] | None,
) -> FileOutcome | None:
    """Copy one file; None when the generic path must handle it (a symlink or not a regular file)."""
    try:
        source_fd = os.open(name, _SOURCE_FLAGS, dir_fd=source_dir_fd)
    except FileNotFoundError:
        return FileOutcome(name, skipped=True)  # vanished since the scan
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None  # a symlink now: followed (and re-authorised) by the generic path
        raise
    try:
        before = os.fstat(source_fd)
        if not stat_module.S_ISREG(before.st_mode):
            return None
        if skip_existing and _same_on_target(target_dir_fd, name, before):
            return FileOutcome(name, skipped=True)
        wanted_mode = before.st_mode & COPIED_MODE_BITS
        temp_fd = os.open(temp, _TEMP_FLAGS, wanted_mode, dir_fd=target_dir_fd)
        try:
            try:
                copied = _copy_content(source_fd, temp_fd, before.st_size, on_progress)
                after = os.fstat(source_fd)
                if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                    raise OSError(errno.EAGAIN, "source changed while copying")
                if copied != before.st_size:
                    raise OSError(errno.EIO, f"size mismatch after copy: {copied} != {before.st_size}")
                if os.fstat(temp_fd).st_mode & 0o7777 != wanted_mode:  # the process umask removed bits
                    os.fchmod(temp_fd, wanted_mode)
                os.utime(temp_fd, ns=(before.st_atime_ns, before.st_mtime_ns))
            finally:
                os.close(temp_fd)
            os.rename(temp, name, src_dir_fd=target_dir_fd, dst_dir_fd=target_dir_fd)
        except BaseException:
            try:
                os.unlink(temp, dir_fd=target_dir_fd)
            except OSError:
                pass
            raise
        return FileOutcome(name, stat=FileStat.from_os(before))
    finally:
        os.close(source_fd)


def _same_on_target(target_dir_fd: int, name: str, source: os.stat_result) -> bool:
    try:
        existing = os.stat(name, dir_fd=target_dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (existing.st_size, existing.st_mtime_ns) == (source.st_size, source.st_mtime_ns)


def _copy_content(source_fd: int, target_fd: int, size: int, on_progress: Callable[[int], None] | None) -> int:
    """Copy ``size`` bytes (fewer if the source shrank); returns how many were copied."""
    offset = 0
    kernel_copy = size >= KERNEL_COPY_MIN_BYTES
    while offset < size:
        count = min(COPY_CHUNK_BYTES, size - offset)
        if kernel_copy:
            try:
                done = os.copy_file_range(source_fd, target_fd, count, offset, offset)
            except OSError as exc:
                if exc.errno not in _NO_KERNEL_COPY:
                    raise
                kernel_copy = False
                continue
        else:
            done = _pread_pwrite(source_fd, target_fd, count, offset)
        if done == 0:
            break
        offset += done
        if on_progress is not None:
            on_progress(done)
    return offset


def _pread_pwrite(source_fd: int, target_fd: int, count: int, offset: int) -> int:
    data = os.pread(source_fd, count, offset)
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.pwrite(target_fd, view[written:], offset + written)
    return len(data)


__all__ = ["COPIED_MODE_BITS", "COPY_CHUNK_BYTES", "TEMP_MARKER", "FileOutcome", "LocalDirectoryCopier", "temp_name"]
