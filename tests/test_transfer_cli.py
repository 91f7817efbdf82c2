"""``fluxon transfer`` against a real fs cluster (kv plane, fs master and an agent as processes).

One cluster serves the whole module (starting it takes ~3 s); each test uses its own source folder
and target prefix (the token-lifetime test starts its own, with a 2 s token lifetime). Most commands run in-process through the argparse tree; one test runs the real
``fluxon`` entry point in a subprocess.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxon_core.cli import Command, build_parser
from fluxon_fs.cli import transfer as commands
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.prescan import transfer_check_local_blocking
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, fs_cluster
from tests.support.poll import wait_until
from tests.support.trees import assert_same_tree, make_tree

ROOT = Path(__file__).resolve().parents[1]


class Cli:
    """The cluster plus a CLI config file; ``run`` executes ``fluxon transfer ...`` in-process."""

    def __init__(self, fs: FsCluster, src: Path, dst: Path, config: Path) -> None:
        self.fs, self.src, self.dst, self.config = fs, src, dst, config

    def run(self, capsys: pytest.CaptureFixture[str], *argv: str, user: str = ADMIN[0]) -> tuple[int, str, str]:
        parser = build_parser({"transfer": Command("transfer", "h", commands.add_arguments, commands.run, "test")})
        action, *rest = argv
        args = parser.parse_args(["transfer", action, "-c", str(self.config), "--user", user, *rest])
        status = args._run(args)
        out, err = capsys.readouterr()
        return status, out, err

    def json(self, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
        status, out, err = self.run(capsys, *argv, "--json")
        assert status == 0, err
        return json.loads(out)


@pytest.fixture(scope="module")
def cli() -> Iterator[Cli]:
    with fs_cluster() as fs:
        fs.start_master()
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        fs.start_agent("agent-1", {"src": str(src), "dst": str(dst)})
        config = fs.root / "cli.yaml"
        # No instance_key: the command picks transfer-cli-<pid>.
        kvclient = {k: v for k, v in fs.kvclient("unused").items() if k != "instance_key"}
        config.write_text(yaml.safe_dump({"kvclient": kvclient, "fluxon_fs": {"master": {"instance_key": MASTER_KEY}}}))
        yield Cli(fs, src, dst, config)


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(commands.PASSWORD_ENV, ADMIN[1])


def test_create_wait_list_and_show_in_text_and_json(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(cli.src / "data" / "a", files=40)
    status, out, err = cli.run(
        capsys, "create", "--source", "src:data/a", "--target", "dst:in", "--batch-ready-bytes", "100KiB", "--wait"
    )
    assert status == 0, err
    assert "state:      succeeded" in out and "files:      40/40" in out
    assert_same_tree(cli.src / "data" / "a", cli.dst / "in" / "a")
    job_id = out.split("job:", 1)[1].split()[0]

    status, out, _ = cli.run(capsys, "list")
    assert status == 0
    line = next(line for line in out.splitlines() if line.startswith(job_id))
    assert "succeeded" in line and "40/40" in line and "src:data/a -> dst:in" in line

    listed = cli.json(capsys, "list")
    job = next(j for j in listed if j["job_id"] == job_id)
    assert job["counters"]["files_copied"] == 40 and job["state_store_error"] == ""

    shown = cli.json(capsys, "show", job_id)
    assert shown["job"]["state"] == "succeeded"
    assert len(shown["batches"]) == job["counters"]["batches_total"] > 1
    assert all(b["state"] == "done" and b["claims"] == 1 for b in shown["batches"])

    status, out, _ = cli.run(capsys, "show", job_id, "--batches")
    assert status == 0
    assert f"batch states: {len(shown['batches'])} done" in out
    assert len([line for line in out.splitlines() if " done " in line]) == len(shown["batches"])


def test_create_prints_the_job_id_and_wait_reports_it(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(cli.src / "data" / "b", files=10)
    created = cli.json(capsys, "create", "--source", "src:data/b", "--target", "dst")
    final = cli.json(capsys, "wait", created["job_id"], "--timeout", "60")
    assert final["state"] == "succeeded" and final["spec"]["target_prefix"] == ""
    assert_same_tree(cli.src / "data" / "b", cli.dst / "b")


def test_pause_resume_cancel_and_what_is_refused(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(cli.src / "data" / "c", files=5)
    # No agent serves export "elsewhere" as a target, so the job stays running with nothing claimed.
    job_id = cli.json(capsys, "create", "--source", "src:data/c", "--target", "elsewhere:x")["job_id"]
    wait_until(lambda: cli.json(capsys, "show", job_id)["job"]["state"] == "running", 20, "scan done")

    assert cli.run(capsys, "pause", job_id)[1].strip() == f"{job_id}: paused"
    assert cli.json(capsys, "resume", job_id)["state"] == "running"
    assert cli.run(capsys, "cancel", job_id)[1].strip() == f"{job_id}: cancelled"

    status, _, err = cli.run(capsys, "retry", job_id)
    assert status == 1 and "cancelled; only a failed or unfinished job can be retried" in err
    status, _, err = cli.run(capsys, "resume", job_id)
    assert status == 1 and "cannot change it to running" in err
    status, _, err = cli.run(capsys, "show", "job-that-does-not-exist")
    assert status == 1 and "KeyNotFoundError" in err and "job-that-does-not-exist" in err


def test_failed_job_exits_1_on_wait_and_retry_completes_it(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(cli.src / "data" / "d", files=12)
    victim = next(p for p in sorted((cli.src / "data" / "d").rglob("*.bin")) if p.stat().st_size)
    blocker = cli.dst / "retry" / "d" / victim.relative_to(cli.src / "data" / "d")
    blocker.mkdir(parents=True)  # a directory where a file must go: that batch fails
    status, out, _ = cli.run(
        capsys, "create", "--source", "src:data/d", "--target", "dst:retry", "--max-attempts", "1", "--wait"
    )
    assert status == 1 and "state:      failed" in out and "1 batch(es) failed" in out
    assert victim.name in out  # the recent errors name the file

    job_id = out.split("job:", 1)[1].split()[0]
    blocker.rmdir()
    assert cli.json(capsys, "retry", job_id)["state"] == "running"
    status, out, err = cli.run(capsys, "wait", job_id, "--timeout", "60")
    assert status == 0, err
    assert_same_tree(cli.src / "data" / "d", cli.dst / "retry" / "d")


def test_import_a_prescan(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    make_tree(cli.src / "data" / "e", files=20)
    # The fs master's default store: sqlite in its workdir, default key prefix.
    store = {"kind": "sqlite", "sqlite": {"path": str(cli.fs.root / "fs-master" / "transfer_state.db")}}
    summary = transfer_check_local_blocking(str(cli.src / "data" / "e"), store, batch_ready_bytes=50_000)
    status, out, err = cli.run(
        capsys, "import", summary.job_id, "--source-export", "src", "--target", "dst:imported", "--wait"
    )
    assert status == 0, err
    assert f"pre-scan:   {summary.job_id}" in out
    assert_same_tree(cli.src / "data" / "e", cli.dst / "imported" / "e")


def test_bad_input_is_a_usage_error(
    cli: Cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    status, _, err = cli.run(capsys, "create", "--source", ":data", "--target", "dst")
    assert status == 2 and "--source must be EXPORT or EXPORT:PATH" in err
    status, _, err = cli.run(capsys, "create", "--source", "src", "--target", "dst", "--batch-ready-bytes", "lots")
    assert status == 2 and "--batch-ready-bytes" in err
    status, _, err = cli.run(capsys, "create", "--source", "src:x", "--target", "dst", "--workers", "0")
    assert status == 1 and "desired_worker_count must be >= 1" in err

    status, _, err = cli.run(capsys, "list", user="nobody")
    assert status == 1 and "PermissionDeniedError" in err

    bad = tmp_path / "bad.yaml"
    bad.write_text("fluxon_fs: {master: {instance_key: fs-master}}\n")
    parser = build_parser({"transfer": Command("transfer", "h", commands.add_arguments, commands.run, "test")})
    args = parser.parse_args(["transfer", "list", "-c", str(bad), "--user", "admin"])
    assert args._run(args) == 2 and "kvclient is required" in capsys.readouterr().err

    monkeypatch.delenv(commands.PASSWORD_ENV)
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - not a terminal: no prompt
    status, _, err = cli.run(capsys, "list")
    assert status == 2 and f"set {commands.PASSWORD_ENV}" in err


# Runs the real ``fluxon`` entry point (``fluxon transfer`` comes from the fluxon_fs plugin).
FLUXON = """
import sys
from fluxon_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_fluxon_command_runs_it(cli: Cli) -> None:
    env = dict(os.environ, **{commands.PASSWORD_ENV: ADMIN[1]})
    result = subprocess.run(
        [sys.executable, "-c", FLUXON, "transfer", "list", "-c", str(cli.config), "--user", ADMIN[0], "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)


TOKEN_TTL_S = 2


def test_wait_outlasts_the_session_token() -> None:
    """``fluxon transfer wait`` and ``TransferClient.wait`` on a job that runs longer than the token lifetime.

    The job's target export has no agent at first, so the job stays running; once both waits have
    run past the first token's expiry, an agent for the target appears and the job finishes.
    """
    with fs_cluster() as fs:
        fs.start_master(session={"token_ttl_s": TOKEN_TTL_S, "revocation_bound_s": 0.5})
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        make_tree(src / "data" / "slow", files=12)
        fs.start_agent("agent-src", {"src": str(src)})
        config = fs.root / "cli.yaml"
        config.write_text(
            yaml.safe_dump({"kvclient": fs.kvclient("cli-wait"), "fluxon_fs": {"master": {"instance_key": MASTER_KEY}}})
        )

        client = TransferClient(fs.kv.external("py-wait", fs.host), MASTER_KEY, *ADMIN)
        started = time.monotonic()
        job_id = client.create_job(
            JobSpec(
                source_export="src",
                source_dir="data/slow",
                target_export="dst",
                target_prefix="",
                batch_ready_bytes=50_000,
            )
        )
        env = dict(os.environ, **{commands.PASSWORD_ENV: ADMIN[1]})
        command = [sys.executable, "-c", FLUXON, "transfer", "wait", job_id, "-c", str(config), "--user", ADMIN[0]]
        cli_wait = subprocess.Popen(
            [*command, "--timeout", "120", "--json"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            python_wait = pool.submit(client.wait, job_id, 120)
            try:
                # Both waits keep polling across more than one token lifetime (the Python one logged in again)...
                wait_until(lambda: client.session.logins >= 3, 30, "the Python client to renew its login twice")
                wait_until(lambda: time.monotonic() - started > TOKEN_TTL_S + 1, 10, "the first token to expire")
                assert client.show(job_id)["job"]["state"] == "running"
                assert cli_wait.poll() is None and not python_wait.done()
                # ...and see the job finish once the target has an agent.
                fs.start_agent("agent-dst", {"dst": str(dst)})
                final = python_wait.result(120)
                out, err = cli_wait.communicate(timeout=120)
            finally:
                if cli_wait.poll() is None:
                    cli_wait.kill()
                    cli_wait.wait()
        assert final["state"] == "succeeded", final
        assert cli_wait.returncode == 0, err
        assert json.loads(out)["state"] == "succeeded"
        assert_same_tree(src / "data" / "slow", dst / "slow")
