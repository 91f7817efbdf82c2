"""Which local directories are mounts, and the hot check that sends a path there or lets it pass.

Paths are matched lexically: ``os.path.normpath`` of the absolute path, never ``realpath``. A path
reaching into a mount becomes a :class:`MountedPath` (export-relative, ``/``-separated, ``""`` for
the mount root). A path that goes below a mount and climbs back out with ``..`` becomes a
:class:`LocalRedirect`: the local call must get its normalised spelling, because the kernel would
walk the (empty) local mount directory. Each component a ``..`` climbs out of is checked first, as
the kernel's walk would (remote ones on the export). Every call of an intercepted function asks
:meth:`MountTable.route` first, so its common case — a path outside every mount — costs a type
check and one substring test (no ``normpath``, no ``realpath``, no system call).
"""

from __future__ import annotations

import errno
import itertools
import os
import posixpath
import stat as stat_module
import threading
from collections.abc import Callable
from typing import Any, Protocol

from fluxon_fs.export.ops import ExportOps
from fluxon_fs.patcher.content_cache import PieceCache
from fluxon_fs.patcher.errors import os_error
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.patcher.options import MountOptions

# Synthetic st_dev numbers for mounts: far above real device numbers, distinct per mount, so
# samefile/samestat never confuse a remote file with a local one or with another mount's.
_DEVICE_BASE = 0x7F1F_0000_0000
_device_numbers = itertools.count(1)
# The original: this module's globals are never swapped, so the check of a local directory before a
# '..' does not go through the replacement (and its routing) again.
_local_stat = os.stat


class MountedPath:
    """A path that lies in a mount: the export, the export-relative path and the caller's spelling."""

    __slots__ = ("export", "must_be_dir", "relpath", "user_path")

    def __init__(self, export: MountedExport, relpath: str, user_path: str | bytes, must_be_dir: bool) -> None:
        self.export = export
        self.relpath = relpath
        self.user_path = user_path
        """``os.fspath`` of the argument, used in error messages like a local call would."""
        self.must_be_dir = must_be_dir
        """The caller wrote a trailing ``/`` (or ``/.``): a non-directory is ``ENOTDIR``."""

    @property
    def is_bytes(self) -> bool:
        """The caller passed a bytes path (listings answer in bytes then)."""
        return isinstance(self.user_path, bytes)

    def __repr__(self) -> str:
        return f"MountedPath({self.export.export_name!r}, {self.relpath!r}, user_path={self.user_path!r})"


class LocalRedirect:
    """A local path spelled through a mount: it goes below a mount directory and climbs out with ``..``.

    The local call gets :attr:`path` instead of the caller's spelling (the kernel would walk the
    empty local mount directory and fail). The components climbed through were checked already.
    """

    __slots__ = ("path", "user_path")

    def __init__(self, path: str | bytes, user_path: str | bytes) -> None:
        self.path = path
        """The normalised absolute path, bytes when the caller's path was."""
        self.user_path = user_path
        """``os.fspath`` of the argument: what the local call's errors name."""

    def name_in(self, exc: OSError) -> None:
        """Make ``exc``, raised by the local call on :attr:`path`, name the caller's spelling instead."""
        if exc.filename == self.path:
            exc.filename = self.user_path
        if exc.filename2 == self.path:
            exc.filename2 = self.user_path

    def __repr__(self) -> str:
        return f"LocalRedirect({self.path!r}, user_path={self.user_path!r})"


Routed = MountedPath | LocalRedirect | None
"""What :meth:`MountTable.route` answers: remote, local under another spelling, or local as it is."""


class LocalRules(Protocol):
    """What the patched ``open``/``os.open``/``os.close`` ask about local paths under cache rules."""

    def open_local(self, file: Any, mode: str, text_args: dict[str, Any], real_open: Callable[..., Any]) -> Any:
        """A file object for ``file`` under a rule, or None to open it normally."""
        ...

    def opened_fd(self, fd: int, path: Any, flags: int) -> None:
        """``os.open`` returned ``fd`` for ``path``."""
        ...

    def closed_fd(self, fd: int) -> None:
        """``os.close(fd)`` happened."""
        ...


class MountTable:
    """The mounts of this process (FS.md §2). Thread-safe; lookups take no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exports: dict[str, MountedExport] = {}
        self._cwd_near_mount = False
        self.local_guard = ["", ""]
        """A str path containing neither ``local_guard[0]`` nor ``local_guard[1]`` is outside every mount
        (an empty entry disables the shortcut). For replacements that inline :meth:`route`'s first test."""
        self.local_rules: LocalRules | None = None
        """Local cache rules (``fluxon_fs.cache.rules``) applied to paths outside every mount, or None."""
        self._publish({})

    # -- mounting -------------------------------------------------------------------------------

    def mount(
        self,
        local_mount_dir_abs: str,
        ops: ExportOps,
        export_name: str,
        *,
        piece_cache: PieceCache | None = None,
        options: MountOptions | None = None,
    ) -> MountedExport:
        """Make ``local_mount_dir_abs`` show the export served by ``ops``.

        Rules (each violation is a ``ValueError`` naming the rule): the path is absolute and not
        ``/``; it does not overlap (equal, inside, contain) another mount of this process; it is
        created if missing and must be an empty directory if it exists.
        """
        mount_dir = _check_mount_dir_spelling(local_mount_dir_abs)
        with self._lock:
            for other in self._exports:
                if mount_dir == other or _inside(mount_dir, other) or _inside(other, mount_dir):
                    raise ValueError(
                        f"local_mount_dir_abs {mount_dir!r} overlaps the existing mount {other!r}: "
                        "a mount must not be equal to, inside, or contain another mount of this process"
                    )
            _prepare_mount_dir(mount_dir)
            export = MountedExport(
                mount_dir=mount_dir,
                export_name=export_name,
                ops=ops,
                piece_cache=piece_cache,
                options=options or MountOptions(),
                device=_DEVICE_BASE + next(_device_numbers),
            )
            exports = dict(self._exports)
            exports[mount_dir] = export
            self._publish(exports)
        return export

    def unmount(self, local_mount_dir_abs: str) -> MountedExport:
        """Remove a mount; its directory stays (empty) on the local disk. ``ValueError`` if not mounted."""
        mount_dir = posixpath.normpath(os.fspath(local_mount_dir_abs)) if local_mount_dir_abs else ""
        with self._lock:
            exports = dict(self._exports)
            export = exports.pop(mount_dir, None)
            if export is None:
                mounted = ", ".join(sorted(self._exports)) or "none"
                raise ValueError(f"{local_mount_dir_abs!r} is not a mount of this process (mounts: {mounted})")
            self._publish(exports)
        return export

    def exports(self) -> dict[str, MountedExport]:
        """Current mounts by local mount directory."""
        return dict(self._exports)

    def refresh_cwd(self) -> None:
        """Re-read the working directory (after ``chdir``): decides whether relative paths need a full check."""
        with self._lock:
            self._publish(self._exports)

    def _publish(self, exports: dict[str, MountedExport]) -> None:
        self._exports = exports
        self._cwd_near_mount = _cwd_near(tuple(exports))
        self.route = self._make_route()  # type: ignore[method-assign]

    # -- routing --------------------------------------------------------------------------------

    def route(self, path: Any) -> Routed:
        """The mount target of ``path``, or None when it is not under a mount (or not a path at all).

        A :class:`LocalRedirect` for a path that is local but passes below a mount on the way.
        ``OSError`` (on the caller's path) when a component a ``..`` climbs out of is missing or not a
        directory, as from the kernel's walk.

        Replaced per instance by a closure specialised for the current mounts (see ``_publish``).
        """
        return None

    def _make_route(self) -> Callable[[Any], Routed]:
        relative_stays_local = not self._cwd_near_mount
        if not self._exports:
            self.local_guard[:] = ["\0", "\0"]  # NUL is in no valid path
            return _no_mount
        mount_dirs = tuple(self._exports)
        shared = _longest_shared_component(mount_dirs)
        tokens = (shared,) if shared else tuple(_longest_shared_component((d,)) for d in mount_dirs)
        # Without a shared token nothing is certain; with the cwd near a mount, relative paths are not.
        self.local_guard[:] = [shared, ".." if relative_stays_local else ""] if shared else ["", ""]
        resolve = self._resolve

        def route(path: Any) -> Routed:
            # Every normalised path inside a mount contains each component of the mount directory:
            # an absolute path holding no such token is local. A relative path without ``..`` stays
            # below the working directory, which is nowhere near a mount.
            text = path if type(path) is str else _as_str(path)
            if not text:
                return None  # not a path, or "" (the local call reports it)
            if text[:1] == "/":
                for token in tokens:
                    if token in text:
                        break
                else:
                    return None
            elif relative_stays_local and ".." not in text:
                return None
            return resolve(text, path)

        return route

    def _resolve(self, p: str, original: Any) -> Routed:
        if p[0] != "/":
            try:
                p = posixpath.join(os.getcwd(), p)
            except OSError:  # the working directory was removed; the local call will report it
                return None
        if "/.." in p:
            return self._resolve_dot_dot(p, original)
        normal = posixpath.normpath(p) if ("/." in p or "//" in p or p.endswith("/")) else p
        if normal.startswith("//"):
            normal = "/" + normal.lstrip("/")
        located = self._locate(normal)
        if located is None:
            return None
        return MountedPath(located[0], located[1], _spelled(original), p.endswith(("/", "/.")))

    def _locate(self, normal: str) -> tuple[MountedExport, str] | None:
        """The export and export-relative path of a normalised absolute path, if it is in a mount."""
        for mount_dir, export in self._exports.items():
            if normal == mount_dir:
                return export, ""
            if normal.startswith(mount_dir) and normal[len(mount_dir)] == "/":
                return export, normal[len(mount_dir) + 1 :]
        return None

    def _resolve_dot_dot(self, p: str, original: Any) -> Routed:
        """Route an absolute path with ``..`` components, checking what they climb out of.

        ``..`` needs the component before it to be a directory, as in the kernel's walk: collapsing
        it lexically would let ``mnt/missing/../f`` name ``mnt/f``. A path that never goes below a
        mount directory is left to the kernel as it is (None); otherwise every directory a ``..``
        climbs out of is checked in walk order — on the export (metadata cache) inside a mount, with
        ``stat`` outside — and a failure raised as the local call would (``ENOENT``/``ENOTDIR`` on
        the caller's path).
        """
        components: list[str] = []
        climbed: list[str] = []
        for part in p.split("/"):
            if part in ("", "."):
                continue
            if part != "..":
                components.append(part)
            elif components:
                climbed.append("/" + "/".join(components))
                components.pop()
        normal = "/" + "/".join(components)
        located = self._locate(normal)
        below_mount = [self._locate(directory) for directory in climbed]
        if located is None and not any(place is not None and place[1] for place in below_mount):
            return None  # the kernel resolves it like a local path: no component below a mount
        user_path = _spelled(original)
        for directory, place in zip(climbed, below_mount, strict=True):
            if place is None:
                _require_local_directory(directory, user_path)
            elif place[1]:
                place[0].require_directory(place[1], user_path)
        must_be_dir = p.endswith(("/", "/."))
        if located is not None:
            return MountedPath(located[0], located[1], user_path, must_be_dir)
        local = normal + "/" if must_be_dir and normal != "/" else normal
        return LocalRedirect(os.fsencode(local) if isinstance(user_path, bytes) else local, user_path)


def _require_local_directory(directory: str, user_path: Any) -> None:
    """Raise ``ENOENT``/``ENOTDIR`` (on ``user_path``) unless the local ``directory`` is one."""
    try:
        mode = _local_stat(directory).st_mode
    except OSError as exc:
        raise os_error(exc.errno or errno.ENOENT, user_path) from None
    if not stat_module.S_ISDIR(mode):
        raise os_error(errno.ENOTDIR, user_path)


def _spelled(original: Any) -> Any:
    return original if type(original) in (str, bytes) else os.fspath(original)


def _no_mount(path: Any) -> None:
    return None


def _longest_shared_component(mount_dirs: tuple[str, ...]) -> str:
    """The longest path component every mount directory has ("" when they share none)."""
    shared = set(mount_dirs[0].strip("/").split("/"))
    for mount_dir in mount_dirs[1:]:
        shared &= set(mount_dir.strip("/").split("/"))
    return max(shared, key=len, default="")


def _as_str(path: Any) -> str | None:
    """``path`` as a str path, or None for file descriptors and non-paths (the local call decides)."""
    if type(path) is int:
        return None
    try:
        value = os.fspath(path)
    except TypeError:
        return None
    if isinstance(value, bytes):
        return os.fsdecode(value)
    return value


def _inside(path: str, directory: str) -> bool:
    return path.startswith(directory) and path[len(directory)] == "/"


def _cwd_near(mount_dirs: tuple[str, ...]) -> bool:
    """Whether a relative path without dot components could reach a mount from the working directory."""
    if not mount_dirs:
        return False
    try:
        cwd = os.getcwd()
    except OSError:
        return True  # unknown: check every relative path in full
    return any(cwd == d or _inside(cwd, d) or cwd == "/" or _inside(d, cwd) for d in mount_dirs)


def _check_mount_dir_spelling(local_mount_dir_abs: Any) -> str:
    if not isinstance(local_mount_dir_abs, str):
        raise ValueError(f"local_mount_dir_abs must be a str path, got {local_mount_dir_abs!r}")
    if not posixpath.isabs(local_mount_dir_abs):
        raise ValueError(f"local_mount_dir_abs must be an absolute path, got {local_mount_dir_abs!r}")
    mount_dir = posixpath.normpath(local_mount_dir_abs)
    if mount_dir.startswith("//"):
        mount_dir = "/" + mount_dir.lstrip("/")
    if mount_dir == "/":
        raise ValueError("local_mount_dir_abs must not be '/'")
    return mount_dir


def _prepare_mount_dir(mount_dir: str) -> None:
    if not os.path.lexists(mount_dir):
        os.makedirs(mount_dir, exist_ok=True)
        return
    if not os.path.isdir(mount_dir):
        raise ValueError(f"local_mount_dir_abs {mount_dir!r} exists and is not a directory")
    if os.listdir(mount_dir):
        raise ValueError(f"local_mount_dir_abs {mount_dir!r} exists and is not empty; a mount directory must be empty")


_process_table = MountTable()


def process_mount_table() -> MountTable:
    """The mount table of this process (mounts must not overlap within a process)."""
    return _process_table
