"""``fluxon_register_roles``: a plugin's role runs with ``fluxon start``; a name two plugins register is an error.

The role tests install a fake distribution on disk (tests/support/plugin_packages.py) and run the
real ``fluxon`` CLI in a child, so the role is found through entry points exactly as a
pip-installed one would be. Conflicts and failing hooks are also checked in-process, on plugin
objects registered with the process-wide manager for one test.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from fluxon_core.hookspecs import RegisterRole, hookimpl
from fluxon_core.plugins import get_plugin_manager
from fluxon_core.runtime.readiness import parse_ready_line
from fluxon_core.runtime.roles import RoleConflictError, registered_roles, role_module
from tests.support.plugin_packages import FakeDistribution, make_site, run_fluxon, subprocess_env

ECHO_PLUGIN = '''
import os

import attrs

from fluxon_core.config.fields import config_field, non_empty
from fluxon_core.hookspecs import hookimpl


@attrs.frozen
class EchoConfig:
    """The echo role's YAML."""

    greeting: str = config_field(doc="what the role says when it is ready.", check=non_empty)


def _mark(name, text):
    with open(os.path.join(os.environ["ECHO_MARKS"], name), "w") as handle:
        handle.write(text)


@hookimpl
def fluxon_register_roles(register):
    register("echo", "fake_echo.role", EchoConfig, "a role that greets and waits")


@hookimpl
def fluxon_role_started(role, instance_key):  # fewer arguments than the hookspec, as docs/plugins.md shows
    _mark("started", role + " " + instance_key)


@hookimpl
def fluxon_role_stopping(role, instance_key):
    _mark("stopping", role + " " + instance_key)
'''

ECHO_MAIN = """
import sys

from fluxon_core.config import load_yaml_file
from fluxon_core.runtime.role_main import RunningRole, run_role
from fake_echo.plugin import EchoConfig


def start(config_path, workdir):
    config = load_yaml_file(EchoConfig, config_path)
    print("echo says " + config.greeting, flush=True)
    return RunningRole(instance_key="echo-1", endpoint="none://", config=config, stop=lambda: None)


def main(argv=None):
    return run_role("echo", start, argv)


if __name__ == "__main__":
    sys.exit(main())
"""

ECHO = FakeDistribution(
    "fluxon-fake-echo",
    {"echo": "fake_echo.plugin"},
    {"fake_echo.plugin": ECHO_PLUGIN, "fake_echo.role.__main__": ECHO_MAIN},
)


def _twin(dist_name: str, entry_point: str) -> FakeDistribution:
    source = f"""
from fluxon_core.hookspecs import hookimpl


@hookimpl
def fluxon_register_roles(register):
    register("twin", "fake_{entry_point}", dict, "one of two roles with the same name")
"""
    return FakeDistribution(dist_name, {entry_point: f"fake_{entry_point}"}, {f"fake_{entry_point}": source})


@attrs.frozen
class EchoRun:
    """What one ``fluxon start echo`` printed and left behind."""

    returncode: int
    stdout: str
    stderr: str
    marks: dict[str, str]


@pytest.fixture(scope="module")
def echo_run(tmp_path_factory: pytest.TempPathFactory) -> EchoRun:
    # One child (~1 s of imports): start the role, wait for its readiness line, SIGTERM it.
    root = tmp_path_factory.mktemp("echo")
    site = make_site(root, ECHO)
    marks = root / "marks"
    marks.mkdir()
    (root / "echo.yaml").write_text("greeting: hello from a plugin role\n", encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, "-m", "fluxon_core.cli", "start", "echo", "-c", "echo.yaml", "-w", "work"],
        cwd=root,
        env=subprocess_env([site], "echo", ECHO_MARKS=str(marks)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    printed = []
    try:
        for line in child.stdout:
            printed.append(line)
            if parse_ready_line(line) is not None:
                break
        child.send_signal(signal.SIGTERM)
        rest, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
    found = {path.name: path.read_text(encoding="utf-8") for path in marks.iterdir()}
    return EchoRun(child.returncode, "".join(printed) + rest, stderr, found)


def test_fluxon_start_runs_a_role_a_plugin_registers(echo_run: EchoRun) -> None:
    assert echo_run.returncode == 0, echo_run.stderr
    lines = echo_run.stdout.splitlines()
    assert lines[0] == "echo says hello from a plugin role", "the role's YAML is parsed into its config_type"
    ready = parse_ready_line(lines[1])
    assert ready is not None and ready.role == "echo" and ready.fields["instance_key"] == "echo-1"
    assert echo_run.marks.get("stopping") == "echo echo-1"


def test_a_lifecycle_hook_taking_fewer_arguments_runs_in_a_real_role(echo_run: EchoRun) -> None:
    assert echo_run.marks.get("started") == "echo echo-1", echo_run.stderr


# ---------------------------------------------------------------- in-process: conflicts and failing hooks


class _Roles:
    def __init__(self, *names: str, raises: bool = False) -> None:
        self.names = names
        self.raises = raises

    @hookimpl
    def fluxon_register_roles(self, register: RegisterRole) -> None:
        for name in self.names:
            register(name, f"fake.{name}", dict, "a test role")
        if self.raises:
            raise RuntimeError("role hook broke half-way")


@pytest.fixture
def installed() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        get_plugin_manager().unregister(name)


def _install(installed: list[str], name: str, plugin: Any) -> None:
    get_plugin_manager().register(plugin, name=name)
    installed.append(name)


def test_roles_of_the_core_and_fluxon_fs_come_through_the_hook() -> None:
    roles = registered_roles()
    names = ("kv-master", "owner", "fs-master", "fs-agent", "s3-gateway")
    assert {name: roles[name].module for name in names} == {
        "kv-master": "fluxon_core.kv.kv_master",
        "owner": "fluxon_core.kv.owner",
        "fs-master": "fluxon_fs.fs_master",
        "fs-agent": "fluxon_fs.fs_agent",
        "s3-gateway": "fluxon_fs.s3_gateway",
    }


def test_a_role_name_registered_by_two_plugins_is_an_error_naming_both(installed: list[str]) -> None:
    _install(installed, "first_roles", _Roles("twin", "solo"))
    _install(installed, "second_roles", _Roles("twin"))
    with pytest.raises(RoleConflictError) as caught:
        registered_roles()
    message = str(caught.value)
    assert "role 'twin'" in message and "first_roles" in message and "second_roles" in message
    with pytest.raises(RoleConflictError):
        role_module("solo")


def test_a_raising_role_hook_drops_only_that_plugins_roles(installed: list[str]) -> None:
    _install(installed, "broken_roles", _Roles("half-done", raises=True))
    _install(installed, "good_roles", _Roles("whole"))
    roles = registered_roles()
    assert "half-done" not in roles and roles["whole"].plugin == "good_roles"
    assert "fs-agent" in roles


def test_fluxon_start_of_a_role_two_installed_plugins_register_fails_naming_both(tmp_path: Path) -> None:
    site = make_site(tmp_path, _twin("fluxon-fake-twin-a", "twin_a"), _twin("fluxon-fake-twin-b", "twin_b"))
    proc = run_fluxon(["start", "twin", "-c", "unused.yaml"], [site], tmp_path)
    assert proc.returncode != 0
    assert "role 'twin' is registered by plugins twin_a and twin_b" in proc.stderr


def test_a_role_conflict_leaves_the_other_commands_working(tmp_path: Path) -> None:
    site = make_site(tmp_path, _twin("fluxon-fake-twin-a", "twin_a"), _twin("fluxon-fake-twin-b", "twin_b"))
    listed = run_fluxon(["plugins"], [site], tmp_path)
    assert listed.returncode == 0, listed.stderr
    started = run_fluxon(["start", "twin", "-c", "unused.yaml"], [site], tmp_path)
    assert "Traceback" not in started.stderr
