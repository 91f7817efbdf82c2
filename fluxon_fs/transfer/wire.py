"""The JSON forms of transfer records in fs-master RPC payloads that differ from the records themselves.

Everything else crosses the wire as :func:`fluxon_fs.transfer.codec.to_json` of the record and is
read back with :func:`fluxon_fs.transfer.codec.from_json` (one decode policy for store and wire).
"""

from __future__ import annotations

from typing import Any

from fluxon_fs.transfer.codec import from_json, to_json
from fluxon_fs.transfer.jobs import BatchRecord, JobRecord, JobSpec


def job_spec_from_wire(data: Any) -> JobSpec:
    """The ``spec`` of a create or import request; a clear error names a missing or mistyped field."""
    return from_json(JobSpec, data, "spec")


def job_to_wire(job: JobRecord, state_store_error: str = "") -> dict[str, Any]:
    """A job with its throughput; ``state_store_error`` is set while the store is unreachable
    (the job is then its last known record and makes no progress)."""
    data = to_json(job)
    data["throughput_bytes_per_s"] = job.throughput_bytes_per_s()
    data["state_store_error"] = state_store_error
    return data


def batch_to_wire(batch: BatchRecord) -> dict[str, Any]:
    """A batch's state without its claim token (which only the claiming worker may know)."""
    data = to_json(batch)
    data.pop("claim_token", None)
    return data
