"""Serve one export's operations on an :class:`~fluxon_core.protocols.RpcServer`.

Every call is decoded with :mod:`fluxon_fs.export.wire`, passed to the ``authorize`` hook with
the export-relative paths it touches (a write-session call is checked against the path its
session writes), then run on the export's ops. When the lookup follows a symlink, ``authorize``
is asked again with the real path before the operation touches it, so a link cannot lead from a
path the caller may use into one it may not (see
:func:`~fluxon_fs.export.serving.confinement.guard_resolved_paths`). Errors are raised, not encoded here:
the RPC layer returns them typed (``OSError`` keeps its errno and export-relative filename).

Identity travels with every request (``RpcCall.auth``), never with the session: a session id
alone does not let a caller whose access was revoked keep writing.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import attrs

from fluxon_core.log_setup import get_logger
from fluxon_core.metrics import FS_OPS
from fluxon_core.protocols import RpcServer
from fluxon_core.rpc_types import RpcCall, RpcMessage
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.export.same_host.protocol import SameHostAddress
from fluxon_fs.export.serving.confinement import guard_resolved_paths
from fluxon_fs.export.wire import OPS, OpSpec, decode_request, encode_reply, op_path

T = TypeVar("T")
log = get_logger("fluxon.fs.agent")

EntryFilter = Callable[[str], bool]
Authorize = Callable[[RpcCall, str, str, Sequence[str], bool], EntryFilter | None]
"""``authorize(call, export_name, op, relpaths, is_write)``: raise to refuse (typically
:class:`~fluxon_core.errors.PermissionDeniedError`), return to allow. For ``list_dir`` it may
return a filter over entry names: only entries it accepts are listed (a user above their grants
sees just the way towards them). Called once with the requested paths and, when a symlink was
followed, once per real path reached (``relpaths`` then holds that one path)."""


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


def _utf8_filenames(exc: OSError) -> OSError:
    """``exc`` with file names the RPC header can carry (non-UTF-8 bytes shown as ``\\xNN``)."""
    names = [exc.filename, exc.filename2]
    if not any(isinstance(n, str) and not _utf8_ok(n) for n in names) or type(exc).__module__ != "builtins":
        return exc
    shown = [os.fsencode(n).decode("utf-8", "backslashreplace") if isinstance(n, str) else n for n in names]
    return type(exc)(exc.errno, exc.strerror, shown[0], None, shown[1])


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def allow_all(call: RpcCall, export_name: str, op: str, relpaths: Sequence[str], is_write: bool) -> None:
    """The default ``authorize``: every caller may do everything (development and tests)."""
    return None


def serve_export(
    server: RpcServer,
    export_name: str,
    ops: ServableExportOps,
    authorize: Authorize | None = None,
    *,
    same_host: SameHostAddress | None = None,
) -> ServedExport:
    """Register ``/fluxon_fs/<export_name>/<op>`` for every operation in :data:`~fluxon_fs.export.wire.OPS`.

    ``same_host``: the agent's same-host write channel, named in every ``session_open`` answer.
    """
    check = authorize or allow_all
    paths = []
    for spec in OPS.values():
        path = op_path(export_name, spec.name)
        server.register(path, _handler(export_name, spec, ops, check, same_host))
        paths.append(path)
    log.info("serving export %r at %s", export_name, server.endpoint)
    return ServedExport(server, export_name, tuple(paths))


class OpCounter:
    """Counts the calls of one operation in ``fluxon_fs_ops_total`` by result (``ok`` or the error's name).

    Made once per operation and served from: the family and the ``ok`` series are looked up here,
    not on every call, and the series exists (at 0) from the start.
    """

    def __init__(self, op: str) -> None:
        self._op = op
        self._counts = FS_OPS.get()
        self._ok = self._counts.labels(op, "ok")

    def run(self, action: Callable[..., T], *args: Any) -> T:
        """``action(*args)``, counted."""
        try:
            result = action(*args)
        except OSError as exc:
            self._counts.labels(self._op, errno.errorcode.get(exc.errno or 0, type(exc).__name__)).inc()
            raise
        except Exception as exc:
            self._counts.labels(self._op, type(exc).__name__).inc()
            raise
        self._ok.inc()
        return result


def _handler(
    export_name: str, spec: OpSpec, ops: ServableExportOps, authorize: Authorize, same_host: SameHostAddress | None
) -> Callable[[RpcCall], RpcMessage]:
    method = getattr(ops, spec.name)
    advertise = same_host is not None and spec.reply == "session"
    counter = OpCounter(spec.name)

    def handle(call: RpcCall) -> RpcMessage:
        return counter.run(serve, call)

    def serve(call: RpcCall) -> RpcMessage:
        started = time.perf_counter()
        args = decode_request(spec, call.message)
        try:
            result = run_authorized(call, export_name, spec, ops, authorize, args, method)
        except OSError as exc:
            raise _utf8_filenames(exc) from None
        if advertise:
            result = attrs.evolve(result, same_host=same_host)
        reply = encode_reply(spec, result)
        if log.isEnabledFor(logging.DEBUG):
            moved = sum(memoryview(f).nbytes for f in (*call.message.frames, *reply.frames))
            log.debug(
                "%s %s %s caller=%s bytes=%d %.2fms",
                export_name,
                spec.name,
                [args[field] for field in spec.path_fields],
                call.caller,
                moved,
                (time.perf_counter() - started) * 1000,
            )
        return reply

    return handle


def run_authorized(
    call: RpcCall,
    export_name: str,
    spec: OpSpec,
    ops: ServableExportOps,
    authorize: Authorize,
    args: dict[str, Any],
    method: Callable[..., Any] | None = None,
) -> Any:
    """``spec``'s operation on ``ops`` with ``args``, run only once ``authorize`` allowed ``call`` on
    every path it touches — and, when the lookup follows a symlink, on the real path it reaches.

    The one authorisation step of an agent: its RPC endpoint and its in-process callers
    (:class:`~fluxon_fs.export.serving.authorized_ops.AuthorizedExportOps`) both go through it.
    A ``list_dir`` answer keeps only the entries ``authorize`` lets the caller see.
    """
    if "session_id" in args:
        relpaths: list[str] = [ops.session_relpath(args["session_id"])]
    else:
        relpaths = [args[field] for field in spec.path_fields]
    decisions = [authorize(call, export_name, spec.name, relpaths, spec.is_write)]

    def check_real_path(real_relpath: str) -> None:
        decisions.append(authorize(call, export_name, spec.name, [real_relpath], spec.is_write))

    with guard_resolved_paths(check_real_path):
        result = (method or getattr(ops, spec.name))(**args)
    entry_filter = decisions[-1]
    if spec.name == "list_dir" and entry_filter is not None:
        result = [entry for entry in result if entry_filter(entry.name)]
    return result
