"""The role runtime: start helpers, readiness lines, parent-death cleanup, supervision, CLI commands."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from fluxon_core.runtime import (
    ChildProcessExitedError,
    ManagedSubprocess,
    RoleStartError,
    start_kv_master_process,
    wait_subproc_or_ctrlc,
)
from fluxon_core.runtime.commands import fetch_status, format_status
from fluxon_core.runtime.readiness import format_ready_line, parse_ready_line, wait_for_ready_line
from tests.support.kv_cluster import kv_cluster
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[1]
CHILDREN = [sys.executable, "-m", "tests.support.runtime_children"]


def master_config(tmp: Path, **extra: object) -> dict:
    return {"instance_key": "m", "cluster_name": "rt", "cluster_secret_file": str(tmp / "secret"), **extra}


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] in ("Z", "X")


def catches_signal(pid: int, signum: int) -> bool:
    """True when process ``pid`` has a handler installed for ``signum`` (SigCgt in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    return False


def test_readiness_line_round_trip():
    line = format_ready_line("owner", instance_key="o1", endpoint="tcp://h:1")
    info = parse_ready_line(line + "\n")
    assert info is not None and info.role == "owner" and info.instance_key == "o1" and info.endpoint == "tcp://h:1"
    assert parse_ready_line("INFO something else") is None
    with pytest.raises(ValueError, match="without whitespace"):
        format_ready_line("owner", instance_key="has space")


def test_start_kv_master_process_writes_its_config_and_log(tmp_path):
    proc = start_kv_master_process(master_config(tmp_path), workdir=tmp_path / "work")
    try:
        ready = proc.wait_ready(30)
        assert ready.role == "kv_master" and ready.instance_key == "m" and ready.endpoint.startswith("tcp://")
        runtime_yaml = tmp_path / "work" / "kv_master.runtime.yaml"
        assert proc.config_path == runtime_yaml
        assert yaml.safe_load(runtime_yaml.read_text()) == master_config(tmp_path)
        assert stat.S_IMODE(runtime_yaml.stat().st_mode) == 0o600
        assert proc.log_path == tmp_path / "work" / "log" / "kv_master.log"
        assert "FLUXON_READY role=kv_master" in proc.log_path.read_text()
        assert json.loads((tmp_path / "work" / "kv_master.json").read_text())["endpoint"] == ready.endpoint
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    # a path config is used as is, and a second start appends to the same log
    path_config = tmp_path / "master.yaml"
    path_config.write_text(yaml.safe_dump(master_config(tmp_path)))
    again = start_kv_master_process(path_config, workdir=tmp_path / "work", log_path=proc.log_path)
    try:
        assert again.config_path == path_config.resolve()
        assert again.log_offset > 0 and again.wait_ready(30).endpoint != ready.endpoint
    finally:
        again.terminate()
        again.wait(15)


def test_a_role_that_cannot_start_reports_its_log(tmp_path):
    proc = start_kv_master_process(master_config(tmp_path, colour="blue"), workdir=tmp_path)
    with pytest.raises(
        RoleStartError, match=r"(?s)exited with status 1 before it was ready.*colour is not a known field"
    ):
        proc.wait_ready(30)


def test_children_die_with_their_launcher(tmp_path):
    launcher = subprocess.Popen([*CHILDREN, "launcher", str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert launcher.stdout is not None
    master_pid = int(launcher.stdout.readline())
    assert not gone(master_pid)
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(10)
    wait_until(lambda: gone(master_pid), 10, "the kv master to exit after its launcher died")


def test_an_unexpected_child_exit_raises_with_label_and_status():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    quitter = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    children = [ManagedSubprocess("sleeper", sleeper), ManagedSubprocess("quitter", quitter)]
    with pytest.raises(ChildProcessExitedError, match=r"child 'quitter' exited unexpectedly with status 3") as info:
        wait_subproc_or_ctrlc(children, stop_timeout_seconds=5)
    assert info.value.label == "quitter" and info.value.returncode == 3
    assert sleeper.poll() is not None  # the others were stopped


@pytest.mark.parametrize(
    ("signum", "stop_timeout", "expected"),
    [
        (signal.SIGTERM, 5.0, ["on_ctrlc", "third", "second", "first"]),
        (signal.SIGINT, 5.0, ["on_ctrlc", "third", "second", "first"]),
        # third ignores SIGTERM: after the timeout it is SIGKILLed and the stop goes on
        (signal.SIGTERM, 0.5, ["on_ctrlc", "third:ignored", "second", "first"]),
    ],
)
def test_ctrl_c_or_sigterm_stops_children_in_reverse_order(tmp_path, signum, stop_timeout, expected):
    record = tmp_path / "record"
    supervisor = subprocess.Popen(
        [*CHILDREN, "supervisor", str(record), str(stop_timeout)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert supervisor.stdout is not None and supervisor.stdout.readline().strip() == "supervising"
    # supervising starts when wait_subproc_or_ctrlc has installed its SIGTERM handler
    wait_until(lambda: catches_signal(supervisor.pid, signal.SIGTERM), 10, "the supervisor to catch SIGTERM")
    supervisor.send_signal(signum)
    assert supervisor.wait(30) == 130
    assert record.read_text().split() == expected


def cli(*argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHILDREN, "cli", *argv], capture_output=True, text=True, cwd=ROOT, timeout=timeout_s)


def test_fluxon_status_shows_members_roles_and_pool_usage():
    with kv_cluster() as cluster:
        cluster.start_master()
        cluster.start_owner("o1", "h1", dram="8MiB")
        client = cluster.external("reader-1", "h1")
        assert client.put_blocking("/status/k", {"data": b"x" * 10_000}).is_ok()
        config = cluster.root / "reader.yaml"
        config.write_text(yaml.safe_dump(cluster.external_config("status-tool", "h1")))
        master_workdir = str(cluster.root / "master")

        status = fetch_status(workdir=master_workdir)
        members = {m["instance_key"]: m for m in status["members"]}
        assert members["o1"]["role"] == "owner" and members["reader-1"]["role"] == "external"
        wait_until(
            lambda: fetch_status(config=str(config))["members"][0]["stats"].get("entries") == 1,
            10,
            "the owner's keep-alive to report its pool usage",
        )
        table = format_status(fetch_status(config=str(config)))
        assert "o1" in table and "reader-1" in table and "/8.0MiB" in table

        shown = cli("status", "-w", master_workdir)
        assert shown.returncode == 0, shown.stderr
        assert "owner" in shown.stdout and "external" in shown.stdout and cluster.cluster_name in shown.stdout
        as_json = cli("status", "-c", str(config), "--json")
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["master"]["keys"] == 1
    failed = cli("status", "-w", str(tmp_root := Path(tempfile.mkdtemp(prefix="fx", dir="/tmp"))))
    assert failed.returncode == 1 and "kv_master.json does not exist" in failed.stderr
    os.rmdir(tmp_root)


def test_fluxon_start_runs_a_role_in_the_foreground(tmp_path):
    config = tmp_path / "master.yaml"
    config.write_text(yaml.safe_dump(master_config(tmp_path)))
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*CHILDREN, "cli", "start", "kv-master", "-c", str(config), "-w", str(tmp_path / "w")],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        ready = wait_for_ready_line(proc, log, role="kv_master", timeout_s=30)
        assert ready.instance_key == "m"
        assert (tmp_path / "w" / "kv_master.json").exists()
    finally:
        proc.terminate()
    assert proc.wait(15) == 0
