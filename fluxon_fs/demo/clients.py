"""The example writer and reader: remote mount I/O plus local files under a cache rule, one line per op."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from fluxon_core.config import load_yaml_file
from fluxon_core.kv import FluxonKvClientConfig, KvClient, new_store
from fluxon_core.log_setup import get_logger
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher, install_patcher_from_master

log = get_logger("fluxon.fs.example")

FILE_BYTES = 256 * 1024


def _op_line(op: str, path: str, nbytes: int, started: float) -> str:
    return f"op={op} path={path} bytes={nbytes} latency_ms={(time.perf_counter() - started) * 1000:.2f}"


def _require(config: FsRoleConfig, config_path: str, export: str | None) -> tuple[str, str]:
    mount = config.fluxon_fs.mount
    if mount is None:
        raise SystemExit(f"{config_path}: fluxon_fs.mount (local_mount_dir_abs, export_name) is required")
    return mount.local_mount_dir_abs, export or mount.export_name


def _open_store(config: FsRoleConfig, config_path: str) -> KvClient:
    if config.kvclient is None:
        raise SystemExit(f"{config_path}: kvclient is required")
    return new_store(FluxonKvClientConfig(config.kvclient)).unwrap("new_store failed")


def _rule_dir(config: FsRoleConfig) -> Path | None:
    rules = config.fluxon_fs.cache.rules
    return Path(rules[0].dir_abs) if rules else None


def run_writer(
    config_path: str, workdir: str, rounds: int, interval_s: float, stop: threading.Event, export: str | None = None
) -> int:
    """Write a remote file and a local (cached) file per round, in the guide's explicit call order."""
    config = load_yaml_file(FsRoleConfig, config_path)
    mount_dir, export_name = _require(config, config_path, export)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    text = Path(config_path).read_text(encoding="utf-8")
    store = _open_store(config, config_path)
    patcher = FluxonFsPatcher(store)
    patcher.set_master_config_yaml(text)
    patcher.set_cache_config_yaml(text)
    if config.fluxon_fs.identity is not None:
        patcher.set_request_identity(config.fluxon_fs.identity.username, config.fluxon_fs.identity.password)
    patcher.install()
    try:
        patcher.mount_remote_dir(local_mount_dir_abs=mount_dir, export_name=export_name)
        remote_dir = os.path.join(mount_dir, "fluxon_example")
        os.makedirs(remote_dir, exist_ok=True)
        local_dir = _rule_dir(config)
        round_no = 0
        while rounds <= 0 or round_no < rounds:
            payload = os.urandom(FILE_BYTES)
            target = os.path.join(remote_dir, f"file_{round_no % 4}.bin")
            started = time.perf_counter()
            with open(target, "wb") as handle:
                handle.write(payload)
            print(_op_line("write_remote", target, len(payload), started), flush=True)
            if local_dir is not None:
                local = local_dir / f"file_{round_no % 4}.bin"
                started = time.perf_counter()
                with open(local, "wb") as handle:
                    handle.write(payload)
                print(_op_line("write_local", str(local), len(payload), started), flush=True)
            round_no += 1
            if stop.wait(interval_s):
                break
    finally:
        patcher.uninstall()
        store.close()
    return 0


def run_reader(
    config_path: str, workdir: str, rounds: int, interval_s: float, stop: threading.Event, export: str | None = None
) -> int:
    """Alternate remote and local reads (the patcher installed from the fs master)."""
    config = load_yaml_file(FsRoleConfig, config_path)
    mount_dir, export_name = _require(config, config_path, export)
    Path(workdir).mkdir(parents=True, exist_ok=True)
    store = _open_store(config, config_path)
    patcher = install_patcher_from_master(kv_store=store, config_path=config_path)
    try:
        patcher.wait_cache_config_loaded(timeout_s=60)
        patcher.mount_remote_dir(local_mount_dir_abs=mount_dir, export_name=export_name)
        remote_dir = os.path.join(mount_dir, "fluxon_example")
        local_dir = _rule_dir(config)
        round_no = 0
        while rounds <= 0 or round_no < rounds:
            names = sorted(os.listdir(remote_dir)) if os.path.isdir(remote_dir) else []
            for name in names:
                path = os.path.join(remote_dir, name)
                started = time.perf_counter()
                with open(path, "rb") as handle:
                    data = handle.read()
                print(_op_line("read_remote", path, len(data), started), flush=True)
            if local_dir is not None and local_dir.is_dir():
                for local in sorted(local_dir.iterdir()):
                    started = time.perf_counter()
                    with open(local, "rb") as handle:
                        data = handle.read()
                    print(_op_line("read_local", str(local), len(data), started), flush=True)
            round_no += 1
            if stop.wait(interval_s):
                break
    finally:
        patcher.uninstall()
        store.close()
    return 0


def example_main(role: str, description: str) -> int:
    """Command line of ``examples/start_fluxon_fs_<role>.py`` (role: ``writer`` or ``reader``)."""
    import argparse
    import signal

    from fluxon_core.log_setup import configure_logging

    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", required=True, help=f"{role} config YAML")
    parser.add_argument("-w", "--workdir", required=True, help=f"{role} working directory")
    parser.add_argument("--rounds", type=int, default=0, help="stop after N rounds (default: run until Ctrl-C)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds")
    parser.add_argument(
        "--export", default=None, metavar="NAME", help="mount this export instead of fluxon_fs.mount.export_name"
    )
    args = parser.parse_args()
    configure_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    run = run_writer if role == "writer" else run_reader
    try:
        return run(args.config, args.workdir, args.rounds, args.interval, stop, args.export)
    except KeyboardInterrupt:
        return 130
