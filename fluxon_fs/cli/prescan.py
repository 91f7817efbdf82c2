"""``fluxon prescan``: the standalone pre-scan from the command line."""

from __future__ import annotations

import argparse
import json
from typing import Any

import yaml

from fluxon_core.config import parse_byte_size
from fluxon_fs.cli.runner import UsageError, run_command
from fluxon_fs.transfer.codec import to_json
from fluxon_fs.transfer.prescan import (
    FluxonFsTransferSkipEntry,
    FluxonFsTransferSkipEntryKind,
    transfer_check_local_blocking,
)


def add_prescan_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``fluxon prescan``."""
    parser.add_argument("src", help="absolute path of the source directory to scan")
    parser.add_argument(
        "--state-store",
        required=True,
        metavar="YAML",
        help="transfer_state_store block as YAML/JSON text or @file.yaml, e.g. "
        "'{kind: sqlite, sqlite: {path: /var/lib/fluxon/transfer.db, key_prefix: /fluxon_fs_transfer/x/}}'",
    )
    parser.add_argument("--batch-ready-bytes", default="8GiB", help="seal a batch at this many bytes (default 8GiB)")
    parser.add_argument("--skip-dir", action="append", default=[], metavar="RELPATH", help="skip a directory subtree")
    parser.add_argument("--skip-file", action="append", default=[], metavar="RELPATH", help="skip one file")
    parser.add_argument("--concurrency", type=int, default=4, help="checker_concurrency_limit (default 4)")
    parser.add_argument("--no-progress", action="store_true", help="do not draw the live progress bar")
    parser.add_argument("--job-id", default=None, help="job id (default: derived from the source path)")


def _load_store_block(text: str) -> dict[str, Any]:
    try:
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as handle:
                text = handle.read()
        block = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"--state-store: {exc}") from None
    if isinstance(block, dict) and "transfer_state_store" in block:
        block = block["transfer_state_store"]
    if not isinstance(block, dict):
        raise UsageError("--state-store must be a mapping like {kind: sqlite, sqlite: {path: ...}}")
    return block


def run_prescan_command(args: argparse.Namespace) -> int:
    """Run the scan and print the summary as JSON."""
    return run_command("prescan", lambda: _prescan(args))


def _prescan(args: argparse.Namespace) -> int:
    try:
        batch_ready_bytes = parse_byte_size(args.batch_ready_bytes)
    except ValueError as exc:
        raise UsageError(f"--batch-ready-bytes {exc}") from None
    skips = [FluxonFsTransferSkipEntry(kind=FluxonFsTransferSkipEntryKind.DIR, relpath=p) for p in args.skip_dir]
    skips += [FluxonFsTransferSkipEntry(kind=FluxonFsTransferSkipEntryKind.FILE, relpath=p) for p in args.skip_file]
    summary = transfer_check_local_blocking(
        src_root_dir=args.src,
        transfer_state_store=_load_store_block(args.state_store),
        batch_ready_bytes=batch_ready_bytes,
        skip_entries=skips,
        checker_concurrency_limit=args.concurrency,
        enable_cli_progress=not args.no_progress,
        job_id=args.job_id,
    )
    print(json.dumps(to_json(summary), indent=2))
    return 0
