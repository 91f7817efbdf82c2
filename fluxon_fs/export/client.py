"""``RemoteExportOps``: an export's :class:`~fluxon_fs.export.ops.ExportOps` reached over RPC.

Each method is one call to ``/fluxon_fs/<export>/<op>`` at the agent's endpoint, encoded with
:mod:`fluxon_fs.export.wire`. The caller's identity (``auth``, a token, or a function of the RPC path returning the
current one) rides on every call. Failures come back as the agent raised them: ``OSError`` with
the agent's errno and the *export-relative* path as filename (the mount layer swaps in the
user-visible path), ``PermissionDeniedError`` from access control, ``ValueError`` for a path the
agent cannot accept (NUL byte), and transport errors (``ApiTimeoutError``, ``NetworkError``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fluxon_core.errors import RemoteHandlerError
from fluxon_core.protocols import RpcClient
from fluxon_fs.export.ops import DirEntryInfo, FileStat, WriteSessionInfo
from fluxon_fs.export.wire import OPS, decode_reply, encode_request, op_path

DEFAULT_TIMEOUT_S = 30.0
"""Deadline of one export call (a chunk of several MiB over a slow link fits comfortably)."""


class RemoteExportOps:
    """ExportOps of ``export_name`` served at ``endpoint``; thread-safe when ``client`` is."""

    def __init__(
        self,
        client: RpcClient,
        endpoint: str,
        export_name: str,
        *,
        auth: str | Callable[[str], str] = "",
        caller: str = "",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self._client = client
        self.endpoint = endpoint
        self.export_name = export_name
        self._auth = auth
        self._caller = caller
        self._timeout_s = timeout_s
        self._paths = {name: op_path(export_name, name) for name in OPS}

    def _call(self, op: str, *, view: bool = False, **args: Any) -> Any:
        spec = OPS[op]
        auth = self._auth(self._paths[op]) if callable(self._auth) else self._auth
        try:
            reply = self._client.call(
                self.endpoint,
                self._paths[op],
                encode_request(spec, args),
                timeout_s=self._timeout_s,
                caller=self._caller,
                auth=auth,
            )
        except RemoteHandlerError as exc:
            if exc.remote_type == "ValueError":
                raise ValueError(exc.message) from None
            raise
        return decode_reply(spec, reply, view=view)

    def stat(self, relpath: str, *, follow_symlinks: bool = True) -> FileStat:
        """``os.stat``/``os.lstat`` of an entry."""
        return self._call("stat", relpath=relpath, follow_symlinks=follow_symlinks)

    def list_dir(self, relpath: str) -> list[DirEntryInfo]:
        """Entries of a directory with their lstat, sorted by name."""
        return self._call("list_dir", relpath=relpath)

    def read_chunk(self, relpath: str, offset: int, length: int) -> tuple[FileStat, bytes]:
        """Up to ``length`` bytes at ``offset`` and the stat they belong to (short only at EOF or the agent's cap)."""
        return self._call("read_chunk", relpath=relpath, offset=offset, length=length)

    def read_chunk_view(self, relpath: str, offset: int, length: int) -> tuple[FileStat, memoryview]:
        """:meth:`read_chunk` without copying the received frame (for a cache that stores views)."""
        return self._call("read_chunk", view=True, relpath=relpath, offset=offset, length=length)

    def write_chunk(self, relpath: str, offset: int, data: bytes) -> FileStat:
        """Write ``data`` at ``offset`` into an existing file."""
        return self._call("write_chunk", relpath=relpath, offset=offset, data=data)

    def truncate(self, relpath: str, length: int) -> FileStat:
        """Set the file's size."""
        return self._call("truncate", relpath=relpath, length=length)

    def mkdir(self, relpath: str, mode: int = 0o777) -> None:
        """Create one directory (parent must exist)."""
        self._call("mkdir", relpath=relpath, mode=mode)

    def rmdir(self, relpath: str) -> None:
        """Remove an empty directory."""
        self._call("rmdir", relpath=relpath)

    def unlink(self, relpath: str) -> None:
        """Remove a file or symlink."""
        self._call("unlink", relpath=relpath)

    def rename(self, src_relpath: str, dst_relpath: str) -> None:
        """``os.replace`` within the export."""
        self._call("rename", src_relpath=src_relpath, dst_relpath=dst_relpath)

    def chmod(self, relpath: str, mode: int) -> None:
        """Change permission bits."""
        self._call("chmod", relpath=relpath, mode=mode)

    def utime(self, relpath: str, times_ns: tuple[int, int] | None) -> None:
        """Set (atime_ns, mtime_ns), or now when None."""
        self._call("utime", relpath=relpath, times_ns=times_ns)

    def session_open(
        self, relpath: str, *, create: bool, exclusive: bool, truncate: bool, mode: int = 0o666
    ) -> WriteSessionInfo:
        """Open a file for writing (``open`` flags semantics); returns the session."""
        return self._call(
            "session_open", relpath=relpath, create=create, exclusive=exclusive, truncate=truncate, mode=mode
        )

    def session_write(self, session_id: str, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` within the session."""
        self._call("session_write", session_id=session_id, offset=offset, data=data)

    def session_flush(self, session_id: str) -> FileStat:
        """Make everything written so far visible; returns the file's stat."""
        return self._call("session_flush", session_id=session_id)

    def session_finalize(self, session_id: str) -> FileStat:
        """Close the session after its writes; returns the file's final stat."""
        return self._call("session_finalize", session_id=session_id)

    def session_abort(self, session_id: str) -> None:
        """Close the session; the file keeps what was written."""
        self._call("session_abort", session_id=session_id)
