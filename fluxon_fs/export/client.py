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
from fluxon_fs.export.ops import ExportOpsByName, FileStat
from fluxon_fs.export.wire import OPS, decode_reply, encode_request, op_path

DEFAULT_TIMEOUT_S = 30.0
"""Deadline of one export call (a chunk of several MiB over a slow link fits comfortably)."""


class RemoteExportOps(ExportOpsByName):
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

    def read_chunk_view(self, relpath: str, offset: int, length: int) -> tuple[FileStat, memoryview]:
        """:meth:`read_chunk` without copying the received frame (for a cache that stores views)."""
        return self._call("read_chunk", view=True, relpath=relpath, offset=offset, length=length)
