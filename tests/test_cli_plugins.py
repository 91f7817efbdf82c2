"""``fluxon plugins`` and plugin-contributed commands, through the real CLI in child processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.plugin_packages import fake_plugin, make_site, run_fluxon


@pytest.fixture
def mixed_site(tmp_path: Path) -> Path:
    """A good plugin, a broken one, and two that both claim a sink kind and a command."""
    return make_site(
        tmp_path,
        fake_plugin("fluxon-fake-good", "good", sinks=["good_sink"], commands=["greet"]),
        fake_plugin("fluxon-fake-broken", "broken", import_error="needs libfrobnicate"),
        fake_plugin("fluxon-fake-dup-a", "dup_a", sinks=["dup_sink"], commands=["clash"]),
        fake_plugin("fluxon-fake-dup-b", "dup_b", sinks=["dup_sink", "b_sink"], commands=["clash"]),
    )


def test_plugins_json_through_the_console_script(mixed_site: Path, tmp_path: Path) -> None:
    proc = run_fluxon(["plugins", "--json"], [mixed_site], tmp_path, console_script=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in report["plugins"]}
    assert plugins["good"] == {
        "name": "good",
        "origin": "third-party",
        "distribution": "fluxon-fake-good",
        "version": "1.0",
        "module": "fake_good",
        "provides": ["command:greet", "metrics_sink:good_sink"],
    }
    assert plugins["sqlite_state"]["origin"] == "default"
    assert "state_store:sqlite" in plugins["sqlite_state"]["provides"]
    assert plugins["fluxon_core.cli"]["origin"] == "core" and plugins["fluxon_core.cli"]["provides"] == [
        "command:plugins"
    ]
    # Every category is listed with each of its kinds and the plugin providing it.
    assert list(report["kinds"]) == [
        "transport",
        "cache",
        "state_store",
        "access_store",
        "coordinator",
        "metrics_sink",
    ]
    assert {"kind": "zmq", "plugins": ["zmq_transport"], "usable": True} in report["kinds"]["transport"]
    assert {"kind": "shm", "plugins": ["shm_cache"], "usable": True} in report["kinds"]["cache"]
    assert {"kind": "good_sink", "plugins": ["good"], "usable": True} in report["kinds"]["metrics_sink"]
    assert {"kind": "dup_sink", "plugins": ["dup_a", "dup_b"], "usable": False} in report["kinds"]["metrics_sink"]
    # Conflicting contributions stay listed under both plugins, and are reported as conflicts.
    assert plugins["dup_b"]["provides"] == ["command:clash", "metrics_sink:b_sink", "metrics_sink:dup_sink"]
    assert "broken" not in plugins
    assert {"name": "broken", "error": "ImportError: needs libfrobnicate"} in report["failed"]
    conflicts = {(c["category"], c["name"]): c for c in report["conflicts"]}
    assert conflicts[("metrics_sink", "dup_sink")]["plugins"] == ["dup_a", "dup_b"]
    assert (
        conflicts[("command", "clash")]["error"]
        == "duplicate command 'clash': provided by plugin 'dup_a' and by plugin 'dup_b'"
    )


def test_plugins_table(mixed_site: Path, tmp_path: Path) -> None:
    proc = run_fluxon(["plugins"], [mixed_site], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["plugin", "origin", "distribution", "provides"]
    blank = lines.index("")
    rows = {line.split()[0]: line.split() for line in lines[1:blank]}
    assert rows["good"] == [
        "good",
        "third-party",
        "fluxon-fake-good",
        "1.0",
        "command:greet,",
        "metrics_sink:good_sink",
    ]
    assert rows["sqlite_state"][:4] == ["sqlite_state", "default", "fluxon", "0.1.0"]
    assert lines[blank + 1].split() == ["category", "kind", "plugin"]
    kind_rows = [line.split(maxsplit=2) for line in lines[blank + 2 :] if not line.startswith(("FAILED", "CONFLICT"))]
    assert ["transport", "zmq", "zmq_transport"] in kind_rows
    assert ["cache", "shm", "shm_cache"] in kind_rows
    assert ["access_store", "sqlite", "sqlite_access"] in kind_rows
    assert ["coordinator", "local", "local_coordination"] in kind_rows
    assert ["state_store", "sqlite", "sqlite_state"] in kind_rows
    assert ["metrics_sink", "good_sink", "good"] in kind_rows
    assert ["metrics_sink", "dup_sink", "dup_a and dup_b (unusable: duplicate)"] in kind_rows
    assert "FAILED broken: ImportError: needs libfrobnicate" in lines
    assert any(
        line.startswith(
            "CONFLICT duplicate metrics_sink kind 'dup_sink': provided by plugin 'dup_a' and by plugin 'dup_b'"
        )
        for line in lines
    )
    assert "CONFLICT duplicate command 'clash': provided by plugin 'dup_a' and by plugin 'dup_b'" in lines


def test_plugin_commands_run_and_a_duplicate_command_fails_naming_both(mixed_site: Path, tmp_path: Path) -> None:
    greet = run_fluxon(["greet", "--who", "tests"], [mixed_site], tmp_path)
    assert (greet.returncode, greet.stdout) == (0, "good greets tests\n"), greet.stderr
    clash = run_fluxon(["clash", "--who", "x"], [mixed_site], tmp_path)
    assert clash.returncode == 2
    assert "duplicate command 'clash': provided by plugin 'dup_a' and by plugin 'dup_b'" in clash.stderr
    assert clash.stdout == ""


def test_a_command_hook_that_raises_is_reported_and_the_cli_still_works(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        fake_plugin("fluxon-fake-cmdboom", "cmdboom", sinks=["boom_sink"], raising_hook="fluxon_register_commands"),
    )
    proc = run_fluxon(["plugins", "--json"], [site], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {
        "name": "cmdboom",
        "error": "fluxon_register_commands raised RuntimeError: boom in fluxon_register_commands",
    } in report["failed"]
    # A failing plugin contributes nothing, not even the sink it registered without trouble.
    assert "cmdboom" not in {p["name"] for p in report["plugins"]}
    assert not any("boom_sink" in p["provides"] for p in report["plugins"])


def test_restricting_plugins_changes_what_the_cli_offers(mixed_site: Path, tmp_path: Path) -> None:
    proc = run_fluxon(["--help"], [mixed_site], tmp_path, load_plugins="good")
    assert proc.returncode == 0
    assert "greet" in proc.stdout and "clash" not in proc.stdout and "plugins" in proc.stdout


def test_no_command_prints_help_and_fails(tmp_path: Path) -> None:
    proc = run_fluxon([], [], tmp_path)
    assert proc.returncode == 2
    assert "usage: fluxon" in proc.stdout and "plugins" in proc.stdout
