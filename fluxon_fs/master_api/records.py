"""The requests and replies of the fs master protocol, one frozen record each.

A record's fields are its wire keys; :mod:`fluxon_fs.master_api.codec` turns records into JSON-able
dicts and back. Where a reply carries a transfer record (a job spec, a job, a batch state or a batch
result), the field holds the :mod:`fluxon_fs.transfer.jobs` record itself, so the wire form of
those records follows the transfer package's own definition of them.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from fluxon_core.access.records import ScopeGrant, ScopeMode, UserAccess
from fluxon_fs.config import ExportCacheConfig, FsCacheConfig
from fluxon_fs.transfer.jobs import BatchAssignment, BatchRecord, BatchResult, JobRecord, JobSpec
from fluxon_fs.transfer.records import ScanEntry

# ----- /fluxon_fs/config ----------------------------------------------------------------------------


@attrs.frozen
class ExportSnapshotQuery:
    """Ask for the export snapshot; ``known_version`` (the caller's current one) makes an unchanged answer cheap."""

    known_version: str = ""


@attrs.frozen
class SnapshotAgent:
    """A live fs agent serving an export."""

    instance_key: str
    endpoint: str


@attrs.frozen
class SnapshotExport(ExportCacheConfig):
    """One export of the snapshot: how clients cache it, and the agents serving it now."""

    agents: tuple[SnapshotAgent, ...] = ()

    @classmethod
    def of(cls, config: ExportCacheConfig, agents: Iterable[SnapshotAgent]) -> SnapshotExport:
        """The export configured by ``config``, served by ``agents``."""
        return cls(**attrs.asdict(config, recurse=False), agents=tuple(agents))


@attrs.frozen
class ExportSnapshotReply:
    """The snapshot at ``version``; ``unchanged`` when that is the caller's ``known_version``.

    ``cache`` (the master's cache config with every export of the snapshot, without local rules,
    which describe each client's own host) and ``exports`` come exactly when the snapshot changed.
    """

    version: str
    unchanged: bool
    cache: FsCacheConfig | None = None
    exports: dict[str, SnapshotExport] | None = None

    def __attrs_post_init__(self) -> None:
        if (self.cache is None) != self.unchanged or (self.exports is None) != self.unchanged:
            raise ValueError("cache and exports must be given exactly when the snapshot is not unchanged")


# ----- /fluxon_fs/export_registry -------------------------------------------------------------------


@attrs.frozen
class ExportRegistration:
    """An agent serves ``exports`` (export name -> root directory on the agent) at ``endpoint``."""

    endpoint: str
    exports: dict[str, str]


@attrs.frozen
class ExportRegistrationReply:
    """The snapshot version after the registration, and how long it lives without a heartbeat."""

    version: str
    lease_ttl_s: float


@attrs.frozen
class ExportHeartbeat:
    """Renew the calling agent's registration."""


@attrs.frozen
class ExportHeartbeatReply:
    """``known`` is False when the registration expired and the agent must register again."""

    known: bool
    lease_ttl_s: float


@attrs.frozen
class ExportUnregistration:
    """The calling agent stops serving its exports (clean stop)."""


@attrs.frozen
class ExportUnregistrationReply:
    """Whether the agent was registered."""

    removed: bool


# ----- /fluxon_fs/mount_registry --------------------------------------------------------------------


@attrs.frozen
class MountReport:
    """The calling client mounts ``export_name`` at ``local_mount_dir_abs`` (sent again while it lives).

    ``token`` is the session token of the mount's identity: the master shows the user it names, never
    a name the client claims ("" without an identity).
    """

    local_mount_dir_abs: str
    export_name: str
    token: str = ""
    host: str = ""
    pid: int = 0


@attrs.frozen
class MountReportReply:
    """The report was recorded."""

    ok: bool


@attrs.frozen
class MountRemoval:
    """The calling client unmounted ``local_mount_dir_abs``."""

    local_mount_dir_abs: str


@attrs.frozen
class MountRemovalReply:
    """Whether the mount was known."""

    removed: bool


# ----- /fluxon_fs/cache_usage -----------------------------------------------------------------------


@attrs.frozen
class ExportPoolFigures:
    """One export's cached pieces in a host pool, from the pool owner's budget accounting."""

    budget_bytes: int
    used_bytes: int
    """What the pieces take in the pool now (charged bytes, as the budget counts them)."""
    entries: int
    evictions: int
    """Pieces evicted so far (to keep the budget, or the pool within its capacity)."""


@attrs.frozen
class ExportCacheFigures:
    """One mounted export's content cache as the reporting client sees it."""

    hits: int
    """Pieces the client's readers got from the cache since its previous report."""
    misses: int
    """Pieces the client's readers fetched from an agent since its previous report."""
    pool: ExportPoolFigures | None = None
    """The export in the client's host pool; None when the pool holds no budget for it."""


@attrs.frozen
class CacheUsageReport:
    """The calling client's content-cache figures of each export it mounts (sent with its mount reports).

    ``pool_owner`` names the owner whose pool the client caches into: one per host, so reports of
    clients on one host describe the same pool.
    """

    pool_owner: str
    host: str
    valid_for_s: float
    """How long the usage figures stand without a newer report (the client reports well within it)."""
    exports: dict[str, ExportCacheFigures]


@attrs.frozen
class CacheUsageReportReply:
    """The report was added."""

    ok: bool


# ----- /fluxon_fs/auth/* ----------------------------------------------------------------------------


@attrs.frozen
class Login:
    """Verify a password once and get a session token."""

    username: str
    password: str


@attrs.frozen
class LoginReply:
    """A signed session token and when it expires (seconds since the epoch)."""

    token: str
    expires_at: int


@attrs.frozen
class TokenVerification:
    """Check a session token; the reply is its :class:`~fluxon_fs.auth.tokens.TokenClaims`."""

    token: str


@attrs.frozen
class UserAccessQuery:
    """Ask for one user's access as the master's access store holds it now."""

    username: str


@attrs.frozen
class UserAccessReply:
    """A user's access; ``exists`` is False (and nothing else is sent) when there is no such user."""

    exists: bool
    username: str = ""
    can_manage_users: bool = False
    credential_version: int = 0
    grants: tuple[tuple[str, str, ScopeMode], ...] = ()
    """(export name, prefix, mode) of each grant."""

    @classmethod
    def of(cls, access: UserAccess | None) -> UserAccessReply:
        """The reply describing ``access`` (None: no such user)."""
        if access is None:
            return cls(exists=False)
        grants = tuple((g.export_name, g.prefix, g.mode) for g in access.grants)
        return cls(True, access.username, access.can_manage_users, access.credential_version, grants)

    def user_access(self) -> UserAccess | None:
        """The access this reply describes (None: no such user)."""
        if not self.exists:
            return None
        grants = tuple(ScopeGrant(export, prefix, mode) for export, prefix, mode in self.grants)
        return UserAccess(self.username, self.can_manage_users, self.credential_version, grants)


@attrs.frozen
class AuthEpochQuery:
    """Ask for the access epoch (it moves whenever users or grants change)."""


@attrs.frozen
class AuthEpochReply:
    """The access epoch, and the master's revocation bound (None from a master that does not send it)."""

    auth_epoch: int
    revocation_bound_s: float | None = None


@attrs.frozen
class AccessKeySigningQuery:
    """Ask for the SigV4 signing key of an S3 access key for one day (``YYYYMMDD``), region and service."""

    access_key_id: str
    date: str
    region: str
    service: str


@attrs.frozen(repr=False)
class AccessKeySigningReply:
    """The signing key (hex) and a session token of the key's user; ``exists`` False: no such key.

    ``valid_for_s`` is how long the answer may be reused: the master's revocation bound, so a revoked
    key stops working as quickly as a changed password does.
    """

    exists: bool
    username: str = ""
    signing_key: str = ""
    token: str = ""
    valid_for_s: float = 0.0

    def __repr__(self) -> str:
        return f"AccessKeySigningReply(exists={self.exists!r}, username={self.username!r}, ...)"


# ----- /fluxon_fs/transfer/* (agents' workers) ------------------------------------------------------


@attrs.frozen
class BatchClaim:
    """A worker asks for a batch whose target export its agent serves.

    The worker is named ``<agent>/<incarnation>/<worker>``; a fresh incarnation per agent process
    lets the master hand over the claims of a restarted agent's previous process at once.
    """

    worker: str
    incarnation: str
    target_exports: tuple[str, ...]
    wait_s: float = 0.0
    """When nothing is claimable, the master may hold the call up to this long (it caps the wait, and
    answers at once when it already holds as many calls as it allows) and answers as soon as a batch
    becomes claimable."""


@attrs.frozen
class ClaimedBatch:
    """A batch handed to a worker: what to copy, the claim it must renew and report with, and the
    session token of the job's owner that every export call of the copy carries (so agents apply the
    owner's scopes; renewals bring a fresh one)."""

    job_id: str
    spec: JobSpec
    number: int
    claim_token: str
    lease_deadline: float
    lease_ttl_s: float
    entries: tuple[tuple[str, str, int, int, int], ...]
    """The batch's :class:`~fluxon_fs.transfer.records.ScanEntry` rows."""
    claims: int
    access_token: str

    @classmethod
    def of(cls, assignment: BatchAssignment, access_token: str) -> ClaimedBatch:
        """The coordinator's assignment as a worker receives it, with the owner's token."""
        fields = attrs.asdict(assignment, recurse=False)
        entries = tuple(tuple(entry) for entry in assignment.entries)
        return cls(**{**fields, "entries": entries, "access_token": access_token})

    def scan_entries(self) -> list[ScanEntry]:
        """The entries to copy."""
        return [ScanEntry(*row) for row in self.entries]


@attrs.frozen
class BatchClaimReply:
    """A claimed batch, or None when nothing is claimable now."""

    assignment: ClaimedBatch | None
    claim_again: bool = False
    """The call was held and ended because a batch may have become claimable: claim again now."""


@attrs.frozen
class LeaseRenewal:
    """Extend the lease of a claimed batch."""

    job_id: str
    number: int
    claim_token: str


@attrs.frozen
class LeaseRenewalReply:
    """The new lease deadline, or None when the claim is lost (the worker abandons the batch), and the
    owner's current session token for the rest of the copy ("" when there is none: keep the last)."""

    lease_deadline: float | None
    access_token: str = ""


@attrs.frozen
class BatchCompletion:
    """A worker finished copying a batch."""

    job_id: str
    number: int
    claim_token: str
    result: BatchResult


@attrs.frozen
class BatchFailure:
    """A worker could not copy a batch at all (``error`` is why)."""

    job_id: str
    number: int
    claim_token: str
    error: str


@attrs.frozen
class BatchReportReply:
    """Whether the report counted (False when the claim was no longer held)."""

    accepted: bool


# ----- /fluxon_fs/transfer/* (users: CLI, Python API) -----------------------------------------------


@attrs.frozen
class JobCreation:
    """Start a job that scans ``spec.source_dir`` of the source export, then copies."""

    token: str
    spec: JobSpec


@attrs.frozen
class PrescanImport:
    """Turn a finished pre-scan into a running job."""

    token: str
    prescan_job_id: str
    spec: JobSpec


@attrs.frozen
class JobCreationReply:
    """The new job's id."""

    job_id: str


@attrs.frozen
class JobView:
    """A job as the master shows it: the stored record, its throughput, and the state store's error.

    ``state_store_error`` is set while the transfer state store is unreachable; ``job`` is then the
    last known record and makes no progress.
    """

    job: JobRecord
    throughput_bytes_per_s: float
    state_store_error: str = ""

    @classmethod
    def of(cls, job: JobRecord, state_store_error: str = "") -> JobView:
        """The view of ``job`` now."""
        return cls(job, job.throughput_bytes_per_s(), state_store_error)


@attrs.frozen
class JobListQuery:
    """Every job, newest first."""

    token: str


@attrs.frozen
class QuarantinedJob:
    """A job record the fs master could not read and moved aside under the state store's ``quarantine/``."""

    key: str
    """Where the record was (``jobs/<job_id>``)."""
    error: str
    quarantined_at: float


@attrs.frozen
class JobListReply:
    """The jobs, and the state store's error while it is unreachable (then the jobs are the last known ones).

    ``quarantined_count`` job records could not be read and were moved aside; ``quarantined`` lists
    them for users who can manage users (they alone can repair the store), empty for everyone else.
    """

    jobs: tuple[JobView, ...]
    state_store_error: str
    quarantined: tuple[QuarantinedJob, ...] = ()
    quarantined_count: int = 0


@attrs.frozen
class JobQuery:
    """One job with its batches."""

    token: str
    job_id: str


@attrs.frozen
class JobReply:
    """A job and its batches (without claim tokens: they stay between the master and the claiming worker)."""

    job: JobView
    batches: tuple[BatchRecord, ...]
    state_store_error: str


@attrs.frozen
class JobAction:
    """``pause``, ``resume``, ``cancel`` or ``retry_failed`` a job."""

    token: str
    job_id: str
    action: str


@attrs.frozen
class JobActionReply:
    """The job after the action."""

    job: JobView
