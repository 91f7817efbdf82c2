"""The KV examples run as documented: start_master_owner.py keeps a master and owner up (its work
directory taken from WORKDIR, nothing written to the current directory), external_put_get_del.py
attaches to them, Ctrl-C stops everything with status 130."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

from tests.support.poll import wait_until
from tests.test_runtime import catches_signal, gone

ROOT = Path(__file__).resolve().parents[1]


def test_start_master_owner_then_external_put_get_del():
    root = Path(tempfile.mkdtemp(prefix="fx", dir="/tmp"))
    shm = Path("/dev/shm") / root.name
    env = dict(
        os.environ,
        HOME=str(root / "home"),  # the cluster secret goes to ~/.fluxon/secrets
        CLUSTER_NAME=f"ex{uuid.uuid4().hex[:8]}",
        SHARED_MEMORY_PATH=str(shm),
        SHARED_FILE_PATH=str(root / "shared"),
        WORKDIR=str(root / "work"),
    )
    cwd = root / "cwd"
    cwd.mkdir()
    service = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "start_master_owner.py"), "--pool-size", "32MiB"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert service.stdout is not None
        lines = []
        for line in service.stdout:
            lines.append(line)
            if "press Ctrl-C" in line:
                break
        assert any("owner" in line and "ready" in line for line in lines), lines
        client = subprocess.run(
            [sys.executable, "examples/external_put_get_del.py"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stdout + client.stderr
        assert "zero-copy view" in client.stdout and "get now gives KeyNotFoundError" in client.stdout
        logs = sorted(p.name for p in (root / "work" / "log").iterdir())
        assert logs == ["kv_master.log", "owner.log"]
        pids = [
            int(line.split("pid=")[1].split()[0])
            for p in ("kv_master", "owner")
            for line in (root / "work" / "log" / f"{p}.log").read_text().splitlines()
            if "FLUXON_READY" in line
        ]
        wait_until(lambda: catches_signal(service.pid, signal.SIGTERM), 10, "the example to supervise its roles")
        service.send_signal(signal.SIGINT)
        assert service.wait(30) == 130
        wait_until(lambda: all(gone(pid) for pid in pids), 10, "the roles to stop")
        assert not (root / "shared" / env["CLUSTER_NAME"] / "shared.json").exists()  # withdrawn on a clean stop
        assert list(cwd.iterdir()) == []  # the work directory is WORKDIR, never the current directory
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
