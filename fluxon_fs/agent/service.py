"""Serve one export's operations on an :class:`~fluxon_core.protocols.RpcServer`.

Every call is decoded with :mod:`fluxon_fs.export_wire`, passed to the ``authorize`` hook with
the export-relative paths it touches (a write-session call is checked against the path its
session writes), then run on the export's ops. Errors are raised, not encoded here: the RPC
layer returns them typed (``OSError`` keeps its errno and export-relative filename).

Identity travels with every request (``RpcCall.auth``), never with the session: a session id
alone does not let a caller whose access was revoked keep writing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import attrs

from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import RpcServer
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.export_api import ExportOps
from fluxon_fs.export_wire import OPS, OpSpec, decode_request, encode_reply, op_path

log = get_logger("fluxon.fs.agent")

Authorize = Callable[[RpcCall, str, str, Sequence[str], bool], None]
"""``authorize(call, export_name, op, relpaths, is_write)``: return to allow, raise to refuse
(typically :class:`~fluxon_core.errors.PermissionDeniedError`)."""


class ServableExportOps(ExportOps, Protocol):
    """ExportOps that can also tell which path an open write session writes (for authorization)."""

    def session_relpath(self, session_id: str) -> str:
        """The export-relative path of an open session; ``OSError(EBADF)`` when it is not open."""
        ...


@attrs.define
class ServedExport:
    """Handle of a served export; :meth:`close` stops serving its paths."""

    server: RpcServer
    export_name: str
    paths: tuple[str, ...]

    def close(self) -> None:
        """Unregister every path of the export from the server (the ops object is not closed)."""
        for path in self.paths:
            self.server.unregister(path)


def allow_all(call: RpcCall, export_name: str, op: str, relpaths: Sequence[str], is_write: bool) -> None:
    """The default ``authorize``: every caller may do everything (development and tests)."""


def serve_export(
    server: RpcServer, export_name: str, ops: ServableExportOps, authorize: Authorize | None = None
) -> ServedExport:
    """Register ``/fluxon_fs/<export_name>/<op>`` for every operation in :data:`~fluxon_fs.export_wire.OPS`."""
    check = authorize or allow_all
    paths = []
    for spec in OPS.values():
        path = op_path(export_name, spec.name)
        server.register(path, _handler(export_name, spec, ops, check))
        paths.append(path)
    log.info("serving export %r at %s", export_name, server.endpoint)
    return ServedExport(server, export_name, tuple(paths))


def _handler(
    export_name: str, spec: OpSpec, ops: ServableExportOps, authorize: Authorize
) -> Callable[[RpcCall], RpcMessage]:
    method = getattr(ops, spec.name)

    def handle(call: RpcCall) -> RpcMessage:
        started = time.perf_counter()
        args = decode_request(spec, call.message)
        if "session_id" in args:
            relpaths: list[str] = [ops.session_relpath(args["session_id"])]
        else:
            relpaths = [args[field] for field in spec.path_fields]
        authorize(call, export_name, spec.name, relpaths, spec.is_write)
        reply = encode_reply(spec, method(**args))
        if log.isEnabledFor(logging.DEBUG):
            moved = sum(memoryview(f).nbytes for f in (*call.message.frames, *reply.frames))
            log.debug(
                "%s %s %s caller=%s bytes=%d %.2fms",
                export_name,
                spec.name,
                relpaths,
                call.caller,
                moved,
                (time.perf_counter() - started) * 1000,
            )
        return reply

    return handle
