"""``ExportClient``: a process's way to the fs master's exports, with no patch installed.

It follows one fs master (its export snapshot), holds the cache config and the user's identity,
and turns an export name into the parts a mount is made of: operations routed to a live agent
with the identity's token, the mount tunables, and the host's shared piece pool with the export's
budget. :class:`~fluxon_fs.patcher.fs_patcher.FluxonFsPatcher` mounts those parts at a local
directory; :meth:`ExportClient.open_export` gives them as a :class:`MountedExport` that lives in no
mount table, for clients that are not ``open()`` (the ``fluxon://`` fsspec filesystem). Both read
the same versioned pieces through the same pool, so what one of them read is warm for the other.

It also sends the fs master each export's cache figures (hits, misses, pool usage) and keeps the
pool's budgets equal to the fs master's.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable

import attrs

from fluxon_core.errors import ApiError
from fluxon_core.kv import KvClient
from fluxon_core.log_setup import get_logger
from fluxon_fs.config import CacheRuleConfig, FsCacheConfig, FsMasterRef
from fluxon_fs.export.routing import RoutedExportOps
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import CacheUsageReport, ExportCacheFigures, ExportPoolFigures, SnapshotExport
from fluxon_fs.master_api.session import UserSession
from fluxon_fs.patcher.content_cache import PieceCache, export_cache_prefix
from fluxon_fs.patcher.kv_piece_cache import KvPieceCache
from fluxon_fs.patcher.mounted_export import MountedExport
from fluxon_fs.patcher.options import MountOptions
from fluxon_fs.patcher.snapshot_follower import SnapshotFollower

log = get_logger("fluxon.fs.patcher")

CACHE_NOT_LOADED = "fluxon_fs cache config is not loaded yet"
REPORTS_VALID_FOR_INTERVALS = 3
"""Cache usage reported now stands for this many report intervals at the fs master."""


@attrs.frozen
class ExportBinding:
    """What a client of one export is made of (see :meth:`ExportClient.bind`)."""

    export_name: str
    ops: RoutedExportOps
    """The export's operations, routed to a live agent, carrying the client's current identity."""
    options: MountOptions
    """TTLs, windows and write tunables from the cache config."""
    piece_cache: PieceCache
    """The host's shared pool of file pieces."""
    served: SnapshotExport
    """The export as the fs master's snapshot describes it."""


class ExportClient:
    """Access to one fs master's exports on top of a KV client; thread-safe.

    Order: :meth:`follow` → :meth:`set_cache_config` (or :meth:`load_cache_config_from_master`) →
    :meth:`set_identity` → :meth:`bind` / :meth:`open_export`.
    """

    def __init__(self, store: KvClient) -> None:
        self.store = store
        self.piece_cache = KvPieceCache(store)
        self._rpc_client = store.transport().new_client()
        self.master: FsMasterRef | None = None
        self.link: FsMasterLink | None = None
        self.snapshot: SnapshotFollower | None = None
        self.cache_config: FsCacheConfig | None = None
        self._identity: UserSession | None = None
        self._cache_budgets: dict[str, int] = {}
        """Budget of each bound export's pieces in the host pool, as the fs master's snapshot says."""
        self._lock = threading.RLock()

    # ----- configuration ------------------------------------------------------------------------

    def follow(self, master: FsMasterRef) -> None:
        """Which fs master to follow."""
        with self._lock:
            self.master = master
            self.link = FsMasterLink(self.store, master.instance_key)
            self.snapshot = SnapshotFollower(self.link, master.pull_interval_ms)

    def require_link(self, what: str) -> FsMasterLink:
        """The link to the followed fs master; ``RuntimeError`` naming ``what`` before :meth:`follow`."""
        if self.link is None:
            raise RuntimeError(f"{what}: call set_master_config_yaml(...) first (which fs master to follow)")
        return self.link

    def set_cache_config(self, cache: FsCacheConfig) -> None:
        """The cache config exports are bound with (TTLs, windows, optional per-export expectations)."""
        with self._lock:
            self.cache_config = cache

    def load_cache_config_from_master(self, local_rules: list[CacheRuleConfig]) -> FsCacheConfig:
        """Fetch the fs master's cache config (its snapshot) and use it, with this host's ``local_rules``.

        ``ApiError`` when the fs master does not answer.
        """
        snapshot = self._require_snapshot("load_cache_config_from_master")
        snapshot.refresh()
        assert snapshot.cache is not None
        cache = attrs.evolve(snapshot.cache, rules=local_rules)
        self.set_cache_config(cache)
        return cache

    def _require_snapshot(self, what: str) -> SnapshotFollower:
        self.require_link(what)
        assert self.snapshot is not None
        return self.snapshot

    # ----- identity -----------------------------------------------------------------------------

    def set_identity(self, username: str, password: str) -> None:
        """Bind later requests, through every binding, to this identity (verified once by the fs master).
        When the login is refused, no identity stays bound."""
        link = self.require_link("set_request_identity")
        self._identity = None
        self._identity = UserSession(link, username, password)

    def clear_identity(self) -> None:
        """Forget the identity; later requests are refused as unauthenticated."""
        self._identity = None

    def request_token(self, rpc_path: str) -> str:
        """The token of the identity bound now ("" without one: the agent refuses the call)."""
        identity = self._identity
        return identity.token(rpc_path) if identity is not None else ""

    # ----- exports ------------------------------------------------------------------------------

    def bind(self, export_name: str, *, auth: Callable[[str], str] | None = None) -> ExportBinding:
        """The parts of a client of ``export_name``; gives its pieces the fs master's budget in the pool.

        Its calls carry ``auth(rpc_path)`` when given (a server acting for several users, such as the
        S3 gateway, binds once per user), else this client's identity.

        ``ValueError`` when the fs master does not serve the export; ``RuntimeError`` when the
        cache config is missing or names another root for it.
        """
        snapshot = self._require_snapshot("bind")
        cache_config = self.cache_config
        if cache_config is None:
            raise RuntimeError(f"{CACHE_NOT_LOADED}: call set_cache_config_yaml(...) before mount_remote_dir(...)")
        served = snapshot.refresh()
        if export_name not in served:
            known = ", ".join(sorted(served)) or "none"
            raise ValueError(
                f"unknown export_name {export_name!r}: not in the fs master export snapshot (exports: {known}); "
                "check EXPORT_NAME and that its fs agent is running"
            )
        client_export = cache_config.exports.get(export_name)
        export = served[export_name]
        server_root = export.remote_root_dir_abs
        if client_export is not None and client_export.remote_root_dir_abs != server_root:
            raise RuntimeError(
                f"{CACHE_NOT_LOADED}: client cache config says export {export_name!r} is "
                f"{client_export.remote_root_dir_abs!r} but the fs master serves it from {server_root!r}; "
                "check REMOTE_ROOT_DIR"
            )
        ops = RoutedExportOps(
            self._rpc_client,
            export_name,
            lambda: snapshot.agents(export_name),
            auth=auth or self.request_token,
            caller=self.store.instance_key(),
            static_nodes=(client_export.nodes if client_export is not None else None) or export.nodes,
        )
        options = MountOptions(
            metadata_cache_ttl_ms=(client_export or export).metadata_cache_ttl_ms,
            stale_window_ms=cache_config.stale_window_ms,
            write_inflight_bytes=cache_config.write_session_target_inflight_bytes,
        )
        self.set_cache_budget(export_name, export.cache_max_bytes)
        return ExportBinding(export_name, ops, options, self.piece_cache, export)

    def open_export(self, export_name: str, *, auth: Callable[[str], str] | None = None) -> MountedExport:
        """``export_name`` as a :class:`MountedExport` that is in no mount table (nothing is patched).

        Its operations take a :class:`~fluxon_fs.patcher.mount_table.MountedPath` whose ``user_path``
        is whatever the caller wants errors to name; its ``mount_dir`` is ``fluxon://<export_name>``.
        """
        binding = self.bind(export_name, auth=auth)
        return MountedExport(
            mount_dir=f"fluxon://{export_name}",
            export_name=export_name,
            ops=binding.ops,
            piece_cache=binding.piece_cache,
            options=binding.options,
            device=0,
        )

    # ----- content cache budgets and figures ----------------------------------------------------

    def set_cache_budget(self, export_name: str, max_bytes: int) -> None:
        """Give the export's pieces their budget in the host pool.

        The budget is the fs master's ``cache_max_bytes`` (its snapshot), not this client's config:
        the pool is shared by every process of the host, so they must all set the same one.
        """
        self._cache_budgets[export_name] = max_bytes
        result = self.store.set_prefix_budget(export_cache_prefix(export_name), max_bytes)
        if result.is_err():
            log.warning(
                "export %s is cached without a budget in this host's pool: %s", export_name, result.unwrap_error()
            )

    def follow_cache_budgets(self, export_names: Iterable[str]) -> None:
        """Take the budgets the fs master's snapshot gives now (applied with the next usage report)."""
        served = self.snapshot.current() if self.snapshot is not None else {}
        for export_name in export_names:
            if export_name in served:
                self._cache_budgets[export_name] = served[export_name].cache_max_bytes

    def report(self, exports: list[MountedExport]) -> None:
        """One periodic report: take the fs master's budgets for ``exports``, then send their cache figures."""
        self.follow_cache_budgets(export.export_name for export in exports)
        self.report_cache_usage(exports)

    def report_cache_usage(self, exports: list[MountedExport]) -> None:
        """Send each export's hits and misses since the last report, and its usage of the host pool.

        The pool's budget for each export is also brought back to the fs master's, should another
        process of the host have set a different one (the last setter wins in the pool).
        """
        if self.link is None or self.master is None or not exports:
            return
        try:
            pool_owner = self.store.pool_owner()
        except ApiError as exc:  # the store is closed
            log.info("content cache figures not reported: %s", exc)
            return
        answer = self.store.prefix_usage()
        if answer.is_err():  # a pool kind without budgets: hits and misses are still worth reporting
            log.info("content cache usage of this host's pool unavailable: %s", answer.unwrap_error())
        pool_usage = answer.unwrap() if answer.is_ok() else {}
        taken = [(export, *export.piece_reads.take_unreported()) for export in exports]
        reads: dict[str, tuple[int, int]] = {}
        for export, hits, misses in taken:
            before = reads.get(export.export_name, (0, 0))
            reads[export.export_name] = (before[0] + hits, before[1] + misses)
        figures = {}
        for name, (hits, misses) in reads.items():
            usage = pool_usage.get(export_cache_prefix(name))
            wanted = self._cache_budgets.get(name)
            if answer.is_ok() and wanted is not None and (usage is None or usage.budget_bytes != wanted):
                self.set_cache_budget(name, wanted)
            pool = (
                None
                if usage is None
                else ExportPoolFigures(usage.budget_bytes, usage.used_bytes, usage.entries, usage.evictions)
            )
            figures[name] = ExportCacheFigures(hits, misses, pool)
        report = CacheUsageReport(
            pool_owner=pool_owner,
            host=socket.gethostname(),
            valid_for_s=REPORTS_VALID_FOR_INTERVALS * self.master.report_interval_ms / 1000,
            exports=figures,
        )
        try:
            self.link.report_cache_usage(report)
        except ApiError as exc:
            log.info("could not report content cache usage to the fs master: %s", exc)
            for export, hits, misses in taken:
                export.piece_reads.give_back(hits, misses)
