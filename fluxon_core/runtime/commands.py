"""``fluxon start <role> -c F [--workdir W]`` and ``fluxon status``, contributed through the command hook."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.hookspecs import RegisterRole, hookimpl
from fluxon_core.runtime.roles import role_module, role_names


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", choices=role_names(), help="the role to run")
    parser.add_argument("-c", "--config", required=True, help="the role's YAML config")
    parser.add_argument("-w", "--workdir", default=None, help="working directory (default: current directory)")


def run_role_module(module: str, argv: list[str]) -> int:
    """Run ``module`` like ``python -m module argv...`` in this process and return its exit status."""
    try:
        main_module = importlib.import_module(f"{module}.__main__")
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            sys.stderr.write(f"role module {module} is not installed: {exc}\n")
            return 2
        raise
    main = getattr(main_module, "main", None)
    if callable(main):
        return int(main(argv) or 0)
    saved = sys.argv
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        sys.argv = saved
    return 0


def _start_run(args: argparse.Namespace) -> int:
    argv = ["--config", os.path.abspath(args.config)]
    if args.workdir:
        argv += ["--workdir", os.path.abspath(args.workdir)]
    try:
        module = role_module(args.role)
    except InvalidArgumentError as exc:
        print(f"fluxon: error: {exc.message}", file=sys.stderr)
        return 2
    return run_role_module(module, argv)


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "-c", "--config", help="a FluxonKvClientConfig YAML of this host: ask through the owner named in shared.json"
    )
    source.add_argument("-w", "--workdir", help="the kv master's workdir on this host (holds kv_master.json)")
    parser.add_argument("--json", action="store_true", help="print the raw status as JSON")
    parser.add_argument("--timeout-ms", type=int, default=5000, help="deadline of the status call")


def fetch_status(*, config: str | None = None, workdir: str | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """The cluster status from the master: directly (``workdir``) or through this host's owner (``config``)."""
    from fluxon_core.kv.auth import RpcAuthenticator, read_secret_file, secret_from_hex
    from fluxon_core.kv.config import FluxonKvClientConfig
    from fluxon_core.kv.kv_master.master_file import read_master_file
    from fluxon_core.kv.protocol import MasterPath, OwnerPath
    from fluxon_core.kv.rpc_link import AuthedRpc
    from fluxon_core.kv.shared_json import read_shared_json, shared_json_path
    from fluxon_core.protocols import Transport
    from fluxon_core.rpc import select_transport

    caller = f"fluxon-status-{os.getpid()}"
    transport: Transport | None = None  # the master's workdir does not say; the process default then
    if workdir is not None:
        record = read_master_file(Path(workdir))
        authenticator = RpcAuthenticator(read_secret_file(record["cluster_secret_file"]))
        endpoint, path = str(record["endpoint"]), MasterPath.STATUS
    else:
        assert config is not None
        settings = FluxonKvClientConfig.from_file(config).settings()
        info = read_shared_json(shared_json_path(settings.fluxonkv_spec.cluster_file_dir))
        authenticator = RpcAuthenticator(secret_from_hex(info.cluster_secret, "shared.json"))
        endpoint, path = info.owner_endpoint, OwnerPath.proxy(MasterPath.STATUS)
        transport = select_transport(settings.transport)
    rpc = AuthedRpc(authenticator, caller=caller, transport=transport)
    try:
        return dict(rpc.call(endpoint, path, {}, timeout_s=timeout_s).meta)
    finally:
        rpc.close()


def _human_bytes(value: Any) -> str:
    if not isinstance(value, int):
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return str(value)


def format_status(status: dict[str, Any]) -> str:
    """A human-readable table of ``status``."""
    master = status.get("master", {})
    lines = [
        f"cluster {status.get('cluster_name')}: kv master {master.get('instance_key')} at {master.get('endpoint')} "
        f"(coordination {master.get('coordination')}, {master.get('keys')} keys, "
        f"member lease {master.get('member_lease_ttl_ms')} ms)",
    ]
    header = ("instance_key", "role", "host", "pid", "endpoint", "pool used/capacity", "entries", "keys", "seen")
    rows = [header]
    for member in status.get("members", []):
        stats = member.get("stats") or {}
        pool = (
            f"{_human_bytes(stats.get('used_bytes'))}/{_human_bytes(stats.get('capacity_bytes'))}"
            if "capacity_bytes" in stats
            else "-"
        )
        rows.append(
            (
                str(member.get("instance_key")),
                str(member.get("role")),
                str(member.get("host")),
                str(member.get("pid")),
                str(member.get("endpoint")),
                pool,
                str(stats.get("entries", "-")),
                str(member.get("keys_held", "-")),
                f"{member.get('last_seen_s_ago', 0):.1f}s ago",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _status_run(args: argparse.Namespace) -> int:
    from fluxon_core.errors import ApiError

    try:
        status = fetch_status(config=args.config, workdir=args.workdir, timeout_s=args.timeout_ms / 1000)
    except (ApiError, OSError, ValueError) as exc:
        sys.stderr.write(f"fluxon status: {exc}\n")
        return 1
    print(json.dumps(status, indent=2, sort_keys=True) if args.json else format_status(status))
    return 0


@hookimpl
def fluxon_register_commands(register: Any) -> None:
    """``fluxon start`` and ``fluxon status``."""
    register("start", "run a Fluxon role (kv-master, owner, ...) in the foreground", _start_arguments, _start_run)
    register("status", "show the KV cluster: members, roles, pool usage", _status_arguments, _status_run)


@hookimpl
def fluxon_register_roles(register: RegisterRole) -> None:
    """The KV plane's roles: ``kv-master`` and ``owner``."""
    from fluxon_core.kv.config import KvClientSettings, KvMasterConfig

    register("kv-master", "fluxon_core.kv.kv_master", KvMasterConfig, "the kv master: membership and cache routes")
    register("owner", "fluxon_core.kv.owner", KvClientSettings, "a host's owner: the shared-memory cache pool")
