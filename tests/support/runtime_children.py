"""Child programs for the runtime tests: ``python -m tests.support.runtime_children <mode> ...``.

* ``sleeper LABEL RECORD [ignore-term]``: runs until SIGTERM, then appends LABEL to RECORD.
* ``supervisor RECORD STOP_TIMEOUT``: starts sleepers first/second/third (third ignores SIGTERM when
  STOP_TIMEOUT is below 1 s), prints ``supervising``, runs ``wait_subproc_or_ctrlc``.
* ``launcher WORKDIR``: starts a kv master with the runtime helper, prints its pid, then waits.
* ``cli ARGS...``: the ``fluxon`` CLI.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path


def _record(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text + "\n")


def sleeper(label: str, record: str, ignore_term: bool) -> None:
    stop = threading.Event()
    if ignore_term:
        signal.signal(signal.SIGTERM, lambda *_: _record(record, f"{label}:ignored"))
    else:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("up", flush=True)
    stop.wait(120)
    _record(record, label)


def supervisor(record: str, stop_timeout: float) -> None:
    from fluxon_core.runtime import ManagedSubprocess, wait_subproc_or_ctrlc

    children = []
    for label in ("first", "second", "third"):
        args = [sys.executable, "-m", "tests.support.runtime_children", "sleeper", label, record]
        if label == "third" and stop_timeout < 1:
            args.append("ignore-term")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        children.append(ManagedSubprocess(label, proc))
    print("supervising", flush=True)
    wait_subproc_or_ctrlc(children, on_ctrlc=lambda: _record(record, "on_ctrlc"), stop_timeout_seconds=stop_timeout)


def launcher(workdir: str) -> None:
    from fluxon_core.runtime import start_kv_master_process

    proc = start_kv_master_process(
        {"instance_key": "m", "cluster_name": "launched", "cluster_secret_file": str(Path(workdir) / "secret")},
        workdir=workdir,
    )
    proc.wait_ready(60)
    print(proc.pid, flush=True)
    threading.Event().wait(120)


def cli(argv: list[str]) -> int:
    from fluxon_core.cli import main

    return main(argv)


if __name__ == "__main__":
    mode, rest = sys.argv[1], sys.argv[2:]
    if mode == "sleeper":
        sleeper(rest[0], rest[1], len(rest) > 2)
    elif mode == "supervisor":
        supervisor(rest[0], float(rest[1]))
    elif mode == "launcher":
        launcher(rest[0])
    elif mode == "cli":
        sys.exit(cli(rest))
    else:
        raise SystemExit(f"unknown mode {mode}")
