"""docs/deploy.md, run as written on three hosts with real network stacks (tests/support/netns.py).

Every ``bash`` block of the page carries a ``<!-- deploy-test: ... -->`` directive saying where it
runs (``host=a``), whether it keeps running (``background`` with the ``ready`` text it prints once
up) and what its output must contain (``expect``); ``skip`` and ``environment`` blocks are replaced
by the test (it copies the join token itself and sets the page's variables per host). Then it
checks what the page promises about secrets: none in a command line, an environment, a config
file or a log.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import attrs
import pytest

from fluxon_core.runtime.parent_death import set_parent_death_signal
from tests.support.netns import Host, NetnsLab, netns_unavailable_reason

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_MD = ROOT / "docs" / "deploy.md"
STEP = re.compile(r"<!-- deploy-test: (?P<directive>.*?) -->\n```bash\n(?P<script>.*?)```", re.S)
READY_TIMEOUT_S = 120.0

pytestmark = [pytest.mark.netns, pytest.mark.etcd, pytest.mark.timeout(400)]


@attrs.frozen
class Step:
    """One command block of the page and its directive."""

    script: str
    host: str = ""
    background: bool = False
    ready: str = ""
    expect: tuple[str, ...] = ()
    skip: str = ""


def page_steps() -> list[Step]:
    text = DEPLOY_MD.read_text(encoding="utf-8")
    steps = []
    for match in STEP.finditer(text):
        directive, script = match["directive"], match["script"]
        if directive.startswith(("skip", "environment")):
            steps.append(Step(script, skip=directive))
            continue
        words = shlex.split(directive)
        options = dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("expect="))
        steps.append(
            Step(
                script,
                host=options["host"],
                background="background" in words,
                ready=options.get("ready", ""),
                expect=tuple(word.split("=", 1)[1] for word in words if word.startswith("expect=")),
            )
        )
    assert len(steps) == text.count("```bash"), "every bash block of docs/deploy.md needs a deploy-test directive"
    return steps


def test_every_command_block_of_the_page_has_a_directive() -> None:
    steps = page_steps()
    assert [s.host for s in steps if s.background] == ["a", "a", "b", "c"]
    assert any("FLUXON_JOIN_TOKEN_FILE" in s.script for s in steps)


class Background:
    """A long-running step: its process group and its output file."""

    def __init__(self, host: Host, script: str, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [*host.launcher, "bash", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=set_parent_death_signal,  # ends with the test process
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never printed (exit {self.proc.poll()}):\n{self.output()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the service script stops its roles in order
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def test_the_deploy_guide_runs_on_three_hosts(tmp_path: Path) -> None:
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    steps = page_steps()
    shm = Path("/dev/shm") / f"fxdeploy-{uuid.uuid4().hex[:8]}"
    running: list[Background] = []
    outputs: dict[str, str] = {}
    with NetnsLab(("a", "b", "c")) as lab:
        envs = {}
        for name in lab.hosts:
            envs[name] = {
                **os.environ,
                "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
                "HOST_A": lab["a"].address,
                "FLUXON_DIR": str(tmp_path / name / "fluxon"),
                "FLUXON_SHM": str(shm / name),
                "PYTHONUNBUFFERED": "1",
            }
        fluxon_dir = {name: Path(env["FLUXON_DIR"]) for name, env in envs.items()}
        try:
            for index, step in enumerate(steps):
                if step.skip.startswith("skip (the test copies the file"):
                    for name in ("b", "c"):  # what scp and chmod do
                        fluxon_dir[name].mkdir(parents=True, exist_ok=True)
                        shutil.copy2(fluxon_dir["a"] / "join.token", fluxon_dir[name] / "join.token")
                        (fluxon_dir[name] / "join.token").chmod(0o600)
                    continue
                if step.skip:
                    continue
                host = lab[step.host]
                log = tmp_path / f"step{index}-{step.host}.log"
                if step.background:
                    background = Background(host, step.script, envs[step.host], log)
                    running.append(background)
                    background.wait_for(step.ready, READY_TIMEOUT_S)
                    outputs[f"{index}"] = background.output()
                    continue
                done = subprocess.run(
                    [*host.launcher, "bash", "-c", step.script],
                    cwd=ROOT,
                    env=envs[step.host],
                    capture_output=True,
                    text=True,
                    timeout=180,
                    check=False,
                )
                assert done.returncode == 0, f"step {index} on {step.host} failed:\n{done.stdout}\n{done.stderr}"
                for expected in step.expect:
                    assert expected in done.stdout, f"step {index}: {expected!r} not in:\n{done.stdout}"
                outputs[f"{index}"] = done.stdout

            status = next(out for out in outputs.values() if "owner-b" in out and "owner-c" in out)
            for name in ("b", "c"):  # each joined member advertises its own host's address
                assert re.search(rf"owner-{name}\s.*tcp://{re.escape(lab[name].address)}:", status), status
            print(status)
            _assert_no_secret_leaks(lab, fluxon_dir)
        finally:
            for background in reversed(running):
                background.stop()
    shutil.rmtree(shm, ignore_errors=True)


def _assert_no_secret_leaks(lab: NetnsLab, fluxon_dir: dict[str, Path]) -> None:
    secrets = {
        "cluster secret": (fluxon_dir["a"] / "cluster.secret").read_text().strip(),
        "FS service secret": (fluxon_dir["a"] / "fs_service.secret").read_text().strip(),
    }
    for name in ("b", "c"):  # the joined hosts hold the same secrets, in their own 0600 files
        for file_name in ("cluster.secret", "fs_service.secret", "join.token"):
            assert (fluxon_dir[name] / file_name).stat().st_mode & 0o777 == 0o600, (name, file_name)
        assert (fluxon_dir[name] / "cluster.secret").read_text().strip() == secrets["cluster secret"]
        assert (fluxon_dir[name] / "fs_service.secret").read_text().strip() == secrets["FS service secret"]
    # holders by design: the secret files, the token, shared.json (0600) and etcd's data (publish_secret)
    holders = {"cluster.secret", "fs_service.secret", "join.token", "shared.json"}
    for directory in fluxon_dir.values():
        for path in directory.rglob("*"):
            if not path.is_file() or path.name in holders or "etcd" in path.relative_to(directory).parts:
                continue
            content = path.read_bytes()
            for what, secret in secrets.items():
                assert secret.encode() not in content, f"the {what} is in {path}"
    for host in lab.hosts.values():
        for pid in host.pids():
            for view in ("cmdline", "environ"):
                try:
                    content = Path(f"/proc/{pid}/{view}").read_bytes()
                except OSError:
                    continue  # exited meanwhile
                for what, secret in secrets.items():
                    assert secret.encode() not in content, f"the {what} is in the {view} of pid {pid} on {host.name}"
