"""The one path-confinement helper: export-relative paths resolved beneath an export root.

Every lookup walks the path one component at a time from an ``O_PATH`` directory fd of the
export root, opening each directory with ``O_NOFOLLOW`` relative to its parent fd. Nothing is
ever resolved by string prefix or ``realpath``, so a component swapped for a symlink between
two steps cannot redirect the walk: the kernel refuses to follow it and the walker re-reads it.

Symlinks found on the way are followed by hand, and only while they stay inside the root:

* the link is read with ``readlink`` relative to its directory fd;
* an absolute target is refused (``PermissionError``/``EACCES``);
* a relative target is spliced in front of the remaining components and resolved from the link's
  directory; its ``..`` components step back along the directories already opened, and a ``..``
  above the root is refused (``PermissionError``/``EACCES``);
* more than :data:`MAX_SYMLINKS` links in one lookup raise ``OSError(ELOOP)`` like the kernel does.

Caller paths are ``/``-separated, relative, ``""`` for the root. ``"."`` components, empty
components (``a//b``) and a trailing ``/`` are dropped (the path is normalised as
``os.path.normpath`` would, without ever collapsing ``..``); a ``..`` component or a leading
``/`` is refused with ``PermissionError(EACCES)``; a NUL byte raises ``ValueError`` (as ``os.stat``
does). Every ``OSError`` raised from a lookup names the caller's export-relative path.

The string-level rules live in :mod:`fluxon_core.relpath`: paths that arrive in requests (a
transfer job's source folder and target prefix, a pre-scan's skip entries, a scope prefix) are
checked there by the same :func:`~fluxon_core.relpath.split_relpath` before any lookup.

Known limit shared with every fd-anchored resolver (``openat2(RESOLVE_BENEATH)`` included):
someone who can move a directory from inside the export to outside it while a lookup holds it
open can make that one lookup finish outside; they already have write access to both places.
"""

from __future__ import annotations

import errno
import os
import stat as stat_module
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

from fluxon_core.relpath import escape_error, split_relpath

T = TypeVar("T")

MAX_SYMLINKS = 40
"""Symlinks followed in one lookup before ``ELOOP`` (the Linux kernel's limit)."""

_DIR_WALK_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
ROOT_NAME = "."
"""The final name handed to actions addressing the directory fd itself (the export root or a
directory reached through a ``..`` link)."""


def with_filename(exc: OSError, relpath: str, relpath2: str | None = None) -> OSError:
    """A copy of ``exc`` (same class and errno) whose filename is the export-relative path.

    Only the built-in OSError classes are renamed; other errors (an access check's
    ``PermissionDeniedError``) pass unchanged.
    """
    if exc.errno is None or type(exc).__module__ != "builtins":
        return exc
    if relpath2 is None:
        renamed = type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), relpath)
    else:
        renamed = type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), relpath, None, relpath2)
    renamed.__traceback__ = exc.__traceback__
    return renamed


class ExportRoot:
    """An open export root directory; every path under it is resolved through :meth:`resolve`.

    The root directory path itself is configuration (trusted) and may contain symlinks; it is
    opened once and all later lookups are anchored on that fd. Thread-safe: lookups share only
    the read-only root fd.
    """

    def __init__(self, root_dir: str) -> None:
        if not os.path.isabs(root_dir):
            raise ValueError(f"export root must be an absolute path, got {root_dir!r}")
        self.root_dir = root_dir
        self._root_fd: int | None = os.open(root_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    @property
    def root_fd(self) -> int:
        """The ``O_PATH`` fd of the root; ``ValueError`` after :meth:`close`."""
        if self._root_fd is None:
            raise ValueError(f"export root {self.root_dir!r} is closed")
        return self._root_fd

    def close(self) -> None:
        """Release the root fd; idempotent."""
        fd, self._root_fd = self._root_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> ExportRoot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def resolve(self, relpath: str, action: Callable[[int, str], T], *, follow_final: bool) -> T:
        """Run ``action(dir_fd, name)`` on the final component of ``relpath`` inside the root.

        ``dir_fd`` is the confined parent directory (valid only during the call) and ``name`` a
        single component, or :data:`ROOT_NAME` when the path resolves to a directory fd itself.
        With ``follow_final`` the action must not follow a symlink itself (use ``O_NOFOLLOW``,
        ``follow_symlinks=False``) and must raise ``OSError(ELOOP)`` when it meets one: the
        walker then reads the link and continues from its target. Without ``follow_final`` the
        action runs on the last component as named. Errors name ``relpath``.

        When a symlink was followed and a :func:`guard_resolved_paths` check is active, the check
        gets the real export-relative path before every action attempt.
        """
        pending = deque(split_relpath(relpath))
        opened: list[int] = []
        walked: list[str] = []  # names of the opened directories: the real path so far
        links_followed = 0
        guard = _resolved_path_guard.get()
        try:
            while True:
                current = opened[-1] if opened else self.root_fd
                if not pending:
                    if guard is not None and links_followed:
                        guard("/".join(walked))
                    return action(current, ROOT_NAME)
                name = pending.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    # Only link targets contain '..'; step back along the directories we opened.
                    if not opened:
                        raise escape_error(relpath, "a symlink target leads above the root")
                    os.close(opened.pop())
                    walked.pop()
                    continue
                if not pending:
                    if guard is not None and links_followed:
                        guard("/".join([*walked, name]))
                    if not follow_final:
                        return action(current, name)
                    try:
                        return action(current, name)
                    except OSError as exc:
                        if exc.errno != errno.ELOOP:
                            raise
                        target = _read_link_or_raise(current, name, exc)
                else:
                    try:
                        opened.append(os.open(name, _DIR_WALK_FLAGS, dir_fd=current))
                        walked.append(name)
                        continue
                    except OSError as exc:
                        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                            raise
                        target = _read_link_or_raise(current, name, exc)
                links_followed += 1
                if links_followed > MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), relpath)
                if target.startswith("/"):
                    raise escape_error(relpath, f"symlink {name!r} has an absolute target")
                pending.extendleft(reversed(target.split("/")))
        except OSError as exc:
            raise with_filename(exc, relpath) from None
        finally:
            for fd in opened:
                os.close(fd)


_resolved_path_guard: ContextVar[Callable[[str], object] | None] = ContextVar(
    "fluxon_fs_resolved_path_guard", default=None
)


class guard_resolved_paths:  # lower case: used like the function it replaced, ``with guard_resolved_paths(check):``
    """Within this context, a lookup that followed a symlink calls ``check(real_relpath)`` before acting.

    Access rules are about paths; a symlink inside the export can lead from a path the caller may
    use to one it may not. ``check`` raises to refuse. It runs inside the walk, on the directory
    fds the action will use, so swapping a link afterwards cannot redirect an approved lookup.
    (A class rather than a generator context manager: every request of an agent enters one.)
    """

    __slots__ = ("_check", "_token")

    def __init__(self, check: Callable[[str], object]) -> None:
        self._check = check

    def __enter__(self) -> None:
        self._token = _resolved_path_guard.set(self._check)

    def __exit__(self, *exc_info: object) -> None:
        _resolved_path_guard.reset(self._token)


def _read_link_or_raise(dir_fd: int, name: str, original: OSError) -> str:
    """The target of symlink ``name``; re-raise ``original`` when it is not a symlink (any more)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        raise original from None


def lstat_no_link(dir_fd: int, name: str) -> os.stat_result:
    """``lstat`` of ``name`` that raises ``ELOOP`` for a symlink (a ``resolve`` action that follows)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat_module.S_ISLNK(st.st_mode):
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
    return st


def open_no_link(dir_fd: int, name: str, flags: int, mode: int = 0o777) -> int:
    """``open`` of ``name`` under ``dir_fd`` that never follows a final symlink (``ELOOP`` instead)."""
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)


def open_inode_path(dir_fd: int, name: str) -> int:
    """An ``O_PATH`` fd of the non-symlink inode ``name`` (``ELOOP`` when ``name`` is a symlink).

    Used for metadata changes (chmod/utime) without needing read or write permission on the
    inode, exactly like the local calls; the change itself goes through ``/proc/self/fd``.
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if stat_module.S_ISLNK(os.stat(fd).st_mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP))
    except BaseException:
        os.close(fd)
        raise
    return fd
