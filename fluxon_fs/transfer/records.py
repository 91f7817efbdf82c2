"""JSON records of pre-scans and batch entries in the state store, and their key layout.

Every record carries ``schema_version``; records are read with the one decode policy of
:mod:`fluxon_fs.transfer.codec` (unknown fields ignored, missing required fields and wrong types
refused, naming the key and the field). Keys (relative to the store's ``key_prefix``):

* ``prescans/<job_id>``                              — pre-scan summary (latest epoch)
* ``prescan_batches/<job_id>/<epoch:06d>/<n:08d>``    — one sealed batch of a pre-scan epoch
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

import attrs
import orjson

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.transfer.codec import decode
from fluxon_fs.transfer.states import PrescanState

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
    state: PrescanState = attrs.field(converter=PrescanState)
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


PRESCANS_PREFIX = "prescans/"


def prescan_key(job_id: str) -> str:
    """Key of a pre-scan summary."""
    return f"{PRESCANS_PREFIX}{job_id}"


def prescan_batch_prefix(job_id: str, epoch: int) -> str:
    """Prefix of the batches of one pre-scan epoch."""
    return f"prescan_batches/{job_id}/{epoch:06d}/"


def prescan_batch_key(job_id: str, epoch: int, number: int) -> str:
    """Key of one pre-scan batch."""
    return f"{prescan_batch_prefix(job_id, epoch)}{number:08d}"


def decode_prescan(data: bytes, where: str = "pre-scan record") -> PrescanRecord:
    """A stored pre-scan record (``where``, e.g. its key, names it in errors)."""
    return decode(PrescanRecord, data, where)


def encode_batch(entries: Sequence[tuple[str, str, int, int, int]], total_bytes: int) -> bytes:
    """JSON bytes of one batch (entries are ScanEntry or plain tuples of the same shape)."""
    body = {"schema_version": SCHEMA_VERSION, "bytes": total_bytes, "entries": entries}
    try:
        # orjson encodes a 4096-entry batch ~8x faster than json (11 % of a pre-scan's CPU before).
        return orjson.dumps(body)
    except orjson.JSONEncodeError:
        # A name that is not UTF-8 reaches Python with surrogate escapes, which orjson refuses;
        # json writes them as \udcXX escapes that decode back to the same name.
        return json.dumps(body, separators=(",", ":")).encode()


def decode_batch(data: bytes, where: str = "batch") -> tuple[list[ScanEntry], int]:
    """Entries and byte total of one batch (``where``, e.g. its key, names it in errors).

    Batches hold up to thousands of entries and are read on every claim, so their rows are
    taken as they are, without the per-field checks of :func:`~fluxon_fs.transfer.codec.decode`.
    """
    try:
        body = json.loads(data)
        return [ScanEntry(*e) for e in body["entries"]], int(body["bytes"])
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidArgumentError(f"{where}: not a batch of scan entries ({exc!r})") from None
