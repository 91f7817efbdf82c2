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
import pytest
import yaml

from fluxon_core.cli import Command, build_parser
from fluxon_core.runtime import RoleProcess
from fluxon_core.runtime.processes import start_role_process
from fluxon_core.runtime.readiness import ReadyInfo
from fluxon_fs.cli import transfer as transfer_command
from fluxon_fs.fs_agent.transfer_worker import PAUSE_AFTER_BYTES_ENV, PAUSE_MARKER_ENV
from fluxon_fs.roles import FS_AGENT_MODULE, start_fs_master_process
from fluxon_fs.transfer.copier import COPY_CHUNK_BYTES
from tests.support.kv_cluster import KvCluster
from tests.support.poll import wait_until

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

    def master_config(
        self,
        *,
        users: list[dict] | None = None,
        scopes: list[dict] | None = None,
        cache: dict | None = None,
        **panel: Any,
    ) -> dict:
        """The fs master's config; ``cache`` is its ``fluxon_fs.cache`` section, ``panel`` adds master_panel keys."""
        return {
            "kvclient": self.kvclient(MASTER_KEY),
            "fluxon_fs": {
                **({"cache": cache} if cache is not None else {}),
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
        pause_marker: Path | None = None,
    ) -> ReadyInfo:
        """An fs agent process; with ``pause_marker`` its test hook pauses the first batch that has written
        one copy chunk (creating the marker; deleting it lets the batch go on, see :func:`paused_batch`)."""
        env = {}
        if pause_marker is not None:
            env = {PAUSE_AFTER_BYTES_ENV: str(COPY_CHUNK_BYTES), PAUSE_MARKER_ENV: str(pause_marker)}
        config = self.agent_config(instance_key, exports, host, export_options)
        proc = start_role_process(
            FS_AGENT_MODULE, "fs_agent", config, workdir=self.root / f"agent-{instance_key}", env=env
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


MOUNTING_PROCESS_START = """
import json, os, sys
from pathlib import Path
from fluxon_core.kv import new_store
from fluxon_core.rpc import default_transport
from fluxon_fs import FluxonFsPatcher
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import ExportSnapshotQuery, Login

args = json.loads(sys.argv[1])
store = new_store(args["kvclient"]).unwrap("new_store")
patcher = FluxonFsPatcher(store)
patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": {"instance_key": args["master"]}}}))
patcher.set_cache_config_yaml(json.dumps({"fluxon_fs": {"cache": {}}}))
patcher.set_request_identity(*args["identity"])
patcher.install()
"""
"""The start of a mounting process's script (``python -c SCRIPT ARGS_JSON``): a KV client from
``args["kvclient"]``, a patcher following ``args["master"]`` installed with ``args["identity"]``."""


def paused_batch(marker: Path) -> tuple[str, int, int]:
    """(job id, batch number, bytes written) of the batch an agent's pause hook stopped, once it did."""

    def fields() -> list[str] | None:
        words = marker.read_text().split() if marker.exists() else []
        return words if len(words) == 3 else None

    job_id, number, written = wait_until(fields, 30, "the worker's pause")
    return job_id, int(number), int(written)


def run_fluxon_transfer(
    fs: FsCluster,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    user: tuple[str, str],
    *argv: str,
) -> tuple[int, str, str]:
    """``fluxon transfer ARGV...`` as ``user`` (name, password), in-process; returns (status, stdout, stderr)."""
    config = fs.root / "cli.yaml"
    kvclient = {k: v for k, v in fs.kvclient("unused").items() if k != "instance_key"}
    config.write_text(yaml.safe_dump({"kvclient": kvclient, "fluxon_fs": {"master": {"instance_key": MASTER_KEY}}}))
    monkeypatch.setenv(transfer_command.PASSWORD_ENV, user[1])
    commands = {"transfer": Command("transfer", "h", transfer_command.add_arguments, transfer_command.run, "test")}
    action, *rest = argv
    args = build_parser(commands).parse_args(["transfer", action, "-c", str(config), "--user", user[0], *rest])
    status = args._run(args)
    out, err = capsys.readouterr()
    return status, out, err


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
