"""Whose authority a transfer job's work runs with: its owner's, never the system's.

The fs master scans and verifies a job through an agent, and hands each claimed batch to an
agent's worker (``ClaimedBatch.access_token``, refreshed with every lease renewal). All of it runs
with a session token of the job's owner minted by :class:`~fluxon_fs.auth.delegation.DelegatedSessions`:
every export call carries it, so the agent applies the owner's scopes and re-authorises a symlink
on its real path, as for the owner's own requests.

A job whose owner can no longer run it is paused with the reason as its ``state_reason``, before
anything else is scanned, copied or verified for it:

* the owner was removed — a user who can manage users may resume the job, and it then runs as them;
* the owner's password changed since they started it — the owner resumes it (with their new
  session), or a user who can manage users does and it then runs as them;
* the job was stored before jobs recorded their owner (an upgrade) — nobody's authority covers it,
  so it never runs as the system: a user who can manage users resumes it and it runs as them.
"""

from __future__ import annotations

from collections.abc import Callable

from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.delegation import DelegatedSessions, DelegationRefusedError
from fluxon_fs.transfer.jobs import JobRecord

ADOPT_HINT = "a user who can manage users may resume it, and it then runs as them"


class JobOwnerError(PermissionDeniedError):
    """A job's owner cannot run it now; the message says why and who may resume it."""


class JobAuthority:
    """Session tokens of jobs' owners, for the work the fs master does or hands out for them."""

    def __init__(self, sessions: DelegatedSessions) -> None:
        self._sessions = sessions

    def token(self, job: JobRecord) -> str:
        """A session token of ``job``'s owner; :class:`JobOwnerError` when the owner cannot run it."""
        if not job.owner:
            raise JobOwnerError(
                f"job {job.job_id} was stored before jobs recorded their owner, so it does not run as "
                f"anybody; {ADOPT_HINT}"
            )
        try:
            return self._sessions.token(job.owner, job.owner_credential_version)
        except DelegationRefusedError as exc:
            if exc.user_removed:
                raise JobOwnerError(f"owner {job.owner!r} of job {job.job_id} no longer exists; {ADOPT_HINT}") from None
            raise JobOwnerError(
                f"the password of owner {job.owner!r} changed since job {job.job_id} was started; "
                f"{job.owner!r} may resume it, or {ADOPT_HINT}"
            ) from None

    def problem(self, job: JobRecord) -> str:
        """Why the owner cannot run ``job`` now ("" when they can)."""
        try:
            self.token(job)
        except JobOwnerError as exc:
            return exc.message
        return ""

    def auth(self, job: JobRecord) -> Callable[[str], str]:
        """``auth(rpc_path)`` for export calls made for ``job``: its owner's current token on every call."""
        return lambda _path: self.token(job)
