"""The typed client of the fs master: one method per call of :mod:`fluxon_fs.master_api.calls`.

Every FS role and mount client reaches the fs master as ``(fluxon_fs.master.instance_key, path)``
through its own :class:`~fluxon_core.kv.KvClient`; calls are signed by the KV plane, and the calls only
services may make also carry a service token (:mod:`fluxon_fs.auth.service`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from fluxon_fs.auth.service import ServiceCredential
from fluxon_fs.auth.tokens import TokenClaims
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.calls import Call
from fluxon_fs.master_api.codec import decode_reply, encode_request, with_service_auth
from fluxon_fs.master_api.records import (
    AccessKeySigningQuery,
    AccessKeySigningReply,
    AuthEpochQuery,
    AuthEpochReply,
    BatchClaim,
    BatchClaimReply,
    BatchCompletion,
    BatchFailure,
    BatchReportReply,
    CacheUsageReport,
    CacheUsageReportReply,
    ExportHeartbeat,
    ExportHeartbeatReply,
    ExportRegistration,
    ExportRegistrationReply,
    ExportSnapshotQuery,
    ExportSnapshotReply,
    ExportUnregistration,
    ExportUnregistrationReply,
    JobAction,
    JobActionReply,
    JobCreation,
    JobCreationReply,
    JobListQuery,
    JobListReply,
    JobQuery,
    JobReply,
    LeaseRenewal,
    LeaseRenewalReply,
    Login,
    LoginReply,
    MountRemoval,
    MountRemovalReply,
    MountReport,
    MountReportReply,
    PrescanImport,
    TokenVerification,
    UserAccessQuery,
    UserAccessReply,
)

DEFAULT_MASTER_TIMEOUT_MS = 10_000

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


class FsMasterLink:
    """Calls to one fs master; raises the typed error the master (or the KV plane) reported."""

    def __init__(
        self,
        store: Any,
        master_instance_key: str,
        timeout_ms: float = DEFAULT_MASTER_TIMEOUT_MS,
        *,
        service: ServiceCredential | None = None,
    ) -> None:
        # The guide-compatible client wraps a native one; anything else is taken as a store (test doubles).
        self.store = getattr(store, "native_store", store)
        self.master_instance_key = master_instance_key
        self.timeout_ms = timeout_ms
        self._service = service
        """Signs service-only calls (fs master and fs agents); None in a mount client."""

    def call(self, path: str, payload: Mapping[str, Any], timeout_ms: float | None = None) -> dict[str, Any]:
        """Send a raw payload to ``path`` and return the raw reply (the typed methods build on this)."""
        result = self.store.rpc_call(self.master_instance_key, path, payload, timeout_ms or self.timeout_ms)
        if result.is_err():
            raise result.unwrap_error()
        return result.unwrap()

    def _exchange(self, call: Call[RequestT, ReplyT], request: RequestT, timeout_ms: float | None) -> ReplyT:
        payload = encode_request(call, request)
        if call.service_only and self._service is not None:
            payload = with_service_auth(payload, self._service.signer(self.store.instance_key())(call.signed_name))
        return decode_reply(call, self.call(call.path, payload, timeout_ms))

    # ----- export snapshot and registries -------------------------------------------------------

    def export_snapshot(self, query: ExportSnapshotQuery, timeout_ms: float | None = None) -> ExportSnapshotReply:
        """The export snapshot (only its version when it is still ``query.known_version``)."""
        return self._exchange(calls.EXPORT_SNAPSHOT, query, timeout_ms)

    def register_export(
        self, registration: ExportRegistration, timeout_ms: float | None = None
    ) -> ExportRegistrationReply:
        """Register (or refresh) the calling agent's exports."""
        return self._exchange(calls.REGISTER_EXPORT, registration, timeout_ms)

    def heartbeat_export(self, heartbeat: ExportHeartbeat, timeout_ms: float | None = None) -> ExportHeartbeatReply:
        """Renew the calling agent's registration."""
        return self._exchange(calls.HEARTBEAT_EXPORT, heartbeat, timeout_ms)

    def unregister_export(
        self, unregistration: ExportUnregistration, timeout_ms: float | None = None
    ) -> ExportUnregistrationReply:
        """Withdraw the calling agent's exports."""
        return self._exchange(calls.UNREGISTER_EXPORT, unregistration, timeout_ms)

    def report_mount(self, report: MountReport, timeout_ms: float | None = None) -> MountReportReply:
        """Record (or refresh) a mount of the calling client."""
        return self._exchange(calls.REPORT_MOUNT, report, timeout_ms)

    def remove_mount(self, removal: MountRemoval, timeout_ms: float | None = None) -> MountRemovalReply:
        """Forget a mount of the calling client."""
        return self._exchange(calls.REMOVE_MOUNT, removal, timeout_ms)

    def report_cache_usage(self, report: CacheUsageReport, timeout_ms: float | None = None) -> CacheUsageReportReply:
        """Add the calling client's content-cache figures (pool usage per export, hits and misses since the last)."""
        return self._exchange(calls.REPORT_CACHE_USAGE, report, timeout_ms)

    # ----- access -------------------------------------------------------------------------------

    def login(self, login: Login, timeout_ms: float | None = None) -> LoginReply:
        """A session token for a user name and password (``PermissionDeniedError`` when refused)."""
        return self._exchange(calls.LOGIN, login, timeout_ms)

    def verify_token(self, verification: TokenVerification, timeout_ms: float | None = None) -> TokenClaims:
        """The claims of a valid token (``PermissionDeniedError`` otherwise)."""
        return self._exchange(calls.VERIFY_TOKEN, verification, timeout_ms)

    def user_access(self, query: UserAccessQuery, timeout_ms: float | None = None) -> UserAccessReply:
        """A user's access as the master's access store holds it now."""
        return self._exchange(calls.USER_ACCESS, query, timeout_ms)

    def auth_epoch(self, query: AuthEpochQuery, timeout_ms: float | None = None) -> AuthEpochReply:
        """The access epoch and the master's revocation bound."""
        return self._exchange(calls.AUTH_EPOCH, query, timeout_ms)

    def access_key_signing(
        self, query: AccessKeySigningQuery, timeout_ms: float | None = None
    ) -> AccessKeySigningReply:
        """The SigV4 signing key of an access key for one day, region and service, with its user's token."""
        return self._exchange(calls.ACCESS_KEY_SIGNING, query, timeout_ms)

    # ----- transfer batches (agents' workers) ---------------------------------------------------

    def claim_batch(self, claim: BatchClaim, timeout_ms: float | None = None) -> BatchClaimReply:
        """The next claimable batch for a worker, if any."""
        return self._exchange(calls.CLAIM_BATCH, claim, timeout_ms)

    def renew_lease(self, renewal: LeaseRenewal, timeout_ms: float | None = None) -> LeaseRenewalReply:
        """Extend the lease of a claimed batch."""
        return self._exchange(calls.RENEW_LEASE, renewal, timeout_ms)

    def complete_batch(self, completion: BatchCompletion, timeout_ms: float | None = None) -> BatchReportReply:
        """Report a copied batch."""
        return self._exchange(calls.COMPLETE_BATCH, completion, timeout_ms)

    def fail_batch(self, failure: BatchFailure, timeout_ms: float | None = None) -> BatchReportReply:
        """Report a batch that could not be copied."""
        return self._exchange(calls.FAIL_BATCH, failure, timeout_ms)

    # ----- transfer jobs (users) ----------------------------------------------------------------

    def create_job(self, creation: JobCreation, timeout_ms: float | None = None) -> JobCreationReply:
        """Start a job that scans its source, then copies."""
        return self._exchange(calls.CREATE_JOB, creation, timeout_ms)

    def import_prescan(self, prescan_import: PrescanImport, timeout_ms: float | None = None) -> JobCreationReply:
        """Turn a finished pre-scan into a running job."""
        return self._exchange(calls.IMPORT_PRESCAN, prescan_import, timeout_ms)

    def list_jobs(self, query: JobListQuery, timeout_ms: float | None = None) -> JobListReply:
        """Every job, newest first."""
        return self._exchange(calls.LIST_JOBS, query, timeout_ms)

    def show_job(self, query: JobQuery, timeout_ms: float | None = None) -> JobReply:
        """One job with its batches."""
        return self._exchange(calls.SHOW_JOB, query, timeout_ms)

    def act_on_job(self, action: JobAction, timeout_ms: float | None = None) -> JobActionReply:
        """Pause, resume, cancel or retry the failed batches of a job."""
        return self._exchange(calls.ACT_ON_JOB, action, timeout_ms)
