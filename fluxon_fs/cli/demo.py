"""``fluxon demo``: the whole stack on this host, a few writer and reader rounds, then serve until Ctrl-C."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from fluxon_core.runtime import wait_subproc_or_ctrlc
from fluxon_fs.demo.clients import run_reader, run_writer
from fluxon_fs.demo.stack import StackSettings, start_stack, write_client_configs


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fluxon demo``."""
    parser.add_argument("--workdir", default="/tmp/fluxon_fs_demo", help="configs, logs and data (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="writer and reader rounds (default %(default)s)")
    parser.add_argument("--etcd", default=None, metavar="HOST:PORT", help="use this etcd instead of local coordination")
    parser.add_argument(
        "--exit-after-rounds", action="store_true", help="stop the stack after the rounds instead of serving"
    )


def run_demo(args: argparse.Namespace) -> int:
    """Start, exercise, serve."""
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = {"etcd_endpoint": args.etcd} if args.etcd else {}
    settings = StackSettings.from_env(workdir, **overrides)
    children = start_stack(settings)
    try:
        configs = write_client_configs(settings)
        never = threading.Event()
        print(f"-- writer: {args.rounds} rounds", flush=True)
        run_writer(str(configs["writer"]), str(workdir / "writer"), args.rounds, 0.2, never)
        print(f"-- reader: {args.rounds} rounds", flush=True)
        run_reader(str(configs["reader"]), str(workdir / "reader"), args.rounds, 0.2, never)
        print(f"panel: {settings.panel_url}/  (user {settings.admin_username!r}, password {settings.admin_password!r})")
        print(f"s3:    {settings.s3_url}  (each export a bucket; access keys: panel /ui/keys/ or")
        print(f"       fluxon users create-key {settings.admin_username} --db {settings.access_db_path}; docs/s3.md)")
    except BaseException:
        _stop(children)
        raise
    if args.exit_after_rounds:
        _stop(children)
        return 0
    print("serving; press Ctrl-C to stop", flush=True)
    wait_subproc_or_ctrlc(children)
    return 0


def _stop(children: list) -> None:
    for child in reversed(children):
        if child.proc.poll() is None:
            child.proc.terminate()
            child.proc.wait(15)
