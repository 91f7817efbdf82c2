"""The functions installed in place of ``os.*``, ``open``, ``shutil.rmtree`` and ``Path.touch``.

Each replacement asks the mount table about its path argument first; a path outside every mount
(or given relative to a ``dir_fd``, or a file descriptor) goes straight to the original function,
with the original's own argument checking and errors. Remote paths go to the mounted export. A
local path spelled through a mount (``mnt/sub/../../f``, a :class:`LocalRedirect`) goes to the
original function normalised, by :func:`call_redirected`.
Replacements are built per original by a factory ``factory(table, original) -> function``; they look up
``table.route`` on every call because the table re-specialises it whenever the mounts change.
"""

from __future__ import annotations

import errno
import functools
import io
import math
import operator
import os
import stat as stat_module
import sys
from collections.abc import Callable
from typing import Any

from fluxon_fs.patcher.errors import cross_device, not_supported, os_error
from fluxon_fs.patcher.mount_table import LocalRedirect, MountedPath, MountTable

Factory = Callable[[MountTable, Callable[..., Any]], Callable[..., Any]]


def _like(original: Callable[..., Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a replacement the original's name, docs and ``__wrapped__``."""
    return functools.wraps(original)


def call_redirected(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)`` with each :class:`LocalRedirect` argument replaced by its path.

    The one way a replacement serves a local path spelled through a mount: the local function sees
    the normalised path, and its errors name the caller's spelling, as the kernel's would.
    """
    redirects = [value for value in (*args, *kwargs.values()) if type(value) is LocalRedirect]
    try:
        return function(
            *[value.path if type(value) is LocalRedirect else value for value in args],
            **{key: value.path if type(value) is LocalRedirect else value for key, value in kwargs.items()},
        )
    except OSError as exc:
        for redirect in redirects:
            redirect.name_in(exc)
        raise


# -- metadata ------------------------------------------------------------------------------------


def replace_stat(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.stat`` (the hottest call: ``os.path.exists``/``isdir``/``getsize`` … use it)."""
    guard = table.local_guard

    @_like(real)
    def stat(path: Any, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> os.stat_result:
        if dir_fd is None:
            # MountTable.route's first test, inlined: the common local case skips a call.
            if type(path) is str and guard[0] not in path and guard[1] not in path:
                return real(path) if follow_symlinks else real(path, follow_symlinks=False)
            target = table.route(path)
            if target is not None:
                if isinstance(target, LocalRedirect):
                    return call_redirected(real, target, follow_symlinks=follow_symlinks)
                return target.export.stat_result(target, follow_symlinks)
            if follow_symlinks:
                return real(path)
        return real(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    return stat


def replace_lstat(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.lstat``."""
    guard = table.local_guard

    @_like(real)
    def lstat(path: Any, *, dir_fd: int | None = None) -> os.stat_result:
        if dir_fd is None:
            if type(path) is str and guard[0] not in path and guard[1] not in path:
                return real(path)
            target = table.route(path)
            if target is not None:
                if isinstance(target, LocalRedirect):
                    return call_redirected(real, target)
                return target.export.stat_result(target, False)
            return real(path)
        return real(path, dir_fd=dir_fd)

    return lstat


def replace_access(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.access`` (remote: judged from the owner permission bits)."""

    @_like(real)
    def access(
        path: Any, mode: int, *, dir_fd: int | None = None, effective_ids: bool = False, follow_symlinks: bool = True
    ) -> bool:
        if dir_fd is None:
            try:
                target = table.route(path)
            except OSError:  # a '..' out of a missing directory: access answers, it does not raise
                return False
            if target is not None:
                if isinstance(target, LocalRedirect):
                    return call_redirected(
                        real, target, mode, effective_ids=effective_ids, follow_symlinks=follow_symlinks
                    )
                return target.export.access(target, mode, follow_symlinks)
        return real(path, mode, dir_fd=dir_fd, effective_ids=effective_ids, follow_symlinks=follow_symlinks)

    return access


def replace_readlink(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.readlink``: ``EINVAL`` for a remote non-link (as locally), ``ENOTSUP`` for a remote link."""

    @_like(real)
    def readlink(path: Any, *, dir_fd: int | None = None) -> Any:
        if dir_fd is None:
            target = table.route(path)
            if isinstance(target, LocalRedirect):
                return call_redirected(real, target)
            if target is not None:
                if not stat_module.S_ISLNK(target.export.stat_result(target, False).st_mode):
                    raise os_error(errno.EINVAL, target.user_path)
                raise not_supported(target.user_path, "readlink")
            return real(path)
        return real(path, dir_fd=dir_fd)

    return readlink


# -- directories ---------------------------------------------------------------------------------


def replace_listdir(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.listdir``."""

    @_like(real)
    def listdir(path: Any = None) -> list[Any]:
        target = table.route("." if path is None else path)
        if target is not None:
            if isinstance(target, LocalRedirect):
                return call_redirected(real, target)
            return target.export.listdir(target)
        return real(path)

    return listdir


def replace_scandir(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.scandir``."""

    @_like(real)
    def scandir(path: Any = None) -> Any:
        target = table.route("." if path is None else path)
        if target is not None:
            if isinstance(target, LocalRedirect):
                return call_redirected(real, target)
            return target.export.scandir(target, "." if path is None else target.user_path)
        return real(path)

    return scandir


def replace_mkdir(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.mkdir`` (``os.makedirs`` is built on it)."""

    @_like(real)
    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if dir_fd is None:
            target = table.route(path)
            if target is not None:
                if isinstance(target, LocalRedirect):
                    return call_redirected(real, target, mode)
                return target.export.mkdir(target, mode)
            return real(path, mode)
        return real(path, mode, dir_fd=dir_fd)

    return mkdir


def _replace_removal(method: str) -> Factory:
    def factory(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:

        @_like(real)
        def remove(path: Any, *, dir_fd: int | None = None) -> None:
            if dir_fd is None:
                target = table.route(path)
                if target is not None:
                    if isinstance(target, LocalRedirect):
                        return call_redirected(real, target)
                    return getattr(target.export, method)(target)
                return real(path)
            return real(path, dir_fd=dir_fd)

        return remove

    factory.__doc__ = f"``os.{method}``-like removal."
    return factory


replace_rmdir = _replace_removal("rmdir")
replace_unlink = _replace_removal("unlink")


def replace_rename(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.rename``/``os.replace``: within one mount; across a mount boundary ``EXDEV``."""

    @_like(real)
    def rename(src: Any, dst: Any, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        source = destination = None
        try:
            source = table.route(src) if src_dir_fd is None else None
            destination = table.route(dst) if dst_dir_fd is None else None
        except OSError as exc:  # a '..' after a missing directory
            raise _rename_error(exc, source, src, dst) from None
        if source is None and destination is None:
            if src_dir_fd is None and dst_dir_fd is None:
                return real(src, dst)
            return real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        if not isinstance(source, MountedPath) and not isinstance(destination, MountedPath):
            return call_redirected(
                real,
                src if source is None else source,
                dst if destination is None else destination,
                src_dir_fd=src_dir_fd,
                dst_dir_fd=dst_dir_fd,
            )
        if (
            not isinstance(source, MountedPath)
            or not isinstance(destination, MountedPath)
            or source.export is not destination.export
        ):
            raise cross_device(_spelled(src), _spelled(dst))
        return source.export.rename(source, destination)

    return rename


def _rename_error(exc: OSError, source: MountedPath | LocalRedirect | None, src: Any, dst: Any) -> OSError:
    """The error of a rename whose path failed to resolve, naming both paths. Like the kernel, which
    resolves the source's directory before the destination's, a bad source directory wins."""
    parent = source.relpath.rpartition("/")[0] if isinstance(source, MountedPath) else ""
    if isinstance(source, MountedPath) and parent:
        try:
            source.export.require_directory(parent, source.user_path)
        except OSError as source_exc:
            exc = source_exc
    return os_error(exc.errno or errno.ENOENT, _spelled(src), _spelled(dst), exc.strerror)


# -- attributes ----------------------------------------------------------------------------------


def replace_chmod(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.chmod``."""

    @_like(real)
    def chmod(path: Any, mode: int, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> None:
        if dir_fd is None:
            target = table.route(path)
            if target is not None:
                if isinstance(target, LocalRedirect):
                    return call_redirected(real, target, mode, follow_symlinks=follow_symlinks)
                return target.export.chmod(target, mode, follow_symlinks)
            if follow_symlinks:
                return real(path, mode)
        return real(path, mode, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    return chmod


def replace_utime(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.utime``."""

    @_like(real)
    def utime(
        path: Any,
        times: Any = None,
        *,
        ns: Any = None,
        dir_fd: int | None = None,
        follow_symlinks: bool = True,
    ) -> None:
        if dir_fd is None:
            target = table.route(path)
            if target is not None:
                if isinstance(target, LocalRedirect):  # the local call below, on the normalised path
                    return call_redirected(utime, target, times, ns=ns, follow_symlinks=follow_symlinks)
                return target.export.utime(target, utime_ns(times, ns), follow_symlinks)
        if ns is None:
            return real(path, times, dir_fd=dir_fd, follow_symlinks=follow_symlinks)
        return real(path, times, ns=ns, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    return utime


def utime_ns(times: Any, ns: Any) -> tuple[int, int] | None:
    """``os.utime``'s ``times``/``ns`` arguments as nanoseconds (same checks and rounding as CPython)."""
    if times is not None and ns is not None:
        raise ValueError("utime: you may specify either 'times' or 'ns' but not both")
    if times is not None:
        if not isinstance(times, tuple) or len(times) != 2:
            raise TypeError("utime: 'times' must be either a tuple of two ints or None")
        return _seconds_to_ns(times[0]), _seconds_to_ns(times[1])
    if ns is not None:
        if not isinstance(ns, tuple) or len(ns) != 2:
            raise TypeError("utime: 'ns' must be a tuple of two ints")
        return operator.index(ns[0]), operator.index(ns[1])
    return None


def _seconds_to_ns(value: Any) -> int:
    if isinstance(value, float):
        fraction, whole = math.modf(value)
        return int(whole) * 1_000_000_000 + math.floor(fraction * 1e9)
    return operator.index(value) * 1_000_000_000


def replace_truncate(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.truncate`` of a path."""

    @_like(real)
    def truncate(path: Any, length: int) -> None:
        target = table.route(path)
        if target is not None:
            if isinstance(target, LocalRedirect):
                return call_redirected(real, target, length)
            return target.export.truncate(target, operator.index(length))
        return real(path, length)

    return truncate


# -- files ---------------------------------------------------------------------------------------


def replace_open(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``builtins.open``/``io.open``."""

    @_like(real)
    def open(
        file: Any,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        closefd: bool = True,
        opener: Any = None,
    ) -> Any:
        target = table.route(file)
        if target is not None:
            if isinstance(target, LocalRedirect):  # the local branch below (cache rules too), normalised
                opened = call_redirected(open, target, mode, buffering, encoding, errors, newline, closefd, opener)
                _show_name(opened, target.user_path)
                return opened
            return target.export.open(target, file, mode, buffering, encoding, errors, newline, closefd, opener)
        rules = table.local_rules
        if rules is not None and opener is None and closefd:
            text_args = {"buffering": buffering, "encoding": encoding, "errors": errors, "newline": newline}
            handled = rules.open_local(file, mode, text_args, real)
            if handled is not None:
                return handled
        return real(file, mode, buffering, encoding, errors, newline, closefd, opener)

    return open


def replace_os_open(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.open``: remote files have no descriptors (``ENOTSUP``; use ``open()``)."""

    @_like(real)
    def open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None:
            target = table.route(path)
            if target is not None:
                if isinstance(target, LocalRedirect):  # the local branch below (cache rules too), normalised
                    return call_redirected(open, target, flags, mode)
                raise not_supported(target.user_path, "os.open: remote files have no descriptor, use open()")
            fd = real(path, flags, mode)
            rules = table.local_rules
            if rules is not None:
                rules.opened_fd(fd, path, flags)
            return fd
        return real(path, flags, mode, dir_fd=dir_fd)

    return open


def replace_os_close(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.close``: a descriptor opened for writing under a local cache rule publishes its file."""

    @_like(real)
    def close(fd: int) -> None:
        real(fd)
        rules = table.local_rules
        if rules is not None:
            rules.closed_fd(fd)

    return close


# -- working directory ---------------------------------------------------------------------------


def replace_chdir(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.chdir``: keeps the table's view of the working directory current."""

    @_like(real)
    def chdir(path: Any) -> None:
        target = table.route(path)
        if isinstance(target, MountedPath) and target.relpath:
            raise not_supported(target.user_path, "chdir below the root of a mount")
        call_redirected(real, target if isinstance(target, LocalRedirect) else path)
        table.refresh_cwd()

    return chdir


def replace_fchdir(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``os.fchdir``: keeps the table's view of the working directory current."""

    @_like(real)
    def fchdir(fd: Any) -> None:
        real(fd)
        table.refresh_cwd()

    return fchdir


# -- refused on a mount --------------------------------------------------------------------------


def refuse_on_mount(path_params: tuple[tuple[int, str], ...], fd_params: tuple[str, ...] = ()) -> Factory:
    """A factory for functions a mount cannot serve: ``ENOTSUP`` when a path argument is remote.

    ``path_params`` are (position, keyword) of the path arguments; ``fd_params`` the keywords that
    make the paths relative to a local directory descriptor.
    """

    def factory(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:

        @_like(real)
        def refused(*args: Any, **kwargs: Any) -> Any:
            if any(kwargs.get(name) is not None for name in fd_params):
                return real(*args, **kwargs)
            redirected = False
            for position, keyword in path_params:
                value = args[position] if position < len(args) else kwargs.get(keyword)
                target = table.route(value) if value is not None else None
                if isinstance(target, MountedPath):
                    raise not_supported(target.user_path, real.__name__)
                if target is not None:
                    if position < len(args):
                        args = (*args[:position], target, *args[position + 1 :])
                    else:
                        kwargs[keyword] = target
                    redirected = True
            return call_redirected(real, *args, **kwargs) if redirected else real(*args, **kwargs)

        return refused

    return factory


# -- shutil and pathlib --------------------------------------------------------------------------


def replace_rmtree(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``shutil.rmtree``: on a mount the path-based walk (the fd-based one needs descriptors)."""

    @_like(real)
    def rmtree(
        path: Any, ignore_errors: bool = False, onerror: Any = None, *, dir_fd: int | None = None, **more: Any
    ) -> None:
        try:  # a local path spelled through a mount is removed by the standard walk: its calls redirect
            mounted = dir_fd is None and isinstance(table.route(path), MountedPath)
        except OSError:  # a '..' after a missing directory: let the walk report it through onerror
            mounted = True
        if not mounted:
            return real(path, ignore_errors, onerror, dir_fd=dir_fd, **more)
        sys.audit("shutil.rmtree", path, dir_fd)
        return remove_tree_by_path(path, ignore_errors, onerror, more.get("onexc"))

    return rmtree


def remove_tree_by_path(path: Any, ignore_errors: bool, onerror: Any, onexc: Any) -> None:
    """``shutil.rmtree`` without descriptors; errors are handled like the standard one does."""

    def handle(func: Callable[..., Any], failed_path: Any, exc: OSError) -> None:
        if ignore_errors:
            return
        if onexc is not None:
            onexc(func, failed_path, exc)
        elif onerror is not None:
            onerror(func, failed_path, (type(exc), exc, exc.__traceback__))
        else:
            raise exc

    try:
        if os.path.islink(path):
            raise OSError("Cannot call rmtree on a symbolic link")
    except OSError as exc:
        handle(os.path.islink, path, exc)
        return
    _remove_below(path, handle)


def _remove_below(path: Any, handle: Callable[[Callable[..., Any], Any, OSError], None]) -> None:
    try:
        with os.scandir(path) as listing:
            entries = list(listing)
    except OSError as exc:
        handle(os.scandir, path, exc)
        entries = []
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            _remove_below(entry.path, handle)
        else:
            try:
                os.unlink(entry.path)
            except OSError as exc:
                handle(os.unlink, entry.path, exc)
    try:
        os.rmdir(path)
    except OSError as exc:
        handle(os.rmdir, path, exc)


def replace_touch(table: MountTable, real: Callable[..., Any]) -> Callable[..., Any]:
    """``pathlib.Path.touch`` (the standard one creates files through ``os.open``)."""

    @_like(real)
    def touch(self: Any, mode: int = 0o666, exist_ok: bool = True) -> None:
        target = table.route(self)
        if not isinstance(target, MountedPath):  # local: the standard touch's os calls redirect if needed
            return real(self, mode, exist_ok)
        return target.export.touch(target, mode, exist_ok)

    return touch


def _show_name(file: Any, name: Any) -> None:
    """Give a local file opened under a normalised path the caller's spelling as ``name``, like ``open``."""
    raw = getattr(file, "buffer", file)
    raw = getattr(raw, "raw", raw)
    if isinstance(raw, io.FileIO):
        raw.name = name


def _spelled(path: Any) -> Any:
    try:
        return os.fspath(path)
    except TypeError:
        return path
