"""Who may create, see and steer transfer jobs — one set of rules for the CLI / Python API and the panel.

* **Create** a job: read access to the source folder and read_write access to the target prefix
  (users who can manage users reach everything). The job runs for its creator (:class:`JobOwner`).
* **See** a job (list, show, the panel's pages and JSON): its owner, users who may read its source
  folder or write its target prefix, and users who can manage users.
* **Steer** it (pause, resume, cancel, retry): its owner, users who could create the same job, and
  users who can manage users.
* **Resume** keeps the job's owner — except when the owner can no longer run it
  (:mod:`fluxon_fs.fs_master.job_authority`): the owner resuming it after a password change binds it
  to their new credentials; a user who can manage users resuming it takes it over (it then runs as
  them); anyone else is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fluxon_core.errors import ApiError, InvalidArgumentError, PermissionDeniedError
from fluxon_fs.auth.identity import Authorizer, Identity
from fluxon_fs.fs_master.job_authority import JobAuthority
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.jobs import JobOwner, JobRecord, JobSpec

JOB_ACTIONS = ("pause", "resume", "cancel", "retry_failed")


def allowed(check: Callable[[], object]) -> bool:
    """True when ``check()`` returns, False when it refuses (any typed error, e.g. a bad path)."""
    try:
        check()
    except ApiError:
        return False
    return True


def authorize_new_job(authorizer: Authorizer, token: str, spec: JobSpec) -> JobOwner:
    """Allow the session to create ``spec`` (read the source folder, write the target prefix) or raise
    :class:`PermissionDeniedError` naming what is missing; returns the job's owner."""
    identity = authorizer.authorize(token, spec.source_export, spec.source_dir, is_write=False)
    authorizer.authorize(token, spec.target_export, spec.target_prefix, is_write=True)
    return owner_of(identity)


def owner_of(identity: Identity) -> JobOwner:
    """The owner of a job created (or taken over) by ``identity``."""
    return JobOwner(identity.username, identity.credential_version)


def may_see(authorizer: Authorizer, token: str, job: JobRecord) -> bool:
    """True when the session may see ``job`` (see the module docstring)."""
    identity = authorizer.authenticate(token)
    if identity.can_manage_users or (job.owner and identity.username == job.owner):
        return True
    spec = job.spec
    return allowed(lambda: authorizer.authorize(token, spec.source_export, spec.source_dir, is_write=False)) or allowed(
        lambda: authorizer.authorize(token, spec.target_export, spec.target_prefix, is_write=True)
    )


def visible_jobs(authorizer: Authorizer, token: str, jobs: Iterable[JobRecord]) -> list[JobRecord]:
    """The jobs of ``jobs`` the session may see, in their order."""
    return [job for job in jobs if may_see(authorizer, token, job)]


def authorize_view(authorizer: Authorizer, token: str, job: JobRecord) -> None:
    """Allow showing ``job`` or raise :class:`PermissionDeniedError`."""
    if not may_see(authorizer, token, job):
        username = authorizer.authenticate(token).username
        raise PermissionDeniedError(f"permission denied: user {username!r} may not see transfer job {job.job_id}")


def authorize_control(authorizer: Authorizer, token: str, job: JobRecord) -> Identity:
    """Allow steering ``job`` or raise :class:`PermissionDeniedError` naming what is missing."""
    identity = authorizer.authenticate(token)
    if identity.can_manage_users or (job.owner and identity.username == job.owner):
        return identity
    authorize_new_job(authorizer, token, job.spec)
    return identity


def act_on_job(
    transfers: TransferCoordinator,
    authority: JobAuthority,
    authorizer: Authorizer,
    token: str,
    job_id: str,
    action: str,
) -> JobRecord:
    """Run ``action`` (one of :data:`JOB_ACTIONS`) on a job for the session; returns the job after it."""
    if action not in JOB_ACTIONS:
        raise InvalidArgumentError(f"unknown transfer action {action!r}; expected one of {', '.join(JOB_ACTIONS)}")
    job = transfers.job(job_id)
    identity = authorize_control(authorizer, token, job)
    if action == "resume":
        return transfers.resume(job.job_id, owner=_owner_after_resume(authority, identity, job))
    steer = {"pause": transfers.pause, "cancel": transfers.cancel, "retry_failed": transfers.retry_failed}
    return steer[action](job.job_id)


def _owner_after_resume(authority: JobAuthority, identity: Identity, job: JobRecord) -> JobOwner | None:
    """Who the job runs for after ``identity`` resumes it (None: unchanged)."""
    if job.owner and identity.username == job.owner:
        return owner_of(identity)  # the owner's current credentials, e.g. after a password change
    problem = authority.problem(job)
    if not problem:
        return None
    if identity.can_manage_users:
        return owner_of(identity)
    raise PermissionDeniedError(f"permission denied: {problem}")
