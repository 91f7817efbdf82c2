"""In-process interception: ``open()``/``os.*``/``pathlib``/``shutil``/``glob``/``os.walk`` on mounted exports.

Internal API (``FluxonFsPatcher`` wraps it):

* :func:`process_mount_table` — ``mount(dir, ops, export_name, piece_cache=, options=)``, ``unmount(dir)``.
* :func:`process_interceptor` — ref-counted ``install()``/``uninstall()`` of the replacements.
* :class:`MountOptions` — TTLs, piece size, readahead, write chunking.
* :class:`PieceCache` — where file pieces are cached (:class:`InMemoryPieceCache` for tests).
"""

from fluxon_fs.patcher.content_cache import InMemoryPieceCache, PieceCache, export_cache_prefix, piece_key
from fluxon_fs.patcher.intercept import Interceptor, process_interceptor
from fluxon_fs.patcher.mount_table import LocalRedirect, MountedPath, MountTable, process_mount_table
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.patcher.options import MountOptions

__all__ = [
    "InMemoryPieceCache",
    "Interceptor",
    "LocalRedirect",
    "MountOptions",
    "MountTable",
    "MountedExport",
    "MountedPath",
    "PieceCache",
    "export_cache_prefix",
    "piece_key",
    "process_interceptor",
    "process_mount_table",
]
