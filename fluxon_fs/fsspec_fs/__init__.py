"""``fluxon://<export>/<path>`` for fsspec (pandas, pyarrow, dask, ...), registered as fsspec's ``fluxon`` protocol.

Needs the ``fsspec`` extra. See ``docs/fsspec.md``.
"""

from fluxon_fs.fsspec_fs.filesystem import FluxonFileSystem

__all__ = ["FluxonFileSystem"]
