"""Every call of the fs master protocol: its path, request record and reply record.

The registries multiplex several calls on one path; their requests carry an ``op`` key naming the
call (``{"op": "register", ...}``), which the codec adds and strips.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs

from fluxon_fs.auth.tokens import TokenClaims
from fluxon_fs.master_api.paths import (
    AUTH_ACCESS_KEY_PATH,
    AUTH_EPOCH_PATH,
    AUTH_LOGIN_PATH,
    AUTH_USER_ACCESS_PATH,
    AUTH_VERIFY_PATH,
    CACHE_USAGE_PATH,
    CONFIG_PATH,
    EXPORT_REGISTRY_PATH,
    MOUNT_REGISTRY_PATH,
    TRANSFER_ACTION_PATH,
    TRANSFER_CLAIM_PATH,
    TRANSFER_COMPLETE_PATH,
    TRANSFER_CREATE_PATH,
    TRANSFER_FAIL_PATH,
    TRANSFER_IMPORT_PATH,
    TRANSFER_LIST_PATH,
    TRANSFER_RENEW_PATH,
    TRANSFER_SHOW_PATH,
)
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

RequestT = TypeVar("RequestT")
ReplyT = TypeVar("ReplyT")


@attrs.frozen
class Call(Generic[RequestT, ReplyT]):
    """One call: ``request`` records go to ``path`` and ``reply`` records come back."""

    path: str
    request: type[RequestT]
    reply: type[ReplyT]
    op: str | None = None
    """The ``op`` value naming this call on a path that serves several."""
    service_only: bool = False
    """Only the fs master and fs agents may make it: the request must carry a service token."""

    @property
    def signed_name(self) -> str:
        """What a service token of this call signs: the path, and the op on a multiplexed path."""
        return self.path if self.op is None else f"{self.path}#{self.op}"


_CALLS: list[Call[Any, Any]] = []


def _call(
    path: str, request: type[RequestT], reply: type[ReplyT], op: str | None = None, *, service_only: bool = False
) -> Call[RequestT, ReplyT]:
    call = Call(path, request, reply, op, service_only)
    _CALLS.append(call)
    return call


EXPORT_SNAPSHOT = _call(CONFIG_PATH, ExportSnapshotQuery, ExportSnapshotReply)
REGISTER_EXPORT = _call(
    EXPORT_REGISTRY_PATH, ExportRegistration, ExportRegistrationReply, op="register", service_only=True
)
HEARTBEAT_EXPORT = _call(EXPORT_REGISTRY_PATH, ExportHeartbeat, ExportHeartbeatReply, op="heartbeat", service_only=True)
UNREGISTER_EXPORT = _call(
    EXPORT_REGISTRY_PATH, ExportUnregistration, ExportUnregistrationReply, op="unregister", service_only=True
)
REPORT_MOUNT = _call(MOUNT_REGISTRY_PATH, MountReport, MountReportReply, op="report")
REMOVE_MOUNT = _call(MOUNT_REGISTRY_PATH, MountRemoval, MountRemovalReply, op="remove")
REPORT_CACHE_USAGE = _call(CACHE_USAGE_PATH, CacheUsageReport, CacheUsageReportReply)
LOGIN = _call(AUTH_LOGIN_PATH, Login, LoginReply)
VERIFY_TOKEN = _call(AUTH_VERIFY_PATH, TokenVerification, TokenClaims, service_only=True)
USER_ACCESS = _call(AUTH_USER_ACCESS_PATH, UserAccessQuery, UserAccessReply, service_only=True)
AUTH_EPOCH = _call(AUTH_EPOCH_PATH, AuthEpochQuery, AuthEpochReply, service_only=True)
ACCESS_KEY_SIGNING = _call(AUTH_ACCESS_KEY_PATH, AccessKeySigningQuery, AccessKeySigningReply, service_only=True)
CLAIM_BATCH = _call(TRANSFER_CLAIM_PATH, BatchClaim, BatchClaimReply, service_only=True)
RENEW_LEASE = _call(TRANSFER_RENEW_PATH, LeaseRenewal, LeaseRenewalReply, service_only=True)
COMPLETE_BATCH = _call(TRANSFER_COMPLETE_PATH, BatchCompletion, BatchReportReply, service_only=True)
FAIL_BATCH = _call(TRANSFER_FAIL_PATH, BatchFailure, BatchReportReply, service_only=True)
CREATE_JOB = _call(TRANSFER_CREATE_PATH, JobCreation, JobCreationReply)
IMPORT_PRESCAN = _call(TRANSFER_IMPORT_PATH, PrescanImport, JobCreationReply)
LIST_JOBS = _call(TRANSFER_LIST_PATH, JobListQuery, JobListReply)
SHOW_JOB = _call(TRANSFER_SHOW_PATH, JobQuery, JobReply)
ACT_ON_JOB = _call(TRANSFER_ACTION_PATH, JobAction, JobActionReply)

CALLS: tuple[Call[Any, Any], ...] = tuple(_CALLS)
"""Every call, in the order declared above."""


def _by_path() -> dict[str, tuple[Call[Any, Any], ...]]:
    grouped: dict[str, tuple[Call[Any, Any], ...]] = {}
    for call in CALLS:
        grouped[call.path] = (*grouped.get(call.path, ()), call)
    return grouped


CALLS_BY_PATH: Mapping[str, tuple[Call[Any, Any], ...]] = _by_path()
"""The calls served on each path."""
