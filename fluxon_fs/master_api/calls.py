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
    AUTH_EPOCH_PATH,
    AUTH_LOGIN_PATH,
    AUTH_USER_ACCESS_PATH,
    AUTH_VERIFY_PATH,
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
    AuthEpochQuery,
    AuthEpochReply,
    BatchClaim,
    BatchClaimReply,
    BatchCompletion,
    BatchFailure,
    BatchReportReply,
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


EXPORT_SNAPSHOT = Call(CONFIG_PATH, ExportSnapshotQuery, ExportSnapshotReply)
REGISTER_EXPORT = Call(EXPORT_REGISTRY_PATH, ExportRegistration, ExportRegistrationReply, op="register")
HEARTBEAT_EXPORT = Call(EXPORT_REGISTRY_PATH, ExportHeartbeat, ExportHeartbeatReply, op="heartbeat")
UNREGISTER_EXPORT = Call(EXPORT_REGISTRY_PATH, ExportUnregistration, ExportUnregistrationReply, op="unregister")
REPORT_MOUNT = Call(MOUNT_REGISTRY_PATH, MountReport, MountReportReply, op="report")
REMOVE_MOUNT = Call(MOUNT_REGISTRY_PATH, MountRemoval, MountRemovalReply, op="remove")
LOGIN = Call(AUTH_LOGIN_PATH, Login, LoginReply)
VERIFY_TOKEN = Call(AUTH_VERIFY_PATH, TokenVerification, TokenClaims)
USER_ACCESS = Call(AUTH_USER_ACCESS_PATH, UserAccessQuery, UserAccessReply)
AUTH_EPOCH = Call(AUTH_EPOCH_PATH, AuthEpochQuery, AuthEpochReply)
CLAIM_BATCH = Call(TRANSFER_CLAIM_PATH, BatchClaim, BatchClaimReply)
RENEW_LEASE = Call(TRANSFER_RENEW_PATH, LeaseRenewal, LeaseRenewalReply)
COMPLETE_BATCH = Call(TRANSFER_COMPLETE_PATH, BatchCompletion, BatchReportReply)
FAIL_BATCH = Call(TRANSFER_FAIL_PATH, BatchFailure, BatchReportReply)
CREATE_JOB = Call(TRANSFER_CREATE_PATH, JobCreation, JobCreationReply)
IMPORT_PRESCAN = Call(TRANSFER_IMPORT_PATH, PrescanImport, JobCreationReply)
LIST_JOBS = Call(TRANSFER_LIST_PATH, JobListQuery, JobListReply)
SHOW_JOB = Call(TRANSFER_SHOW_PATH, JobQuery, JobReply)
ACT_ON_JOB = Call(TRANSFER_ACTION_PATH, JobAction, JobActionReply)

CALLS: tuple[Call[Any, Any], ...] = (
    EXPORT_SNAPSHOT,
    REGISTER_EXPORT,
    HEARTBEAT_EXPORT,
    UNREGISTER_EXPORT,
    REPORT_MOUNT,
    REMOVE_MOUNT,
    LOGIN,
    VERIFY_TOKEN,
    USER_ACCESS,
    AUTH_EPOCH,
    CLAIM_BATCH,
    RENEW_LEASE,
    COMPLETE_BATCH,
    FAIL_BATCH,
    CREATE_JOB,
    IMPORT_PRESCAN,
    LIST_JOBS,
    SHOW_JOB,
    ACT_ON_JOB,
)


def _by_path() -> dict[str, tuple[Call[Any, Any], ...]]:
    grouped: dict[str, tuple[Call[Any, Any], ...]] = {}
    for call in CALLS:
        grouped[call.path] = (*grouped.get(call.path, ()), call)
    return grouped


CALLS_BY_PATH: Mapping[str, tuple[Call[Any, Any], ...]] = _by_path()
"""The calls served on each path."""
