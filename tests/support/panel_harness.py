"""A real panel (uvicorn on a loopback port) over local export directories, for HTTP and browser tests.

:class:`InProcessTransferRunner` stands in for the fs master's job runner and the agents'
transfer workers: ``start_transfer`` scans the source through its ExportOps in a thread, worker
threads claim batches from the coordinator and copy them with :func:`copy_batch`, and a finished
job is verified with :func:`verify_batch` — the same transfer engine functions the real roles use.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.config import BackendConfig, load_config
from fluxon_core.protocols import StateStore
from fluxon_fs.auth.delegation import DelegatedSessions
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.tokens import TokenSigner
from fluxon_fs.config import ExportCacheConfig, FsCacheConfig
from fluxon_fs.export.ops import ExportOps
from fluxon_fs.export.serving.local_ops import LocalExportOps
from fluxon_fs.fs_master.export_registry import ExportRegistry
from fluxon_fs.fs_master.job_authority import JobAuthority
from fluxon_fs.fs_master.mount_registry import MountRegistry
from fluxon_fs.fs_master.panel import FsMasterPanelBackend, PanelServer, PanelSettings, create_panel_app
from fluxon_fs.fs_master.panel.server import bind_listen_socket
from fluxon_fs.transfer.batching import group_batches
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.copier import copy_batch, scan_export_dir, verify_batch
from fluxon_fs.transfer.jobs import JobOwner, JobRecord, JobSpec
from fluxon_fs.transfer.state_config import open_state_store
from fluxon_plugins.sqlite_access.store import SqliteAccessStoreConfig

ADMIN = ("admin", "admin-pw")
ALICE = ("alice", "alice-pw")
ALICE_PREFIX = "data/team-a"
PUBLIC_BASE_URL = "http://fluxon-panel.example.test:8443"
STATE_KEY_PREFIX = "/fluxon_fs_transfer/panel-test/"

BOOTSTRAP = {
    "users": [
        {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
        {"username": ALICE[0], "password": ALICE[1]},
    ],
    "scope_access": [{"export_name": "src", "prefix": ALICE_PREFIX, "mode": "read_only", "usernames": [ALICE[0]]}],
}

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


def csrf_from_html(html: str) -> str:
    """The CSRF token a page carries (form field or meta tag)."""
    match = CSRF_INPUT.search(html) or CSRF_META.search(html)
    assert match and match.group(1), "page carries no CSRF token"
    return match.group(1)


class PanelClient:
    """A browser-like client: cookies, the session's CSRF token, forms and JSON calls."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=15)
        self.csrf = ""

    def login(self, username: str, password: str) -> httpx.Response:
        page = self.http.get("/login")
        assert page.status_code == 200
        response = self.http.post(
            "/login", data={"username": username, "password": password, "csrf_token": csrf_from_html(page.text)}
        )
        if response.status_code == 303:
            self.csrf = csrf_from_html(self.http.get("/ui/account/").text)
        return response

    def form(self, path: str, data: dict | None = None, *, csrf: str | None = None) -> httpx.Response:
        fields = dict(data or {})
        token = self.csrf if csrf is None else csrf
        if token:
            fields["csrf_token"] = token
        return self.http.post(path, data=fields)

    def api(self, path: str, payload: dict | None = None, *, csrf: bool = True) -> httpx.Response:
        headers = {"X-CSRF-Token": self.csrf} if csrf else {}
        return self.http.post(path, json=payload or {}, headers=headers)

    def get_json(self, path: str) -> dict:
        response = self.http.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def flashes(self, path: str = "/ui/") -> str:
        return self.http.get(path).text

    def close(self) -> None:
        self.http.close()


class InProcessTransferRunner:
    """Scans, copies and verifies transfer jobs in threads of the test process."""

    def __init__(
        self,
        coordinator: TransferCoordinator,
        export_ops: Callable[[str], ExportOps],
        *,
        workers: int = 2,
        idle_s: float = 0.02,
    ) -> None:
        self._coordinator = coordinator
        self._export_ops = export_ops
        self._idle_s = idle_s
        self._stop = threading.Event()
        self._verify_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(f"test-worker-{n}",), name=f"panel-test-worker-{n}", daemon=True)
            for n in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def start_transfer(self, spec: JobSpec, owner: JobOwner) -> JobRecord:
        """Create a ``scanning`` job and scan it in the background; workers pick it up once it runs."""
        job = self._coordinator.create_job(spec, owner=owner)
        thread = threading.Thread(target=self._scan, args=(job.job_id, spec), name="panel-test-scan", daemon=True)
        self._threads.append(thread)
        thread.start()
        return job

    def _scan(self, job_id: str, spec: JobSpec) -> None:
        try:
            entries = scan_export_dir(self._export_ops(spec.source_export), spec.source_dir)
            for number, (batch, size) in enumerate(group_batches(entries, spec.batch_ready_bytes)):
                self._coordinator.add_batch(job_id, number, batch, size)
            self._coordinator.finish_scan(job_id)
        except Exception as exc:
            self._coordinator.fail_job(job_id, f"scan failed: {exc}")

    def _work(self, worker: str) -> None:
        while not self._stop.is_set():
            assignment = self._coordinator.claim(worker)
            if assignment is None:
                self._verify_finished_jobs()
                self._stop.wait(self._idle_s)
                continue
            spec = assignment.spec
            try:
                result = copy_batch(
                    spec,
                    assignment.entries,
                    self._export_ops(spec.source_export),
                    self._export_ops(spec.target_export),
                )
                self._coordinator.complete(assignment.job_id, assignment.number, assignment.claim_token, result)
            except Exception as exc:
                self._coordinator.fail(assignment.job_id, assignment.number, assignment.claim_token, str(exc))

    def _verify_finished_jobs(self) -> None:
        with self._verify_lock:
            for job in self._coordinator.jobs():
                if job.state != "verifying":
                    continue
                source = self._export_ops(job.spec.source_export)
                target = self._export_ops(job.spec.target_export)
                differences: list[str] = []
                for state in self._coordinator.batch_states(job.job_id):
                    entries = self._coordinator.batch_entries(job.job_id, state.number)
                    differences += verify_batch(job.spec, entries, source, target)
                self._coordinator.finish_verification(job.job_id, differences)

    def close(self) -> None:
        """Stop the workers."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)


def open_access_store(path: Path) -> Any:
    """The sqlite access store at ``path``, seeded with :data:`BOOTSTRAP` when empty."""
    store = BackendConfig("sqlite", SqliteAccessStoreConfig(path=str(path))).create("access_store")
    store.bootstrap(load_config(BootstrapAccessModelConfig, BOOTSTRAP))
    return store


class PanelWorld:
    """Exports ``src`` and ``dst`` (local directories), an agent, mounts, access db, transfer state, panel.

    Keyword arguments not named here are further :class:`PanelSettings` fields.
    """

    def __init__(
        self,
        root: Path,
        *,
        auto_refresh_interval_secs: int = 1,
        metrics_requires_login: bool = False,
        **settings: Any,
    ):
        self.root = root
        self.export_roots = {"src": root / "src_export", "dst": root / "dst_export"}
        for path in self.export_roots.values():
            path.mkdir(parents=True, exist_ok=True)
        self.access_db_path = root / "access.db"
        self.state_store_config: dict[str, Any] = {
            "kind": "sqlite",
            "sqlite": {"path": str(root / "transfer_state.db"), "key_prefix": STATE_KEY_PREFIX},
        }
        cache = FsCacheConfig(
            exports={name: ExportCacheConfig(remote_root_dir_abs=str(path)) for name, path in self.export_roots.items()}
        )
        self.export_registry = ExportRegistry(cache, lease_ttl_s=3600.0)
        self.export_registry.register(
            "agent-a", "tcp://127.0.0.1:1", {name: str(path) for name, path in self.export_roots.items()}
        )
        self.mount_registry = MountRegistry(ttl_s=3600.0)
        self.mount_registry.report("client-1", "/mnt/fluxon/src", "src", username=ADMIN[0], host="host-1", pid=101)
        self.mount_registry.report("client-2", "/mnt/alice/src", "src", username=ALICE[0], host="host-2", pid=202)
        self.ops = {name: LocalExportOps(str(path)) for name, path in self.export_roots.items()}
        self.state_store: StateStore = open_state_store(self.state_store_config)
        self.coordinator = TransferCoordinator(self.state_store, lease_ttl_s=10.0, retry_backoff_s=0.05)
        self.runner = InProcessTransferRunner(self.coordinator, self.export_ops)
        self.settings = PanelSettings(
            public_base_url=PUBLIC_BASE_URL,
            auto_refresh_interval_secs=auto_refresh_interval_secs,
            metrics_requires_login=metrics_requires_login,
            **settings,
        )
        self.access_store: Any = None
        self.server: PanelServer | None = None
        self._start_panel()

    def export_ops(self, name: str, _access_token: str = "") -> ExportOps:
        """The LocalExportOps of an export (in-process: no agent applies the user's scopes here)."""
        return self.ops[name]

    def _start_panel(self) -> None:
        self.access_store = open_access_store(self.access_db_path)
        signer = TokenSigner(self.access_store.token_secret(), ttl_s=3600)
        self.authorizer = Authorizer(self.access_store, signer, revocation_bound_s=0.2)
        self.backend = FsMasterPanelBackend(
            export_registry=self.export_registry,
            mount_registry=self.mount_registry,
            access_store=self.access_store,
            authorizer=self.authorizer,
            transfers=self.coordinator,
            job_authority=JobAuthority(DelegatedSessions(self.authorizer, signer)),
            export_ops=self.export_ops,
            start_transfer=self.runner.start_transfer,
            cluster_members=lambda: [
                {"instance_key": "kv-master-1", "role": "kv_master", "endpoint": "tcp://127.0.0.1:2"},
                {
                    "instance_key": "owner-a",
                    "role": "owner",
                    "endpoint": "tcp://127.0.0.1:3",
                    "pool_used_bytes": 3 * 1024 * 1024,
                    "pool_capacity_bytes": 1024**3,
                },
            ],
            cache_usage=lambda: {"used_bytes": 4096, "capacity_bytes": 1024**3, "hits": 3, "misses": 1},
            metrics_text=lambda: "# TYPE fluxon_panel_test_metric gauge\nfluxon_panel_test_metric 1\n",
        )
        self.server = PanelServer(create_panel_app(self.backend, self.settings), bind_listen_socket("127.0.0.1:0"))
        self.server.start()
        self.base_url = self.server.url

    def restart_panel(self) -> None:
        """Stop the panel, close the access db, and start both again from the same file (a master restart)."""
        assert self.server is not None
        self.server.stop()
        self.access_store.close()
        self._start_panel()

    def close(self) -> None:
        """Stop everything started here."""
        if self.server is not None:
            self.server.stop()
        self.runner.close()
        for ops in self.ops.values():
            ops.close()
        self.state_store.close()
        self.access_store.close()
