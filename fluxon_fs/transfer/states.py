"""The states of transfer jobs, their batches and pre-scans.

String-valued enums (:class:`enum.StrEnum`): a member is equal to, formats as and encodes to JSON as
its value, so stored records, RPC payloads and the panel's JSON keep the plain strings
(``"running"``) while code compares against members.

A job moves ``scanning → running → verifying → succeeded | failed``; it can be ``paused`` (and
resumed) while it scans or runs, and ``cancelled`` until it has ended. ``ready`` belongs to the
documented state set (scanned, waiting to run); this version never enters it (a scanned job
becomes ``running``), but pause and cancel accept it.
"""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    """Where a transfer job is in its life."""

    SCANNING = "scanning"
    READY = "ready"
    RUNNING = "running"
    PAUSED = "paused"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """The job has ended (succeeded, failed or cancelled); only a failed one can be retried."""
        return self in _FINAL_JOB_STATES

    @property
    def can_pause(self) -> bool:
        """``pause`` is allowed: the job scans or runs."""
        return self in _PAUSABLE_JOB_STATES

    @property
    def can_cancel(self) -> bool:
        """``cancel`` is allowed: the job has not ended."""
        return not self.is_final

    @property
    def holds_leases(self) -> bool:
        """Claimed batches of the job may still be renewed and reported (running or paused)."""
        return self in (JobState.RUNNING, JobState.PAUSED)


_FINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
_PAUSABLE_JOB_STATES = frozenset({JobState.SCANNING, JobState.READY, JobState.RUNNING})


class BatchState(enum.StrEnum):
    """Where a batch is: ``pending → claimed(worker, lease) → done | failed``."""

    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    FAILED = "failed"


class PrescanState(enum.StrEnum):
    """Where the latest epoch of a pre-scan is; only a ``done`` scan can be imported as a job."""

    SCANNING = "scanning"
    DONE = "done"
    FAILED = "failed"
