"""JSON records of pre-scans, batches and jobs in the state store, and their key layout.

Every record carries ``schema_version`` so later versions can read older records.
Keys (relative to the store's ``key_prefix``):

* ``prescans/<job_id>``                              — pre-scan summary (latest epoch)
* ``prescan_batches/<job_id>/<epoch:06d>/<n:08d>``    — one sealed batch of a pre-scan epoch
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import attrs

SCHEMA_VERSION = 1

ENTRY_FILE = "f"
ENTRY_DIR = "d"
MAX_ENTRIES_PER_BATCH = 4096


class ScanEntry(NamedTuple):
    """One entry found by a scan: relative path, kind (file or dir), size, mtime_ns, mode.

    A named tuple because scans create millions of them and it encodes to JSON as a plain list.
    """

    relpath: str
    kind: str
    size: int
    mtime_ns: int
    mode: int


@attrs.frozen
class PrescanRecord:
    """Summary of the latest epoch of a pre-scan job."""

    job_id: str
    src_root_dir: str
    scan_epoch: int
    state: str  # scanning | done | failed
    file_count: int = 0
    dir_count: int = 0
    total_bytes: int = 0
    batch_count: int = 0
    skipped_count: int = 0
    batch_ready_bytes: int = 0
    created_at: float = 0.0
    finished_at: float = 0.0
    error: str = ""
    schema_version: int = SCHEMA_VERSION


def prescan_key(job_id: str) -> str:
    """Key of a pre-scan summary."""
    return f"prescans/{job_id}"


def prescan_batch_prefix(job_id: str, epoch: int) -> str:
    """Prefix of the batches of one pre-scan epoch."""
    return f"prescan_batches/{job_id}/{epoch:06d}/"


def prescan_batch_key(job_id: str, epoch: int, number: int) -> str:
    """Key of one pre-scan batch."""
    return f"{prescan_batch_prefix(job_id, epoch)}{number:08d}"


def encode(record: Any) -> bytes:
    """JSON bytes of an attrs record."""
    return json.dumps(attrs.asdict(record), separators=(",", ":"), sort_keys=True).encode()


def decode_prescan(data: bytes) -> PrescanRecord:
    """Read a pre-scan record, ignoring fields newer versions may add."""
    raw = json.loads(data)
    known = {f.name for f in attrs.fields(PrescanRecord)}
    return PrescanRecord(**{k: v for k, v in raw.items() if k in known})


def encode_batch(entries: Sequence[tuple[str, str, int, int, int]], total_bytes: int) -> bytes:
    """JSON bytes of one batch (entries are ScanEntry or plain tuples of the same shape)."""
    body = {"schema_version": SCHEMA_VERSION, "bytes": total_bytes, "entries": entries}
    return json.dumps(body, separators=(",", ":")).encode()


def decode_batch(data: bytes) -> tuple[list[ScanEntry], int]:
    """Entries and byte total of one batch."""
    body = json.loads(data)
    return [ScanEntry(*e) for e in body["entries"]], int(body["bytes"])
