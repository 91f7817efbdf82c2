"""``pip install fluxon`` without extras is enough for a mount client and an fs agent.

A fresh virtual environment gets the package without any extra (no starlette, uvicorn, jinja2, etcd or
tikv client); from there ``import fluxon_py.fluxon_fs`` works, ``fluxon start fs-agent`` serves an
export, and a child process mounts it and reads and writes through ``open()``. The kv plane and the fs
master (which needs the ``panel`` extra) run from the test's own environment, as on a real cluster
where the master host has the panel installed and the agent and client hosts do not.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fluxon_core.runtime.readiness import parse_ready_line
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, fs_cluster

REPO_ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY_MODULES = ("starlette", "uvicorn", "jinja2", "pyetcd", "tikv_client")


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv holding ``fluxon`` installed from this checkout without extras."""
    base = tmp_path_factory.mktemp("no-extras")
    # pip builds a local project in its own tree: build from a copy so the checkout stays clean.
    source = base / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv*", "build", "*.egg-info", "tests"))
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        timeout=900,
        env=_bare_env(),
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return python


def _bare_env() -> dict[str, str]:
    # Nothing of the test's own environment may leak into the bare venv's imports.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(python: Path, code: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_bare_env()
    )


def test_the_bare_install_imports_the_public_fs_api_without_any_extra(bare_python: Path, tmp_path: Path) -> None:
    code = (
        "import importlib.util, sys\n"
        f"missing = [m for m in {EXTRAS_ONLY_MODULES!r} if importlib.util.find_spec(m) is None]\n"
        "import fluxon_py.fluxon_fs as fs\n"
        "from fluxon_py.fluxon_fs import FluxonFsPatcher, FsAgent, install_patcher_from_master\n"
        "import fluxon_fs, fluxon_core\n"
        "print(len(missing), len(fs.__all__), fluxon_fs.__file__)\n"
    )
    done = _run(bare_python, code, tmp_path)
    assert done.returncode == 0, done.stderr
    missing, names, location = done.stdout.split()
    assert int(missing) == len(EXTRAS_ONLY_MODULES), "the venv must really lack every extra"
    assert int(names) > 10
    assert not location.startswith(str(REPO_ROOT)), "the package must come from the bare venv, not the checkout"


@pytest.fixture
def cluster() -> Iterator[FsCluster]:
    with fs_cluster() as fs:
        fs.start_master()
        yield fs


class _ReadinessReader:
    """Collects a child's stdout lines in a thread so the test can wait for the readiness line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=lambda: [self.lines.put(line) for line in stream], daemon=True).start()

    def wait_ready(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            info = parse_ready_line(line)
            if info is not None:
                return info.role
        raise AssertionError(f"no readiness line within {timeout_s}s; stdout: {''.join(self.seen)}")


MOUNT_CLIENT = """
import json, os, sys
from fluxon_py.kvclient import FluxonKvClientConfig, new_store
from fluxon_py.fluxon_fs import FluxonFsPatcher

args = json.loads(sys.argv[1])
store = new_store(FluxonKvClientConfig(args["kvclient"])).unwrap("new_store failed")
patcher = FluxonFsPatcher(store)
patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": {"instance_key": args["master"]}}}))
patcher.set_cache_config_yaml(json.dumps({"fluxon_fs": args["section"]}))
patcher.set_request_identity(*args["identity"])
patcher.install()
patcher.mount_remote_dir(local_mount_dir_abs=args["mount"], export_name="data")
with open(os.path.join(args["mount"], "from_agent.txt")) as f:
    print("read:" + f.read().strip())
with open(os.path.join(args["mount"], "from_client.txt"), "w") as f:
    f.write("written without extras\\n")
print("listing:" + ",".join(sorted(os.listdir(args["mount"]))))
patcher.uninstall()
store.close()
print("starlette loaded:", "starlette" in sys.modules)
"""


def test_fluxon_start_fs_agent_and_a_mount_run_from_the_bare_install(
    bare_python: Path, cluster: FsCluster, tmp_path: Path
) -> None:
    export_root = cluster.export_dir("data")
    (export_root / "from_agent.txt").write_text("served by a bare agent\n")
    agent_config = tmp_path / "agent.yaml"
    agent_config.write_text(yaml.safe_dump(cluster.agent_config("bare-agent", {"data": str(export_root)})))
    fluxon = bare_python.with_name("fluxon")
    agent = subprocess.Popen(
        [str(fluxon), "start", "fs-agent", "-c", str(agent_config), "-w", str(tmp_path / "agent-work")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env=_bare_env(),
    )
    try:
        assert _ReadinessReader(agent).wait_ready(90) == "fs_agent"
        section = {
            "master": {"instance_key": MASTER_KEY},
            "cache": {"exports": {"data": {"remote_root_dir_abs": str(export_root)}}},
        }
        args = {
            "kvclient": cluster.kvclient("bare-client"),
            "master": MASTER_KEY,
            "section": section,
            "identity": list(ADMIN),
            "mount": str(tmp_path / "mnt"),
        }
        done = subprocess.run(
            [str(bare_python), "-c", MOUNT_CLIENT, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env=_bare_env(),
        )
        assert done.returncode == 0, done.stderr
        assert "read:served by a bare agent" in done.stdout
        assert "listing:from_agent.txt,from_client.txt" in done.stdout
        assert "starlette loaded: False" in done.stdout
        assert (export_root / "from_client.txt").read_text() == "written without extras\n"
    finally:
        agent.terminate()
        try:
            agent.wait(15)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(5)
