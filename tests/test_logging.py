"""FLUXON_LOG: case-insensitive level names, INFO by default, a clear error for anything else."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fluxon_core.log_setup import get_logger, level_from_env
from tests.support.plugin_packages import run_fluxon, run_python


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("debug", logging.DEBUG),
        ("Info", logging.INFO),
        ("WARNING", logging.WARNING),
        (" error ", logging.ERROR),
        ("cRiTiCaL", logging.CRITICAL),
    ],
)
def test_level_names_are_case_insensitive(value: str, level: int) -> None:
    assert level_from_env({"FLUXON_LOG": value}) == level


def test_default_is_info() -> None:
    assert level_from_env({}) == logging.INFO
    assert level_from_env({"FLUXON_LOG": ""}) == logging.INFO
    assert level_from_env({"FLUXON_LOG": "  "}) == logging.INFO


@pytest.mark.parametrize("value", ["verbose", "warn", "10", "info,debug"])
def test_unknown_levels_are_refused_clearly(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        level_from_env({"FLUXON_LOG": value})
    assert str(caught.value) == (
        f"FLUXON_LOG={value!r} is not a log level; expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)"
    )


def test_loggers_live_under_the_fluxon_tree() -> None:
    assert get_logger("kv.owner").name == "fluxon.kv.owner"
    assert get_logger("fluxon_memstate.access").name == "fluxon.fluxon_memstate.access"
    assert get_logger("fluxon.plugins").name == "fluxon.plugins"


CHILD = """
from fluxon_core.log_setup import configure_logging, get_logger

configure_logging({log_file!r})
configure_logging({log_file!r})  # twice, as a role and a library both might
log = get_logger("demo")
log.debug("debug-line")
log.info("info-line")
log.warning("warning-line")
"""


def test_the_level_governs_what_is_written(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "role.log"
    debug = run_python(CHILD.format(log_file=str(log_file)), [], tmp_path, FLUXON_LOG="debug")
    assert debug.returncode == 0, debug.stderr
    assert "DEBUG fluxon.demo" in debug.stderr and "debug-line" in debug.stderr
    written = log_file.read_text(encoding="utf-8")
    assert [line.split()[-1] for line in written.splitlines()] == ["debug-line", "info-line", "warning-line"]

    quiet = run_python(CHILD.format(log_file=str(tmp_path / "quiet.log")), [], tmp_path, FLUXON_LOG="WARNING")
    assert "info-line" not in quiet.stderr and "warning-line" in quiet.stderr


def test_a_bad_level_stops_the_cli_with_a_clear_message(tmp_path: Path) -> None:
    proc = run_fluxon(["plugins"], [], tmp_path, FLUXON_LOG="loud")
    assert proc.returncode == 2
    assert proc.stderr == (
        "fluxon: error: FLUXON_LOG='loud' is not a log level; expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL "
        "(any case)\n"
    )
    assert proc.stdout == ""
