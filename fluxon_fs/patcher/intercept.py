"""Install the replacements of :mod:`~fluxon_fs.patcher.replacements`, process-wide and ref-counted.

``install()`` replaces ``builtins.open``/``io.open``, the ``os`` functions, ``shutil.rmtree`` and
``pathlib.Path.touch``, and also every module-level alias already bound in a loaded module
(``from os import stat``): any module global that *is* an original becomes its replacement. The
``os.supports_*`` sets learn the replacements so capability checks keep answering the same.
``uninstall()`` puts every original back — including aliases bound meanwhile by modules imported
while installed — so afterwards each global is the original object again. ``posix``/``_io``
(the implementation modules the import system uses directly) are left alone.

``pathlib``, ``os.path``, ``os.walk``, ``os.makedirs``, ``glob`` and ``shutil.copy*`` need no
replacement of their own: they look up ``os.stat``, ``os.scandir`` … on the ``os`` module at call time.
"""

from __future__ import annotations

import builtins
import os
import pathlib
import shutil
import sys
import threading
import types
from types import TracebackType
from typing import Any, ClassVar

import attrs

from fluxon_fs.patcher import replacements as r
from fluxon_fs.patcher.mount_table import MountTable, process_mount_table

_LEFT_ALONE_MODULES = frozenset({"posix", "nt", "_io"})
_OWN_PACKAGE = "fluxon_fs.patcher"
_module_namespace = types.ModuleType.__dict__["__dict__"].__get__  # bypasses lazy-module __getattribute__
_SUPPORT_SETS = ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids")

_refused_xattr = r.refuse_on_mount(((0, "path"),))
_REPLACED_OS_FUNCTIONS: tuple[tuple[str, r.Factory], ...] = (
    ("stat", r.replace_stat),
    ("lstat", r.replace_lstat),
    ("access", r.replace_access),
    ("readlink", r.replace_readlink),
    ("listdir", r.replace_listdir),
    ("scandir", r.replace_scandir),
    ("mkdir", r.replace_mkdir),
    ("rmdir", r.replace_rmdir),
    ("unlink", r.replace_unlink),
    ("remove", r.replace_unlink),
    ("rename", r.replace_rename),
    ("replace", r.replace_rename),
    ("chmod", r.replace_chmod),
    ("utime", r.replace_utime),
    ("truncate", r.replace_truncate),
    ("open", r.replace_os_open),
    ("close", r.replace_os_close),
    ("chdir", r.replace_chdir),
    ("fchdir", r.replace_fchdir),
    ("chown", r.refuse_on_mount(((0, "path"),), ("dir_fd",))),
    ("lchown", r.refuse_on_mount(((0, "path"),))),
    ("link", r.refuse_on_mount(((0, "src"), (1, "dst")), ("src_dir_fd", "dst_dir_fd"))),
    ("symlink", r.refuse_on_mount(((1, "dst"),), ("dir_fd",))),
    ("mkfifo", r.refuse_on_mount(((0, "path"),), ("dir_fd",))),
    ("mknod", r.refuse_on_mount(((0, "path"),), ("dir_fd",))),
    ("statvfs", r.refuse_on_mount(((0, "path"),))),
    ("listxattr", _refused_xattr),
    ("getxattr", _refused_xattr),
    ("setxattr", _refused_xattr),
    ("removexattr", _refused_xattr),
)


@attrs.frozen
class _Patch:
    owner: Any
    name: str
    original: Any
    replacement: Any


def _replaced_attributes() -> list[tuple[Any, str, r.Factory]]:
    """(owner, attribute, factory) of everything ``install`` replaces explicitly."""
    specs: list[tuple[Any, str, r.Factory]] = [(builtins, "open", r.replace_open)]
    specs += [(os, name, factory) for name, factory in _REPLACED_OS_FUNCTIONS if hasattr(os, name)]
    specs.append((shutil, "rmtree", r.replace_rmtree))
    touch_owner = next(cls for cls in pathlib.Path.__mro__ if "touch" in vars(cls))
    specs.append((touch_owner, "touch", r.replace_touch))
    return specs


class Interceptor:
    """Routes file-system calls on mounted paths to their exports while installed.

    Process-wide: only one interceptor can be installed at a time; ``install``/``uninstall`` nest
    (the functions are restored when the last ``uninstall`` matches the first ``install``).
    """

    _installed: ClassVar[Interceptor | None] = None
    _install_lock: ClassVar[threading.RLock] = threading.RLock()

    def __init__(self, table: MountTable) -> None:
        self.table = table
        self._count = 0
        self._patches: list[_Patch] = []

    @property
    def install_count(self) -> int:
        """How many ``install`` calls are not yet matched by ``uninstall``."""
        return self._count

    @property
    def installed(self) -> bool:
        """Whether the replacements are in place."""
        return self._count > 0

    def install(self) -> None:
        """Put the replacements in place (first call) or count one more user."""
        with Interceptor._install_lock:
            if self._count == 0:
                if Interceptor._installed is not None:
                    raise RuntimeError("another fluxon_fs Interceptor is already installed in this process")
                self._patch()
                Interceptor._installed = self
            self._count += 1

    def uninstall(self) -> None:
        """Count one user less; the last one restores every original."""
        with Interceptor._install_lock:
            if self._count == 0:
                raise RuntimeError("Interceptor.uninstall() without a matching install()")
            self._count -= 1
            if self._count == 0:
                self._unpatch()
                Interceptor._installed = None

    def __enter__(self) -> Interceptor:
        self.install()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.uninstall()

    def _patch(self) -> None:
        patches: list[_Patch] = []
        by_original: dict[int, _Patch] = {}
        for owner, name, factory in _replaced_attributes():
            original = vars(owner)[name]
            known = by_original.get(id(original))
            replacement = known.replacement if known else factory(self.table, original)
            patch = _Patch(owner, name, original, replacement)
            by_original.setdefault(id(original), patch)
            patches.append(patch)
        for patch in patches:
            setattr(patch.owner, patch.name, patch.replacement)
        _swap_module_globals({id(p.original): (p.original, p.replacement) for p in patches})
        for set_name in _SUPPORT_SETS:
            supported = getattr(os, set_name, None)
            if isinstance(supported, set):
                supported.update(p.replacement for p in patches if p.original in supported)
        self._patches = patches
        self.table.refresh_cwd()

    def _unpatch(self) -> None:
        patches, self._patches = self._patches, []
        for patch in patches:
            if vars(patch.owner).get(patch.name) is patch.replacement:
                setattr(patch.owner, patch.name, patch.original)
        _swap_module_globals({id(p.replacement): (p.replacement, p.original) for p in patches})
        for set_name in _SUPPORT_SETS:
            supported = getattr(os, set_name, None)
            if isinstance(supported, set):
                supported.difference_update(p.replacement for p in patches)


def _swap_module_globals(swaps: dict[int, tuple[Any, Any]]) -> None:
    """In every loaded module, replace globals that are ``old`` by ``new`` (``swaps``: id(old) -> (old, new))."""
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if name in _LEFT_ALONE_MODULES or name == _OWN_PACKAGE or name.startswith(_OWN_PACKAGE + "."):
            continue
        if not isinstance(module, types.ModuleType):
            continue
        try:
            namespace = _module_namespace(module)
        except Exception:
            continue
        if not isinstance(namespace, dict) or id(namespace) in seen:
            continue
        seen.add(id(namespace))
        for _attempt in range(3):
            try:
                items = list(namespace.items())
                break
            except RuntimeError:  # another thread changed the module meanwhile
                continue
        else:
            continue
        for key, value in items:
            swap = swaps.get(id(value))
            if swap is not None and swap[0] is value:
                namespace[key] = swap[1]


_process_interceptor = Interceptor(process_mount_table())


def process_interceptor() -> Interceptor:
    """The interceptor of this process, routing to :func:`process_mount_table`."""
    return _process_interceptor
