"""The ``__main__`` of every role: ``python -m <role module> --config F --workdir W``.

A role module supplies ``start(config_path, workdir) -> RunningRole``; :func:`run_role` parses
the arguments, sets up logging, starts the role, runs the ``fluxon_role_started`` hook, prints the
readiness line, serves until SIGTERM/SIGINT, then runs ``fluxon_role_stopping`` and stops the role.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import attrs

from fluxon_core.log_setup import configure_logging, get_logger
from fluxon_core.monitoring import MonitoringConfig, start_monitoring
from fluxon_core.runtime.readiness import announce_ready

log = get_logger("fluxon.runtime")


@attrs.frozen
class RunningRole:
    """What a started role reports: its identity, endpoint, parsed config and how to stop it."""

    instance_key: str
    endpoint: str
    config: Any
    stop: Callable[[], None]
    extra: dict[str, str] = attrs.field(factory=dict)


def with_monitoring(role: str, monitoring: MonitoringConfig | None, running: RunningRole) -> RunningRole:
    """``running`` with the role's metrics sinks started: a Prometheus URL is reported as ``metrics``,
    and the sinks stop before the role does."""
    sinks = start_monitoring(monitoring, role, running.instance_key)
    extra = dict(running.extra)
    if sinks.prometheus_url:
        extra["metrics"] = sinks.prometheus_url

    def stop() -> None:
        sinks.close()
        running.stop()

    return attrs.evolve(running, stop=stop, extra=extra)


def parse_role_args(role: str, argv: Sequence[str] | None) -> argparse.Namespace:
    """``--config F --workdir W`` (workdir defaults to the current directory)."""
    parser = argparse.ArgumentParser(prog=f"python -m <{role} module>", description=f"Run a Fluxon {role}.")
    parser.add_argument("--config", "-c", required=True, help="role config YAML file")
    parser.add_argument("--workdir", "-w", default=None, help="working directory (default: current directory)")
    return parser.parse_args(argv)


def _call_hook(name: str, **kwargs: Any) -> None:
    from fluxon_core.plugins import get_plugin_manager

    get_plugin_manager().notify(name, **kwargs)


def run_role(role: str, start: Callable[[Path, Path], RunningRole], argv: Sequence[str] | None = None) -> int:
    """Run ``role`` in the foreground until SIGTERM/SIGINT; returns the exit status."""
    args = parse_role_args(role, argv)
    configure_logging()
    workdir = Path(args.workdir or os.getcwd()).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received %s; stopping", role, signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        running = start(Path(args.config).resolve(), workdir)
    except Exception as exc:
        log.error("%s failed to start: %s", role, exc, exc_info=not isinstance(exc, ValueError | OSError))
        sys.stderr.write(f"{role} failed to start: {exc}\n")
        return 1
    _call_hook("fluxon_role_started", role=role, instance_key=running.instance_key, config=running.config)
    announce_ready(role, instance_key=running.instance_key, endpoint=running.endpoint, **running.extra)
    stop_requested.wait()
    _call_hook("fluxon_role_stopping", role=role, instance_key=running.instance_key)
    running.stop()
    log.info("%s %s stopped", role, running.instance_key)
    return 0
