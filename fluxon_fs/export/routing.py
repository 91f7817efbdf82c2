"""An export's operations routed to a live agent that serves it.

Routing follows the fs master's export snapshot (agent registry) or the static ``nodes`` list of
the client's cache config. Read-only operations that fail because an agent vanished are retried
once on another agent; writes and write sessions stay on the agent that opened them. A session
whose agent runs on this host sends payloads held in shared chunks over the agent's same-host
channel (:mod:`fluxon_fs.export.same_host`) and everything else over RPC.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import attrs

from fluxon_core.errors import ApiTimeoutError, NetworkError
from fluxon_core.protocols import RpcClient
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.export.ops import DirEntryInfo, FileStat, WriteSessionInfo
from fluxon_fs.export.same_host.client import SameHostWriter, usable_writer
from fluxon_fs.export.same_host.shared_chunk import shared_payload
from fluxon_fs.export.wire import op_path

AgentList = Callable[[], list[dict[str, str]]]


@attrs.frozen
class _SessionRoute:
    """Where a session's calls go: the agent that opened it, and its same-host channel if usable here."""

    ops: RemoteExportOps
    writer: SameHostWriter | None


class RoutedExportOps:
    """:class:`~fluxon_fs.export.ops.ExportOps` of one export over whichever agent currently serves it."""

    def __init__(
        self,
        client: RpcClient,
        export_name: str,
        agents: AgentList,
        *,
        auth: Callable[[str], str],
        caller: str,
        static_nodes: list[str] | None = None,
    ) -> None:
        self._client = client
        self._export_name = export_name
        self._agents = agents
        self._auth = auth
        self._caller = caller
        self._static_nodes = static_nodes
        self._lock = threading.Lock()
        self._current: RemoteExportOps | None = None
        self._sessions: dict[str, RemoteExportOps] = {}

    def _pick(self, avoid: str | None = None) -> RemoteExportOps:
        with self._lock:
            if self._current is not None and self._current.endpoint != avoid:
                return self._current
            candidates = self._agents()
            if self._static_nodes is not None:
                candidates = [a for a in candidates if a["instance_key"] in self._static_nodes]
            usable = [a for a in candidates if a["endpoint"] != avoid] or candidates
            if not usable:
                raise NetworkError(f"no live fs agent serves export {self._export_name!r}")
            self._current = RemoteExportOps(
                self._client, usable[0]["endpoint"], self._export_name, auth=self._auth, caller=self._caller
            )
            return self._current

    def _read_only(self, name: str, *args: Any, **kwargs: Any) -> Any:
        ops = self._pick()
        try:
            return getattr(ops, name)(*args, **kwargs)
        except (NetworkError, ApiTimeoutError):
            return getattr(self._pick(avoid=ops.endpoint), name)(*args, **kwargs)

    def stat(self, relpath: str, *, follow_symlinks: bool = True) -> FileStat:
        """See ExportOps."""
        return self._read_only("stat", relpath, follow_symlinks=follow_symlinks)

    def list_dir(self, relpath: str) -> list[DirEntryInfo]:
        """See ExportOps."""
        return self._read_only("list_dir", relpath)

    def read_chunk(self, relpath: str, offset: int, length: int) -> tuple[FileStat, bytes]:
        """See ExportOps."""
        return self._read_only("read_chunk", relpath, offset, length)

    def read_chunk_view(self, relpath: str, offset: int, length: int) -> tuple[FileStat, memoryview]:
        """:meth:`read_chunk` answering a view of the received frame (no copy)."""
        return self._read_only("read_chunk_view", relpath, offset, length)

    def write_chunk(self, relpath: str, offset: int, data: bytes) -> FileStat:
        """See ExportOps."""
        return self._pick().write_chunk(relpath, offset, data)

    def truncate(self, relpath: str, length: int) -> FileStat:
        """See ExportOps."""
        return self._pick().truncate(relpath, length)

    def mkdir(self, relpath: str, mode: int = 0o777) -> None:
        """See ExportOps."""
        self._pick().mkdir(relpath, mode)

    def rmdir(self, relpath: str) -> None:
        """See ExportOps."""
        self._pick().rmdir(relpath)

    def unlink(self, relpath: str) -> None:
        """See ExportOps."""
        self._pick().unlink(relpath)

    def rename(self, src_relpath: str, dst_relpath: str) -> None:
        """See ExportOps."""
        self._pick().rename(src_relpath, dst_relpath)

    def chmod(self, relpath: str, mode: int) -> None:
        """See ExportOps."""
        self._pick().chmod(relpath, mode)

    def utime(self, relpath: str, times_ns: tuple[int, int] | None) -> None:
        """See ExportOps."""
        self._pick().utime(relpath, times_ns)

    def session_open(
        self, relpath: str, *, create: bool, exclusive: bool, truncate: bool, mode: int = 0o666
    ) -> WriteSessionInfo:
        """See ExportOps; the session stays bound to the agent that opened it."""
        ops = self._pick()
        info = ops.session_open(relpath, create=create, exclusive=exclusive, truncate=truncate, mode=mode)
        writer = usable_writer(info.same_host)
        with self._lock:
            self._sessions[info.session_id] = _SessionRoute(ops, writer)
        return info if writer is not None or info.same_host is None else attrs.evolve(info, same_host=None)

    def _session_route(self, session_id: str) -> _SessionRoute:
        with self._lock:
            return self._sessions.get(session_id) or _SessionRoute(self._pick(), None)

    def _session_ops(self, session_id: str) -> RemoteExportOps:
        return self._session_route(session_id).ops

    def session_write(self, session_id: str, offset: int, data: bytes) -> None:
        """See ExportOps; a payload in a shared chunk goes over the same-host channel when the session has one."""
        route = self._session_route(session_id)
        chunk = shared_payload(data) if route.writer is not None else None
        if chunk is not None and route.writer is not None:
            auth = self._auth(op_path(self._export_name, "session_write"))
            if route.writer.write(
                self._export_name, session_id, offset, chunk, chunk.payload_bytes, auth=auth, caller=self._caller
            ):
                return
        route.ops.session_write(session_id, offset, data)

    def session_flush(self, session_id: str) -> FileStat:
        """See ExportOps."""
        return self._session_ops(session_id).session_flush(session_id)

    def session_finalize(self, session_id: str) -> FileStat:
        """See ExportOps."""
        try:
            return self._session_ops(session_id).session_finalize(session_id)
        finally:
            with self._lock:
                self._sessions.pop(session_id, None)

    def session_abort(self, session_id: str) -> None:
        """See ExportOps."""
        try:
            self._session_ops(session_id).session_abort(session_id)
        finally:
            with self._lock:
                self._sessions.pop(session_id, None)
