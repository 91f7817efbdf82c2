"""Transfer jobs and their batches: the records stored for them and exchanged with workers.

A job (:class:`JobRecord`) copies what its :class:`JobSpec` names, in batches, with the authority
of its owner (:class:`JobOwner`); each batch has a
:class:`BatchRecord` (its claim, attempts and result). A worker receives a :class:`BatchAssignment`
when it claims a batch and reports a :class:`BatchResult`. Where they are stored is
:mod:`fluxon_fs.transfer.job_store`; how a job moves between states,
:mod:`fluxon_fs.transfer.lifecycle`; how batches are claimed, :mod:`fluxon_fs.transfer.leases`.
"""

from __future__ import annotations

import time

import attrs

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.relpath import normalise_relpath
from fluxon_fs.transfer.records import SCHEMA_VERSION, ScanEntry
from fluxon_fs.transfer.states import BatchState, JobState


@attrs.frozen
class JobSpec:
    """What to copy where."""

    source_export: str
    source_dir: str
    target_export: str
    target_prefix: str
    desired_worker_count: int = 2
    batch_ready_bytes: int = 256 * 1024 * 1024
    conflict_policy: str = "overwrite"  # overwrite | skip_existing
    max_attempts: int = 5
    verify_checksum: bool = False
    """The verification pass also compares the sha256 of every file's content, not only size and mtime."""
    prescan_job_id: str = ""

    def validate(self) -> None:
        """Raise :class:`InvalidArgumentError` naming the bad field."""
        for name in ("source_export", "target_export"):
            if not getattr(self, name):
                raise InvalidArgumentError(f"{name} is required")
        normalise_relpath(self.source_dir, "source_dir")
        normalise_relpath(self.target_prefix, "target_prefix")
        if self.desired_worker_count < 1:
            raise InvalidArgumentError(f"desired_worker_count must be >= 1, got {self.desired_worker_count}")
        if self.batch_ready_bytes < 1:
            raise InvalidArgumentError(f"batch_ready_bytes must be > 0, got {self.batch_ready_bytes}")
        if self.conflict_policy not in ("overwrite", "skip_existing"):
            raise InvalidArgumentError(
                f"conflict_policy must be 'overwrite' or 'skip_existing', got {self.conflict_policy!r}"
            )
        if self.max_attempts < 1:
            raise InvalidArgumentError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def target_relpath(self, entry_relpath: str) -> str:
        """Where a source entry lands: under the target prefix, below the source folder's own name."""
        base = self.source_dir.rstrip("/").rsplit("/", 1)[-1] if self.source_dir else ""
        parts = [p for p in (self.target_prefix.strip("/"), base, entry_relpath) if p]
        return "/".join(parts)

    def source_relpath(self, entry_relpath: str) -> str:
        """The entry's path in the source export."""
        return "/".join(p for p in (self.source_dir.strip("/"), entry_relpath) if p)


@attrs.frozen
class JobOwner:
    """The user a job runs for: its scans, copies and verification run with that user's authority.

    Set by the fs master from the session that created (or, after the owner could no longer run
    it, resumed) the job — never taken from a request. ``credential_version`` is the user's then:
    after a password change the job stops until its owner resumes it.
    """

    username: str
    credential_version: int


NO_OWNER = JobOwner("", 0)
"""The owner of a job stored before jobs recorded one: the fs master runs such a job for nobody."""


@attrs.frozen
class JobCounters:
    """Progress of a job."""

    files_total: int = 0
    bytes_total: int = 0
    batches_total: int = 0
    batches_done: int = 0
    batches_failed: int = 0
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    files_changed: int = 0
    files_failed: int = 0


@attrs.frozen
class JobRecord:
    """A transfer job as stored."""

    job_id: str
    spec: JobSpec
    state: JobState = attrs.field(converter=JobState)
    counters: JobCounters = JobCounters()
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    state_reason: str = ""
    recent_errors: tuple[str, ...] = ()
    verify_report: tuple[str, ...] = ()
    owner: str = ""
    """The user the job runs for ("" for a job stored before jobs recorded their owner)."""
    owner_credential_version: int = 0
    schema_version: int = SCHEMA_VERSION

    @property
    def job_owner(self) -> JobOwner:
        """:attr:`owner` and :attr:`owner_credential_version` (:data:`NO_OWNER` for an old job)."""
        return JobOwner(self.owner, self.owner_credential_version)

    def throughput_bytes_per_s(self, now: float | None = None) -> float:
        """Average copy rate since the job started."""
        if not self.started_at:
            return 0.0
        end = self.finished_at or (now if now is not None else time.time())
        return self.counters.bytes_copied / max(end - self.started_at, 1e-6)


@attrs.frozen
class BatchRecord:
    """The state of one batch: its claim, its attempts, and once done, its result."""

    number: int
    files: int
    bytes: int
    state: BatchState = attrs.field(default=BatchState.PENDING, converter=BatchState)
    worker: str = ""
    claim_token: str = ""
    lease_deadline: float = 0.0
    attempts: int = 0
    not_before: float = 0.0
    claims: int = 0
    last_error: str = ""
    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    files_changed: int = 0


@attrs.frozen
class BatchAssignment:
    """What a worker receives when it claims a batch (``claims`` counts this claim too)."""

    job_id: str
    spec: JobSpec
    number: int
    claim_token: str
    lease_deadline: float
    lease_ttl_s: float
    entries: list[ScanEntry]
    claims: int = 1


@attrs.frozen
class BatchResult:
    """What a worker reports for a finished batch."""

    files_copied: int = 0
    bytes_copied: int = 0
    files_skipped: int = 0
    files_changed: int = 0
    errors: tuple[str, ...] = ()
