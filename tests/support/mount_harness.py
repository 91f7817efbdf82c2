"""Test harness for the interception layer: a real export directory mounted in this process.

The backend is the agent's :class:`~fluxon_fs.export.serving.local_ops.LocalExportOps` on a temporary
directory, wrapped in :class:`CountingOps` so tests can assert which export calls happened.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.patcher import (
    InMemoryPieceCache,
    MountedExport,
    MountOptions,
    PieceCache,
    process_interceptor,
    process_mount_table,
)


class CountingOps:
    """An ExportOps proxy counting calls per operation name."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute) or name.startswith("_") or name == "close":
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
            return attribute(*args, **kwargs)

        return counted

    def reset(self) -> None:
        """Forget the counts so far."""
        with self._lock:
            self.calls.clear()


@attrs.define
class Mounted:
    """A mounted export: where it is mounted, the directory it serves, and its backend."""

    mount: str
    root: str
    ops: CountingOps
    export: MountedExport
    cache: PieceCache

    def path(self, relpath: str = "") -> str:
        """The mount path of an export-relative path."""
        return f"{self.mount}/{relpath}" if relpath else self.mount

    def real(self, relpath: str = "") -> Path:
        """The agent-side path of an export-relative path (read it with the interceptor bypassed: it is local)."""
        return Path(self.root, relpath) if relpath else Path(self.root)


def read_bytes(path: Any) -> bytes:
    """The content of a file through ``open()`` (local or mounted)."""
    with open(path, "rb") as f:
        return f.read()


@contextmanager
def mounted_export(
    base: Path,
    *,
    export_name: str = "demo",
    options: MountOptions | None = None,
    piece_cache: PieceCache | None = None,
    mount_name: str = "mnt",
    export_root: str | None = None,
) -> Iterator[Mounted]:
    """Install the interceptor and mount ``export_root`` (default: a fresh directory under ``base``)."""
    if export_root is None:
        root = base / f"{mount_name}-export"
        root.mkdir()
    else:
        root = Path(export_root)
    mount_dir = base / mount_name
    ops = CountingOps(LocalExportOps(str(root)))
    cache = piece_cache if piece_cache is not None else InMemoryPieceCache(256 * 1024 * 1024)
    interceptor = process_interceptor()
    table = process_mount_table()
    interceptor.install()
    try:
        export = table.mount(str(mount_dir), ops, export_name, piece_cache=cache, options=options)
        try:
            yield Mounted(str(mount_dir), str(root), ops, export, cache)
        finally:
            table.unmount(str(mount_dir))
    finally:
        interceptor.uninstall()
        ops.inner.close()
