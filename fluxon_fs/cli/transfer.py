"""``fluxon transfer``: create, watch and control transfer jobs of an fs master from the shell.

::

    fluxon transfer create  -c CFG --user U --source EXPORT[:DIR] --target EXPORT[:PREFIX] [--workers N]
                            [--batch-ready-bytes 256MiB] [--conflict-policy overwrite|skip_existing]
                            [--max-attempts 5] [--verify-checksum] [--wait [--timeout S]] [--json]
    fluxon transfer import  -c CFG --user U PRESCAN_JOB_ID --source-export EXPORT --target EXPORT[:PREFIX] [...]
    fluxon transfer list    -c CFG --user U [--json]
    fluxon transfer show    -c CFG --user U JOB_ID [--batches] [--json]
    fluxon transfer pause|resume|cancel|retry  -c CFG --user U JOB_ID [--json]
    fluxon transfer wait    -c CFG --user U JOB_ID [--timeout S] [--json]

``-c`` is an FS role YAML with a ``kvclient`` block (the KV client this command attaches with; a
missing ``instance_key`` becomes ``transfer-cli-<pid>``) and ``fluxon_fs.master.instance_key``, like
the reader/writer example configs. The user's password comes from ``FLUXON_PASSWORD``, else from an
interactive prompt. Exit status: 0 done (``wait``: the job succeeded), 1 refused or the job ended
failed/cancelled or did not finish in time (message on stderr), 2 usage error.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from fluxon_core.config import ConfigError, load_yaml_file, parse_byte_size
from fluxon_core.kv import new_store
from fluxon_fs.cli.runner import UsageError, run_command
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.progress import human_bytes
from fluxon_fs.transfer.states import BatchState, JobState

PASSWORD_ENV = "FLUXON_PASSWORD"
ACTIONS = {"pause": "pause", "resume": "resume", "cancel": "cancel", "retry": "retry_failed"}

Action = Callable[[TransferClient, argparse.Namespace], int]


# ----- connecting -----------------------------------------------------------------------------------


def _load_config(path: str) -> FsRoleConfig:
    try:
        config = load_yaml_file(FsRoleConfig, path)
    except (ConfigError, OSError, ValueError) as exc:
        raise UsageError(f"config {path}: {exc}") from None
    if config.kvclient is None:
        raise UsageError(f"config {path}: kvclient is required (the KV client block this command attaches with)")
    return config


def _password(args: argparse.Namespace) -> str:
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env is not None:
        return from_env
    if not sys.stdin.isatty():
        raise UsageError(f"no password: set {PASSWORD_ENV} or run on a terminal to be prompted")
    return getpass.getpass(f"password for {args.user}: ")


def _run_with_client(args: argparse.Namespace, action: Action) -> int:
    config = _load_config(args.config)
    username = args.user or (config.fluxon_fs.identity.username if config.fluxon_fs.identity else None)
    if not username:
        raise UsageError("--user is required (or fluxon_fs.identity.username in the config)")
    args.user = username
    password = _password(args)
    block = dict(config.kvclient or {})
    block.setdefault("instance_key", f"transfer-cli-{os.getpid()}")
    attached = new_store(block, role="transfer_cli")
    if attached.is_err():
        raise attached.unwrap_error()
    store = attached.unwrap()
    try:
        client = TransferClient(store, config.fluxon_fs.master.instance_key, username, password)
        return action(client, args)
    finally:
        store.close()


# ----- output ---------------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _when(timestamp: float) -> str:
    if not timestamp:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def _path(export: str, relpath: str) -> str:
    return f"{export}:{relpath}" if relpath else export


def _state(job: dict[str, Any]) -> str:
    if job.get("state_store_error"):
        return f"{job['state']} (paused: state store unavailable)"
    return str(job["state"])


def _progress(job: dict[str, Any]) -> tuple[str, str]:
    c = job["counters"]
    return (
        f"{c['files_copied'] + c['files_skipped']:,}/{c['files_total']:,}",
        f"{human_bytes(c['bytes_copied'])}/{human_bytes(c['bytes_total'])}",
    )


def _store_warning(jobs: list[dict[str, Any]]) -> None:
    errors = {str(job["state_store_error"]) for job in jobs if job.get("state_store_error")}
    for error in sorted(errors):
        print(f"fluxon transfer: warning: {error} (showing the last known state)", file=sys.stderr)


def _print_job(job: dict[str, Any]) -> None:
    spec, c = job["spec"], job["counters"]
    files, size = _progress(job)
    reason = f" — {job['state_reason']}" if job.get("state_reason") else ""
    lines = [
        ("job", job["job_id"]),
        ("state", _state(job) + reason),
        ("source", _path(spec["source_export"], spec["source_dir"])),
        ("target", _path(spec["target_export"], spec["target_prefix"])),
        ("runs as", job.get("owner") or "nobody (stored before jobs recorded their owner)"),
        (
            "settings",
            f"workers {spec['desired_worker_count']}, batch_ready_bytes {human_bytes(spec['batch_ready_bytes'])}, "
            f"conflict_policy {spec['conflict_policy']}, max_attempts {spec['max_attempts']}"
            + (", verify_checksum" if spec.get("verify_checksum") else ""),
        ),
        (
            "files",
            f"{files} (copied {c['files_copied']:,}, skipped {c['files_skipped']:,}, "
            f"changed {c['files_changed']:,}, failed {c['files_failed']:,})",
        ),
        ("bytes", size),
        ("batches", f"{c['batches_done']:,} done, {c['batches_failed']:,} failed of {c['batches_total']:,}"),
        ("throughput", f"{human_bytes(job.get('throughput_bytes_per_s', 0.0))}/s"),
        ("created", _when(job["created_at"])),
        ("started", _when(job["started_at"])),
        ("finished", _when(job["finished_at"])),
    ]
    if spec.get("prescan_job_id"):
        lines.append(("pre-scan", spec["prescan_job_id"]))
    for label, value in lines:
        print(f"{label + ':':<12}{value}")
    if job.get("state_store_error"):
        print(f"{'store:':<12}{job['state_store_error']}")
    for title, items in (("recent errors", job["recent_errors"]), ("verification", job["verify_report"])):
        if items:
            print(f"{title}:")
            for item in items:
                print(f"  {item}")


# ----- actions --------------------------------------------------------------------------------------


def _split_location(text: str, option: str) -> tuple[str, str]:
    export, _, relpath = text.partition(":")
    if not export:
        raise UsageError(f"{option} must be EXPORT or EXPORT:PATH, got {text!r}")
    return export, relpath.strip("/")


def _spec(args: argparse.Namespace, source_export: str, source_dir: str) -> JobSpec:
    target_export, target_prefix = _split_location(args.target, "--target")
    try:
        batch_ready_bytes = parse_byte_size(args.batch_ready_bytes)
    except ValueError as exc:
        raise UsageError(f"--batch-ready-bytes {exc}") from None
    return JobSpec(
        source_export=source_export,
        source_dir=source_dir,
        target_export=target_export,
        target_prefix=target_prefix,
        desired_worker_count=args.workers,
        batch_ready_bytes=batch_ready_bytes,
        conflict_policy=args.conflict_policy,
        max_attempts=args.max_attempts,
        verify_checksum=args.verify_checksum,
    )


def _after_create(client: TransferClient, args: argparse.Namespace, job_id: str) -> int:
    if args.wait:
        return _wait_for(client, args, job_id)
    if args.json:
        _print_json({"job_id": job_id})
    else:
        print(job_id)
    return 0


def _create(client: TransferClient, args: argparse.Namespace) -> int:
    source_export, source_dir = _split_location(args.source, "--source")
    return _after_create(client, args, client.create_job(_spec(args, source_export, source_dir)))


def _import(client: TransferClient, args: argparse.Namespace) -> int:
    job_id = client.import_prescan(args.prescan_job_id, _spec(args, args.source_export, ""))
    return _after_create(client, args, job_id)


def _quarantine_warning(listing: dict[str, Any]) -> None:
    count = listing["quarantined_count"]
    if count and not listing["quarantined"]:
        print(
            f"fluxon transfer: warning: {count} job record(s) could not be read and were quarantined; "
            "ask a user who can manage users to look at them",
            file=sys.stderr,
        )


def _list(client: TransferClient, args: argparse.Namespace) -> int:
    listing = client.job_list()
    jobs, quarantined = listing["jobs"], listing["quarantined"]
    _quarantine_warning(listing)
    if args.json:
        for entry in quarantined:
            print(f"fluxon transfer: error: {entry['key']} quarantined: {entry['error']}", file=sys.stderr)
        _print_json(jobs)
        return 0
    _store_warning(jobs)
    if not jobs and not quarantined:
        print("no transfer jobs")
        return 0
    header = f"{'JOB':<30} {'STATE':<10} {'FILES':>15} {'BYTES':>23} {'BATCHES':>11} {'RATE':>12}  SOURCE -> TARGET"
    print(header)
    for job in jobs:
        spec, c = job["spec"], job["counters"]
        files, size = _progress(job)
        state = job["state"] + ("!" if job.get("state_store_error") else "")
        print(
            f"{job['job_id']:<30} {state:<10} {files:>15} {size:>23} "
            f"{c['batches_done']:>5}/{c['batches_total']:<5} {human_bytes(job['throughput_bytes_per_s']) + '/s':>12}  "
            f"{_path(spec['source_export'], spec['source_dir'])} -> {_path(spec['target_export'], spec['target_prefix'])}"
        )
    for entry in quarantined:  # an error row each: the record is kept aside, unread
        job_id = entry["key"].removeprefix("jobs/")
        print(f"{job_id:<30} {'ERROR':<10} record could not be read, quarantined: {entry['error']}")
    return 0


def _show(client: TransferClient, args: argparse.Namespace) -> int:
    shown = client.show(args.job_id)
    if args.json:
        _print_json(shown)
        return 0
    job, batches = shown["job"], shown["batches"]
    _print_job(job)
    if batches:
        counts = Counter(b["state"] for b in batches)
        print(f"{'batch states:':<12} " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    rows = batches if args.batches else [b for b in batches if b["state"] == BatchState.FAILED or b["last_error"]]
    if rows:
        print(f"{'#':>6} {'STATE':<8} {'FILES':>6} {'BYTES':>10} {'CLAIMS':>6} {'ATTEMPTS':>8}  WORKER / LAST ERROR")
    for b in rows:
        detail = b["last_error"] or b["worker"]
        print(
            f"{b['number']:>6} {b['state']:<8} {b['files']:>6} {human_bytes(b['bytes']):>10} "
            f"{b['claims']:>6} {b['attempts']:>8}  {detail}"
        )
    return 0


def _action(name: str) -> Action:
    def run(client: TransferClient, args: argparse.Namespace) -> int:
        job = client.action(args.job_id, ACTIONS[name])
        if args.json:
            _print_json(job)
        else:
            print(f"{job['job_id']}: {job['state']}")
        return 0

    return run


def _wait_for(client: TransferClient, args: argparse.Namespace, job_id: str) -> int:
    job = client.wait(job_id, args.timeout)
    if args.json:
        _print_json(job)
    else:
        _print_job(job)
    return 0 if job["state"] == JobState.SUCCEEDED else 1


def _wait(client: TransferClient, args: argparse.Namespace) -> int:
    return _wait_for(client, args, args.job_id)


# ----- argparse -------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, metavar="YAML", help="FS role YAML (kvclient + fluxon_fs)")
    parser.add_argument("--user", help="user name (default: fluxon_fs.identity.username of the config)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _spec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, metavar="EXPORT[:PREFIX]", help="target export and prefix")
    parser.add_argument("--workers", type=int, default=2, help="desired_worker_count (default 2)")
    parser.add_argument("--batch-ready-bytes", default="256MiB", help="seal a batch at this size (default 256MiB)")
    parser.add_argument("--conflict-policy", choices=["overwrite", "skip_existing"], default="overwrite")
    parser.add_argument("--max-attempts", type=int, default=5, help="attempts per batch before it fails (default 5)")
    parser.add_argument(
        "--verify-checksum",
        action="store_true",
        help="the final verification also compares the sha256 of every file (reads both trees once more)",
    )
    parser.add_argument("--wait", action="store_true", help="wait until the job ends (exit 1 unless it succeeded)")
    _timeout_argument(parser)


def _timeout_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timeout", type=float, default=24 * 3600.0, help="seconds to wait (default one day)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``fluxon transfer`` actions."""
    actions = parser.add_subparsers(dest="transfer_action", metavar="ACTION", required=True)

    def action(name: str, help: str, run: Action) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, description=help)
        _common(sub)
        sub.set_defaults(_transfer_action=run)
        return sub

    create = action("create", "scan a source directory and copy it to a target export", _create)
    create.add_argument("--source", required=True, metavar="EXPORT[:DIR]", help="source export and directory")
    _spec_arguments(create)

    imported = action("import", "turn a finished pre-scan into a transfer job", _import)
    imported.add_argument("prescan_job_id", metavar="PRESCAN_JOB_ID")
    imported.add_argument("--source-export", required=True, help="export whose root contains the pre-scanned folder")
    _spec_arguments(imported)

    action("list", "list transfer jobs, newest first", _list)
    show = action("show", "show one job with its batches", _show)
    show.add_argument("job_id", metavar="JOB_ID")
    show.add_argument("--batches", action="store_true", help="list every batch (default: failed ones only)")
    for name, help in (
        ("pause", "stop handing out batches (claimed batches finish)"),
        ("resume", "continue a paused job"),
        ("cancel", "end a job; nothing more is copied"),
        ("retry", "make failed batches pending again and run the job"),
    ):
        action(name, help, _action(name)).add_argument("job_id", metavar="JOB_ID")
    wait = action("wait", "wait until a job ends (exit 1 unless it succeeded)", _wait)
    wait.add_argument("job_id", metavar="JOB_ID")
    _timeout_argument(wait)


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``fluxon transfer`` command."""
    return run_command("transfer", lambda: _run_with_client(args, args._transfer_action))
