"""The guide's verification flow, run as the guide describes: the service script, the writer, the reader,
and ``fluxon demo`` — real processes, checked through what they print."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[1]
OP_LINE = re.compile(r"^op=(\w+) path=(\S+) bytes=(\d+) latency_ms=([\d.]+)$", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def demo_env(tmp_path):
    name = f"t{uuid.uuid4().hex[:8]}"
    env = dict(os.environ)
    env.update(
        {
            "CLUSTER_NAME": name,
            "SHARED_MEMORY_PATH": f"/dev/shm/{name}",
            "SHARED_FILE_PATH": str(tmp_path / "shared"),
            "REMOTE_ROOT_DIR": str(tmp_path / "export"),
            "KV_MASTER_PORT": str(free_port()),
            "FS_PANEL_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "S3_GATEWAY_LISTEN_ADDR": f"127.0.0.1:{free_port()}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    yield env, tmp_path / "work"
    subprocess.run(["rm", "-rf", f"/dev/shm/{name}"], check=False)


def ops(output: str) -> dict[str, list[tuple[str, int]]]:
    found: dict[str, list[tuple[str, int]]] = {}
    for op, path, nbytes, _latency in OP_LINE.findall(output):
        found.setdefault(op, []).append((path, int(nbytes)))
    return found


def test_service_writer_reader_as_in_the_guide(demo_env):
    env, workdir = demo_env
    env["WORKDIR"] = str(workdir)
    del env["REMOTE_ROOT_DIR"]  # unset: the export directory follows WORKDIR
    log = workdir.parent / "svc.out"
    with open(log, "w") as out:
        svc = subprocess.Popen(
            [sys.executable, "examples/start_kv_and_fs_svc.py"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(lambda: "press Ctrl-C" in log.read_text() or svc.poll() is not None, 120, "the service to start")
        assert svc.poll() is None, log.read_text()
        summary = log.read_text()
        assert "panel:" in summary and "writer.yaml" in summary
        writer = subprocess.run(
            [sys.executable, "examples/start_fluxon_fs_writer.py", "-c", str(workdir / "writer.yaml"), "-w",
             str(workdir / "writer"), "--rounds", "3", "--interval", "0.05"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert writer.returncode == 0, writer.stderr
        written = ops(writer.stdout)
        assert len(written["write_remote"]) == 3 and len(written["write_local"]) == 3
        reader = subprocess.run(
            [sys.executable, "examples/start_fluxon_fs_reader.py", "-c", str(workdir / "reader.yaml"), "-w",
             str(workdir / "reader"), "--rounds", "2", "--interval", "0.05"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert reader.returncode == 0, reader.stderr
        read = ops(reader.stdout)
        assert len(read["read_remote"]) == 6 and len(read["read_local"]) == 6
        assert {n for _, n in read["read_remote"]} == {262144}
        # what the reader saw through its mount is what the writer put on the agent's disk
        export = workdir / "export_demo" / "fluxon_example"
        assert sorted(p.name for p in export.iterdir()) == ["file_0.bin", "file_1.bin", "file_2.bin"]
    finally:
        svc.send_signal(signal.SIGINT)
        status = svc.wait(60)
    assert status == 130, log.read_text()[-3000:]


def test_fluxon_demo_runs_rounds_and_stops(demo_env):
    env, workdir = demo_env
    result = subprocess.run(
        ["fluxon", "demo", "--workdir", str(workdir), "--rounds", "2", "--exit-after-rounds"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    seen = ops(result.stdout)
    assert {"write_remote", "write_local", "read_remote", "read_local"} <= set(seen)
    assert "panel: http://" in result.stdout
