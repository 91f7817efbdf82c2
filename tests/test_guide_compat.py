"""User code written the way the published Fluxon guides write it runs unchanged against ``fluxon_py``.

Every script here is a child process that imports only ``fluxon_py`` (as a guide reader would),
against real role processes started through ``fluxon_py.runtime`` with the guides' config keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_core.runtime import RoleProcess
from fluxon_py.runtime import (
    start_fs_agent_process,
    start_fs_master_process,
    start_kv_master_process,
    start_owner_kvclient_process,
)

ADMIN = ("admin", "admin-pw")
FS_MASTER = "fs-master"


@attrs.define
class GuideStack:
    """kv master + owner + fs master + fs agent, configured with the guides' keys."""

    root: Path
    cluster: str
    shm: Path
    export_root: Path
    master_ui: str
    processes: list[RoleProcess]

    def client_config(self, instance_key: str) -> dict[str, Any]:
        # The older single-root spelling and the upstream vram mapping, as guide scripts write them.
        return {
            "instance_key": instance_key,
            "fluxonkv_spec": {"cluster_name": self.cluster, "share_mem_path": str(self.shm)},
            "contribute_to_cluster_pool_size": {"dram": 0, "vram": {}},
            "test_spec_config": {"disable_observability": True},
        }


def _stop(processes: list[RoleProcess]) -> None:
    for proc in reversed(processes):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuideStack]:
    root = tmp_path_factory.mktemp("guide")
    cluster = f"guide{uuid.uuid4().hex[:8]}"
    shm = Path("/dev/shm") / f"fx-{cluster}"
    export_root = root / "export"
    export_root.mkdir()
    processes: list[RoleProcess] = []
    try:
        master = start_kv_master_process(
            {
                "instance_key": "kv-master",
                "cluster_name": cluster,
                "port": 0,
                "log_dir": str(root / "kv-logs"),
                "monitoring": {"prometheus": None},
                "master_ui": {"http_listen_addr": "127.0.0.1:0"},
                "cluster_secret_file": str(root / "cluster.secret"),
            },
            workdir=root / "kv-master",
        )
        processes.append(master)
        ready = master.wait_ready(30)
        owner = start_owner_kvclient_process(
            {
                "instance_key": "owner-1",
                "fluxonkv_spec": {
                    "cluster_name": cluster,
                    "share_mem_path": str(shm),
                    "master_address": ready.endpoint,
                    "cluster_secret_file": str(root / "cluster.secret"),
                },
                "contribute_to_cluster_pool_size": {"dram": "64MiB", "vram": {}},
            },
            workdir=root / "owner",
        )
        processes.append(owner)
        owner.wait_ready(30)
        kvclient = {"fluxonkv_spec": {"cluster_name": cluster, "share_mem_path": str(shm)}}
        fs_master = start_fs_master_process(
            {
                "kvclient": kvclient,
                "fluxon_fs": {
                    "master": {"instance_key": FS_MASTER, "pull_interval_ms": 200},
                    "master_panel": {
                        "listen_addr": "127.0.0.1:0",
                        "access_db_path": str(root / "access.db"),
                        "bootstrap_access_model": {
                            "users": [{"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True}],
                            "scope_access": [],
                        },
                    },
                },
                "monitoring": {"prometheus": None},
            },
            workdir=root / "fs-master",
        )
        processes.append(fs_master)
        fs_master.wait_ready(60)
        agent = start_fs_agent_process(
            {
                "kvclient": {**kvclient, "instance_key": "fs-agent-1"},
                "fluxon_fs": {
                    "master": {"instance_key": FS_MASTER},
                    "agent": {"exports": {"demo": {"root_dir_abs": str(export_root)}}},
                },
                "monitoring": {"prometheus": None},
            },
            workdir=root / "fs-agent",
        )
        processes.append(agent)
        agent.wait_ready(60)
        yield GuideStack(root, cluster, shm, export_root, ready.fields["ui"], processes)
    finally:
        _stop(processes)


def run_guide_script(stack: GuideStack, code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` as a user's script in its own interpreter; returns its stdout (fails on a non-zero exit)."""
    script = stack.root / f"script-{uuid.uuid4().hex[:6]}.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "FLUXON_LOG": "WARNING"}
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=stack.root
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done.stdout


def test_the_kv_quick_path_with_results(stack: GuideStack) -> None:
    out = run_guide_script(
        stack,
        """
        import json, sys
        from fluxon_py import FluxonKvClientConfig, KeyNotFoundError, PutOptionalArgs, new_store

        cfg = FluxonKvClientConfig(json.loads(sys.argv[1]))
        store = new_store(cfg).unwrap("new_store failed")
        store.put_blocking("guide/k1", {"data": b"hello", "n": 3}).unwrap("put failed")
        holder = store.get_blocking("guide/k1").unwrap("get failed")
        value = holder.access().unwrap("access failed")
        print("value", bytes(value["data"]).decode(), value["n"])
        again = store.put_blocking("guide/k1", {"n": 4}, PutOptionalArgs(reject_if_exists=True))
        print("again", type(again.unwrap_error()).__name__)
        print("async", store.get("guide/k1").wait().unwrap("get failed").access().unwrap("access")["n"])
        missing = store.get_blocking("guide/none")
        print("missing", isinstance(missing.unwrap_error(), KeyNotFoundError))
        store.close().unwrap("close failed")
        """,
        json.dumps(stack.client_config("guide-kv")),
    )
    assert out.split("\n")[:4] == ["value hello 3", "again KeyAlreadyExistsError", "async 3", "missing True"]


def test_node_to_node_rpc_with_a_handle(stack: GuideStack) -> None:
    out = run_guide_script(
        stack,
        """
        import json, sys
        from fluxon_py import FluxonKvClientConfig, new_store

        base = json.loads(sys.argv[1])
        with new_store(FluxonKvClientConfig({**base, "instance_key": "guide-server"})).unwrap("server") as server:
            server.rpc_register("/demo/echo", lambda from_node_id, payload: {"from": from_node_id, **payload})
            client = new_store(FluxonKvClientConfig({**base, "instance_key": "guide-client"})).unwrap("client")
            handle = client.rpc_call("guide-server", "/demo/echo", {"x": 1}, timeout_ms=5000)
            print("reply", json.dumps(handle.wait().unwrap("rpc failed"), sort_keys=True))
            missing = client.rpc_call("guide-server", "/demo/none", {}).wait()
            print("unknown path is an error", missing.is_err())
            client.close().unwrap("close")
        """,
        json.dumps(stack.client_config("unused")),
    )
    assert 'reply {"from": "guide-client", "x": 1}' in out
    assert "unknown path is an error True" in out


def test_the_fs_reader_flow_with_the_bare_cache_yaml(stack: GuideStack) -> None:
    (stack.export_root / "hello.txt").write_text("hello from the guide's export\n")
    out = run_guide_script(
        stack,
        """
        import json, sys, os
        from fluxon_py import FluxonKvClientConfig, new_store
        from fluxon_py.fluxon_fs import FluxonFsPatcher

        config, export_root, mount = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
        store = new_store(FluxonKvClientConfig(config)).unwrap("new_store failed")
        patcher = FluxonFsPatcher(store)
        patcher.set_master_config_yaml("fluxon_fs:\\n  master:\\n    instance_key: fs-master\\n")
        # The bare cache mapping, as the upstream client passes it.
        patcher.set_cache_config_yaml(f"stale_window_ms: 1000\\nexports:\\n  demo:\\n    remote_root_dir_abs: {export_root}\\n")
        patcher.set_request_identity("admin", "admin-pw")
        patcher.install()
        patcher.mount_remote_dir(local_mount_dir_abs=mount, export_name="demo")
        with open(os.path.join(mount, "hello.txt")) as f:
            print("read", f.read().strip())
        with open(os.path.join(mount, "written.txt"), "w") as f:
            f.write("written through the guide's flow\\n")
        patcher.uninstall()
        store.close().unwrap("close failed")
        """,
        json.dumps(stack.client_config("guide-reader")),
        str(stack.export_root),
        str(stack.root / "mnt"),
    )
    assert "read hello from the guide's export" in out
    assert (stack.export_root / "written.txt").read_text() == "written through the guide's flow\n"


def test_a_role_startup_script_through_fluxon_py_runtime(stack: GuideStack) -> None:
    out = run_guide_script(
        stack,
        """
        import sys
        from fluxon_py.runtime import start_kv_master_process, wait_subproc_or_ctrlc
        from fluxon_py.runtime.process_runner import ManagedSubprocess
        from fluxon_py.logging import init_logger

        logger = init_logger()
        proc = start_kv_master_process(
            {"instance_key": "side-master", "cluster_name": "side", "port": 0, "cluster_secret_file": sys.argv[1]},
            workdir=sys.argv[2],
        )
        ready = proc.wait_ready(30)
        print("ready", ready.role)
        proc.terminate()  # a role that goes away while the script waits on it is reported, not ignored
        try:
            wait_subproc_or_ctrlc([ManagedSubprocess("side-master", proc)], stop_timeout_seconds=10)
        except Exception as exc:
            print("reported", type(exc).__name__, logger.name)
        """,
        str(stack.root / "side.secret"),
        str(stack.root / "side-master"),
    )
    assert "ready kv_master" in out and "reported ChildProcessExitedError fluxon" in out


def test_the_kv_master_serves_the_guides_master_ui(stack: GuideStack) -> None:
    with urllib.request.urlopen(stack.master_ui + "status.json", timeout=10) as response:
        status = json.load(response)
    assert status["cluster_name"] == stack.cluster
    assert "owner-1" in {member["instance_key"] for member in status["members"]}
    with urllib.request.urlopen(stack.master_ui, timeout=10) as response:
        assert f"cluster {stack.cluster}" in response.read().decode()
    assert list((stack.root / "kv-logs").glob("kv_master.kv-master.log")), "log_dir receives the master's log"


def test_disable_observability_keeps_a_client_from_starting_sinks(stack: GuideStack, tmp_path: Path) -> None:
    out = run_guide_script(
        stack,
        """
        import json, sys
        from fluxon_py import FluxonKvClientConfig, new_store
        from fluxon_py.fluxon_fs import FluxonFsPatcher

        store = new_store(FluxonKvClientConfig(json.loads(sys.argv[1]))).unwrap("new_store failed")
        patcher = FluxonFsPatcher(store)
        patcher.set_cache_config_yaml("fluxon_fs: {cache: {}}\\nmonitoring: {prometheus: {listen_addr: '127.0.0.1:0'}}")
        print("sinks", sorted(patcher.monitoring.sinks))
        store.close().unwrap("close")
        """,
        json.dumps(stack.client_config("guide-quiet")),
    )
    assert "sinks []" in out


def test_guide_config_mistakes_name_the_field() -> None:
    from fluxon_py import FluxonKvClientConfig

    base = {"instance_key": "x", "fluxonkv_spec": {"cluster_name": "c", "share_mem_path": "/dev/shm/x"}}
    with pytest.raises(ValueError, match=r"contribute_to_cluster_pool_size\.vram must be 0"):
        FluxonKvClientConfig({**base, "contribute_to_cluster_pool_size": {"dram": 0, "vram": {0: "1GiB"}}})
    with pytest.raises(ValueError, match=r"test_spec_config\.verbose is not a known field"):
        FluxonKvClientConfig({**base, "test_spec_config": {"verbose": True}})
