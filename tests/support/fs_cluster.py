"""A real FS deployment for tests: kv master + owner (tests.support.kv_cluster), fs master and fs agents
as separate processes, all on this machine.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from fluxon_core.runtime import RoleProcess
from fluxon_core.runtime.readiness import ReadyInfo
from fluxon_fs.roles import start_fs_agent_process, start_fs_master_process
from tests.support.kv_cluster import KvCluster

ADMIN = ("admin", "admin-pw")
MASTER_KEY = "fs-master"


class FsCluster:
    """kv plane + fs master + agents; exports live under ``root/exports/<name>``."""

    def __init__(self, kv: KvCluster, host: str = "h1") -> None:
        self.kv = kv
        self.host = host
        self.root = kv.root
        self.master: RoleProcess | None = None
        self.master_ready: ReadyInfo | None = None
        self.agents: dict[str, RoleProcess] = {}
        self.service_secret_file = self.root / "fs_service.secret"
        """The FS service secret: the fs master creates it, agents read it."""

    def export_dir(self, name: str) -> Path:
        path = self.root / "exports" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def kvclient(self, instance_key: str, host: str | None = None) -> dict[str, Any]:
        return self.kv.external_config(instance_key, host or self.host)

    def master_config(self, *, users: list[dict] | None = None, scopes: list[dict] | None = None, **panel: Any) -> dict:
        return {
            "kvclient": self.kvclient(MASTER_KEY),
            "fluxon_fs": {
                "master": {"instance_key": MASTER_KEY, "pull_interval_ms": 200},
                "service_secret_file": str(self.service_secret_file),
                "master_panel": {
                    "listen_addr": "127.0.0.1:0",
                    "access_db_path": str(self.root / "access.db"),
                    "bootstrap_access_model": {
                        "users": users or [{"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True}],
                        "scope_access": scopes or [],
                    },
                    "session": {"revocation_bound_s": 0.5},
                    **panel,
                },
            },
        }

    def start_master(self, **kwargs: Any) -> ReadyInfo:
        self.master = start_fs_master_process(self.master_config(**kwargs), workdir=self.root / "fs-master")
        self.master_ready = self.master.wait_ready(60)
        return self.master_ready

    def agent_config(
        self,
        instance_key: str,
        exports: dict[str, str],
        host: str | None = None,
        export_options: dict[str, dict[str, Any]] | None = None,
    ) -> dict:
        """An agent's YAML; ``export_options`` adds options (e.g. ``allow_setid_bits``) to exports by name."""
        options = export_options or {}
        return {
            "kvclient": self.kvclient(instance_key, host),
            "fluxon_fs": {
                "master": {"instance_key": MASTER_KEY},
                "service_secret_file": str(self.service_secret_file),
                "agent": {
                    "exports": {
                        name: {"root_dir_abs": root, **options.get(name, {})} for name, root in exports.items()
                    },
                    "session_idle_timeout_s": 30,
                },
            },
        }

    def start_agent(
        self,
        instance_key: str,
        exports: dict[str, str],
        host: str | None = None,
        export_options: dict[str, dict[str, Any]] | None = None,
    ) -> ReadyInfo:
        proc = start_fs_agent_process(
            self.agent_config(instance_key, exports, host, export_options), workdir=self.root / f"agent-{instance_key}"
        )
        self.agents[instance_key] = proc
        return proc.wait_ready(60)

    def close(self) -> None:
        for proc in [*self.agents.values(), *([self.master] if self.master else [])]:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except Exception:
                    proc.kill()
                    proc.wait(5)


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]*)"')


class PanelSession:
    """A logged-in browser session against the fs master's panel."""

    def __init__(self, fs: FsCluster) -> None:
        assert fs.master_ready is not None
        self.http = httpx.Client(base_url=fs.master_ready.fields["panel"], follow_redirects=False, timeout=15)

    def login(self, username: str, password: str) -> None:
        page = self.http.get("/login")
        match = CSRF_INPUT.search(page.text)
        assert match, page.text[:500]
        response = self.http.post(
            "/login", data={"username": username, "password": password, "csrf_token": match.group(1)}
        )
        assert response.status_code == 303, response.text[:500]

    def post_json(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        """A JSON API call with the session's CSRF token (read from any page)."""
        page = self.http.get("/ui/account/")
        match = CSRF_INPUT.search(page.text) or CSRF_META.search(page.text)
        assert match, page.text[:500]
        return self.http.post(path, json=body or {}, headers={"X-CSRF-Token": match.group(1)})


@contextlib.contextmanager
def fs_cluster(host: str = "h1") -> Iterator[FsCluster]:
    """A KV plane with one owner on ``host`` and (not yet started) FS roles."""
    kv = KvCluster()
    cluster = FsCluster(kv, host)
    try:
        kv.start_master()
        kv.start_owner(f"owner-{host}", host)
        yield cluster
    finally:
        cluster.close()
        kv.close()
