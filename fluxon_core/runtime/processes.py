"""Starting role processes and supervising them (KV.md §5).

``start_*_process(config=dict|path, workdir=, log_path=)`` returns a :class:`RoleProcess` (a
``subprocess.Popen``): a dict config is written to ``<workdir>/<role>.runtime.yaml``; the child
runs ``python -m <role module> --config F --workdir W`` through :mod:`fluxon_core.runtime.child`
(so it dies with its launcher), in its own session (so a terminal Ctrl-C reaches only the
launcher, which stops children in reverse order), with stdout and stderr appended to
``log_path`` (default ``<workdir>/log/<role>.log``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import yaml

from fluxon_core.config import dump_config
from fluxon_core.runtime.parent_death import PARENT_PID_ENV
from fluxon_core.runtime.readiness import ReadyInfo, wait_for_ready_line

ConfigSource = Mapping[str, Any] | str | os.PathLike[str]

KV_MASTER_MODULE = "fluxon_core.kv.kv_master"
OWNER_MODULE = "fluxon_core.kv.owner"
CTRL_C_EXIT_STATUS = 130


class RoleProcess(subprocess.Popen):  # type: ignore[type-arg]
    """A started role: a ``Popen`` that also knows its role, log file and config file."""

    role: str
    log_path: Path
    log_offset: int
    config_path: Path
    workdir: Path

    def wait_ready(self, timeout_s: float = 60.0) -> ReadyInfo:
        """Block until the role prints its readiness line; RoleStartError if it exits or stays silent."""
        return wait_for_ready_line(self, self.log_path, role=self.role, offset=self.log_offset, timeout_s=timeout_s)


def write_runtime_config(config: ConfigSource, workdir: Path, role: str) -> Path:
    """The config file to hand the child: ``config`` itself if it is a path, else ``<workdir>/<role>.runtime.yaml``."""
    if isinstance(config, str | os.PathLike):
        path = Path(config).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"{role} config file {path} does not exist")
        return path
    data = dump_config(config) if attrs.has(type(config)) else _plain(config)
    path = workdir / f"{role}.runtime.yaml"
    tmp = path.with_suffix(f".yaml.{os.getpid()}.tmp")
    # 0600: role configs may carry passwords and secret paths
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def start_role_process(
    module: str,
    role: str,
    config: ConfigSource,
    *,
    workdir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    launcher: Sequence[str] = (),
) -> RoleProcess:
    """Start ``python -m <module> --config F --workdir W`` as ``role``; returns without waiting for readiness.

    ``workdir`` defaults to a fresh temporary directory. Extra ``env`` entries are added to the
    launcher's environment. ``launcher`` is a command prefix the child runs under, e.g.
    ``["ip", "netns", "exec", "host-b"]`` or ``["taskset", "-c", "2"]``; it must exec the rest of the
    command in its own process, so the role stays the launcher's child and dies with it.
    """
    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"fluxon-{role}-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    config_path = write_runtime_config(config, work, role)
    log_file = Path(log_path) if log_path is not None else work / "log" / f"{role}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env[PARENT_PID_ENV] = str(os.getpid())
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    command = [
        *launcher,
        sys.executable,
        "-m",
        "fluxon_core.runtime.child",
        module,
        "--config",
        str(config_path),
        "--workdir",
        str(work),
        *extra_args,
    ]
    with open(log_file, "ab") as log_handle:
        offset = log_handle.tell()
        proc = RoleProcess(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=str(work),
            start_new_session=True,
            close_fds=True,
        )
    proc.role = role
    proc.log_path = log_file
    proc.log_offset = offset
    proc.config_path = config_path
    proc.workdir = work
    return proc


def start_kv_master_process(
    config: ConfigSource,
    *,
    workdir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> RoleProcess:
    """Start a kv master (config: :class:`~fluxon_core.kv.config.KvMasterConfig` as dict or YAML path)."""
    return start_role_process(KV_MASTER_MODULE, "kv_master", config, workdir=workdir, log_path=log_path)


def start_owner_kvclient_process(
    config: ConfigSource,
    *,
    workdir: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
) -> RoleProcess:
    """Start a process holding an owner store (config: ``FluxonKvClientConfig`` with ``dram > 0``)."""
    return start_role_process(OWNER_MODULE, "owner", config, workdir=workdir, log_path=log_path)


@attrs.frozen
class ManagedSubprocess:
    """A child supervised by :func:`wait_subproc_or_ctrlc`, named for messages."""

    label: str
    proc: subprocess.Popen  # type: ignore[type-arg]


class ChildProcessExitedError(RuntimeError):
    """A supervised child exited while it should have been running."""

    def __init__(self, label: str, returncode: int) -> None:
        self.label = label
        self.returncode = returncode
        super().__init__(f"child {label!r} exited unexpectedly with {describe_status(returncode)}")


def describe_status(returncode: int) -> str:
    """``status 3`` or ``signal SIGKILL`` for a Popen return code."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


def stop_process(proc: subprocess.Popen, timeout_s: float) -> int:  # type: ignore[type-arg]
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        except ProcessLookupError:
            pass
    return proc.wait()


def stop_children(children: Sequence[ManagedSubprocess], timeout_s: float) -> None:
    """Stop ``children`` in reverse order (the order they were started in is the dependency order)."""
    for child in reversed(children):
        stop_process(child.proc, timeout_s)


class _Terminated(BaseException):
    """Raised in the main thread when the supervisor receives SIGTERM."""


def wait_subproc_or_ctrlc(
    children: Sequence[ManagedSubprocess],
    on_ctrlc: Callable[[], None] | None = None,
    stop_timeout_seconds: float = 5.0,
    *,
    poll_interval_s: float = 0.1,
) -> None:
    """Block while every child runs.

    A child that exits raises :class:`ChildProcessExitedError` (label and status) after the other
    children were stopped. Ctrl-C or SIGTERM runs ``on_ctrlc``, stops the children in reverse order
    (SIGTERM, wait ``stop_timeout_seconds``, SIGKILL) and exits with status 130.
    """
    children = list(children)
    previous_handler: Any = None
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:

        def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
            raise _Terminated()

        previous_handler = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        while True:
            for child in children:
                returncode = child.proc.poll()
                if returncode is not None:
                    stop_children([c for c in children if c is not child], stop_timeout_seconds)
                    raise ChildProcessExitedError(child.label, returncode)
            time.sleep(poll_interval_s)
    except (KeyboardInterrupt, _Terminated):
        previous_sigint: Any = None
        if in_main_thread:
            # a second Ctrl-C must not abandon the orderly stop half-way
            previous_sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if on_ctrlc is not None:
                on_ctrlc()
            stop_children(children, stop_timeout_seconds)
        finally:
            if in_main_thread:
                signal.signal(signal.SIGINT, previous_sigint)
        raise SystemExit(CTRL_C_EXIT_STATUS) from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
