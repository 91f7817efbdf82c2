"""The fs master protocol: every call's records against the wire dicts peers already exchange, and strictness."""

from __future__ import annotations

import inspect
import json
from typing import Any

import attrs
import pytest

from fluxon_core.access.records import ScopeGrant, ScopeMode, UserAccess
from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.auth.tokens import TokenClaims
from fluxon_fs.config import ExportCacheConfig, FsCacheConfig
from fluxon_fs.master_api import calls
from fluxon_fs.master_api.codec import decode_reply, decode_request, encode_request, to_wire
from fluxon_fs.master_api.link import FsMasterLink
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
    ClaimedBatch,
    ExportCacheFigures,
    ExportHeartbeat,
    ExportHeartbeatReply,
    ExportPoolFigures,
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
    JobView,
    LeaseRenewal,
    LeaseRenewalReply,
    Login,
    LoginReply,
    MountRemoval,
    MountRemovalReply,
    MountReport,
    MountReportReply,
    PrescanImport,
    QuarantinedJob,
    SnapshotAgent,
    SnapshotExport,
    TokenVerification,
    UserAccessQuery,
    UserAccessReply,
)
from fluxon_fs.transfer.jobs import BatchRecord, BatchResult, JobCounters, JobRecord, JobSpec

SPEC = JobSpec("src", "data/set1", "dst", "incoming", desired_worker_count=1)
SPEC_WIRE = {
    "source_export": "src",
    "source_dir": "data/set1",
    "target_export": "dst",
    "target_prefix": "incoming",
    "desired_worker_count": 1,
    "batch_ready_bytes": 256 * 1024 * 1024,
    "conflict_policy": "overwrite",
    "max_attempts": 5,
    "verify_checksum": False,
    "prescan_job_id": "",
}
JOB = JobRecord(
    "job-1",
    SPEC,
    "succeeded",
    JobCounters(files_total=3, bytes_copied=300),
    created_at=10.0,
    started_at=11.0,
    finished_at=13.0,
    recent_errors=("one",),
    owner="alice",
    owner_credential_version=2,
)
JOB_WIRE = {
    "job_id": "job-1",
    "spec": SPEC_WIRE,
    "state": "succeeded",
    "counters": {**{f.name: 0 for f in attrs.fields(JobCounters)}, "files_total": 3, "bytes_copied": 300},
    "created_at": 10.0,
    "started_at": 11.0,
    "finished_at": 13.0,
    "state_reason": "",
    "recent_errors": ["one"],
    "verify_report": [],
    "owner": "alice",
    "owner_credential_version": 2,
    "schema_version": 1,
    "throughput_bytes_per_s": 150.0,
    "state_store_error": "",
}
BATCH = BatchRecord(0, files=3, bytes=300, state="claimed", worker="a/i/0", claim_token="secret", claims=1)
BATCH_WIRE = {
    "number": 0,
    "files": 3,
    "bytes": 300,
    "state": "claimed",
    "worker": "a/i/0",
    "lease_deadline": 0.0,
    "attempts": 0,
    "not_before": 0.0,
    "claims": 1,
    "last_error": "",
    "files_copied": 0,
    "bytes_copied": 0,
    "files_skipped": 0,
    "files_changed": 0,
}
CACHE = FsCacheConfig(exports={"demo": ExportCacheConfig("/data/demo")})
EXPORT_WIRE = {
    "remote_root_dir_abs": "/data/demo",
    "nodes": None,
    "cache_max_bytes": 1 << 30,
    "metadata_cache_ttl_ms": 5000,
}
BATCH_KEY = {"job_id": "job-1", "number": 0, "claim_token": "secret"}

# (call, request, its wire payload, reply, its wire payload): the dicts are what peers sent before the
# protocol was typed, so old and new peers keep understanding each other.
EXCHANGES: list[tuple[calls.Call[Any, Any], Any, dict[str, Any], Any, dict[str, Any]]] = [
    (
        calls.EXPORT_SNAPSHOT,
        ExportSnapshotQuery("e:1"),
        {"known_version": "e:1"},
        ExportSnapshotReply("e:1", unchanged=True),
        {"version": "e:1", "unchanged": True},
    ),
    (
        calls.EXPORT_SNAPSHOT,
        ExportSnapshotQuery(),
        {"known_version": ""},
        ExportSnapshotReply(
            "e:2",
            unchanged=False,
            cache=CACHE,
            exports={"demo": SnapshotExport("/data/demo", agents=(SnapshotAgent("agent-a", "tcp://h:1"),))},
        ),
        {
            "version": "e:2",
            "unchanged": False,
            "cache": {
                "stale_window_ms": 1000,
                "write_session_target_inflight_bytes": 128 << 20,
                "exports": {"demo": EXPORT_WIRE},
            },
            "exports": {"demo": {**EXPORT_WIRE, "agents": [{"instance_key": "agent-a", "endpoint": "tcp://h:1"}]}},
        },
    ),
    (
        calls.REGISTER_EXPORT,
        ExportRegistration("tcp://h:1", {"demo": "/data/demo"}),
        {"op": "register", "endpoint": "tcp://h:1", "exports": {"demo": "/data/demo"}},
        ExportRegistrationReply("e:2", 6.0),
        {"version": "e:2", "lease_ttl_s": 6.0},
    ),
    (
        calls.HEARTBEAT_EXPORT,
        ExportHeartbeat(),
        {"op": "heartbeat"},
        ExportHeartbeatReply(known=False, lease_ttl_s=6.0),
        {"known": False, "lease_ttl_s": 6.0},
    ),
    (
        calls.UNREGISTER_EXPORT,
        ExportUnregistration(),
        {"op": "unregister"},
        ExportUnregistrationReply(removed=True),
        {"removed": True},
    ),
    (
        calls.REPORT_MOUNT,
        MountReport("/mnt/a", "demo", token="fx1.token", host="h1", pid=42),
        {
            "op": "report",
            "local_mount_dir_abs": "/mnt/a",
            "export_name": "demo",
            "token": "fx1.token",
            "host": "h1",
            "pid": 42,
        },
        MountReportReply(ok=True),
        {"ok": True},
    ),
    (
        calls.REMOVE_MOUNT,
        MountRemoval("/mnt/a"),
        {"op": "remove", "local_mount_dir_abs": "/mnt/a"},
        MountRemovalReply(removed=False),
        {"removed": False},
    ),
    (
        calls.REPORT_CACHE_USAGE,
        CacheUsageReport(
            "owner-h1",
            "h1",
            30.0,
            {
                "demo": ExportCacheFigures(5, 2, ExportPoolFigures(4 << 20, 3 << 20, 3, 1)),
                "aux": ExportCacheFigures(0, 1),
            },
        ),
        {
            "pool_owner": "owner-h1",
            "host": "h1",
            "valid_for_s": 30.0,
            "exports": {
                "demo": {
                    "hits": 5,
                    "misses": 2,
                    "pool": {"budget_bytes": 4 << 20, "used_bytes": 3 << 20, "entries": 3, "evictions": 1},
                },
                "aux": {"hits": 0, "misses": 1, "pool": None},
            },
        },
        CacheUsageReportReply(ok=True),
        {"ok": True},
    ),
    (
        calls.LOGIN,
        Login("alice", "pw"),
        {"username": "alice", "password": "pw"},
        LoginReply("tok", 1_700_000_000),
        {"token": "tok", "expires_at": 1_700_000_000},
    ),
    (
        calls.VERIFY_TOKEN,
        TokenVerification("tok"),
        {"token": "tok"},
        TokenClaims("alice", 1, 2, 3),
        {"username": "alice", "issued_at": 1, "expires_at": 2, "credential_version": 3},
    ),
    (
        calls.USER_ACCESS,
        UserAccessQuery("alice"),
        {"username": "alice"},
        UserAccessReply.of(UserAccess("alice", False, 3, (ScopeGrant("demo", "a/b", ScopeMode.READ_WRITE),))),
        {
            "exists": True,
            "username": "alice",
            "can_manage_users": False,
            "credential_version": 3,
            "grants": [["demo", "a/b", "read_write"]],
        },
    ),
    (
        calls.USER_ACCESS,
        UserAccessQuery("nobody"),
        {"username": "nobody"},
        UserAccessReply.of(None),
        {"exists": False},
    ),
    (
        calls.AUTH_EPOCH,
        AuthEpochQuery(),
        {},
        AuthEpochReply(7, 2.0),
        {"auth_epoch": 7, "revocation_bound_s": 2.0},
    ),
    (
        calls.ACCESS_KEY_SIGNING,
        AccessKeySigningQuery("FXABCDEFGHIJKLMNOPQR", "20260105", "us-east-1", "s3"),
        {"access_key_id": "FXABCDEFGHIJKLMNOPQR", "date": "20260105", "region": "us-east-1", "service": "s3"},
        AccessKeySigningReply(True, "alice", "ab" * 32, "fx1.t.m", 2.0),
        {"exists": True, "username": "alice", "signing_key": "ab" * 32, "token": "fx1.t.m", "valid_for_s": 2.0},
    ),
    (
        calls.CLAIM_BATCH,
        BatchClaim("0", "ab12", ("dst",)),
        {"worker": "0", "incarnation": "ab12", "target_exports": ["dst"], "wait_s": 0.0},
        BatchClaimReply(
            ClaimedBatch("job-1", SPEC, 0, "secret", 99.5, 5.0, (("f.txt", "f", 3, 4, 0o644),), 1, "fx1.owner")
        ),
        {
            "assignment": {
                "job_id": "job-1",
                "spec": SPEC_WIRE,
                "number": 0,
                "claim_token": "secret",
                "lease_deadline": 99.5,
                "lease_ttl_s": 5.0,
                "entries": [["f.txt", "f", 3, 4, 0o644]],
                "claims": 1,
                "access_token": "fx1.owner",
            },
            "claim_again": False,
        },
    ),
    (
        calls.CLAIM_BATCH,
        BatchClaim("1", "ab12", (), wait_s=2.0),
        {"worker": "1", "incarnation": "ab12", "target_exports": [], "wait_s": 2.0},
        BatchClaimReply(None, claim_again=True),
        {"assignment": None, "claim_again": True},
    ),
    (
        calls.RENEW_LEASE,
        LeaseRenewal("job-1", 0, "secret"),
        BATCH_KEY,
        LeaseRenewalReply(None),
        {"lease_deadline": None, "access_token": ""},
    ),
    (
        calls.RENEW_LEASE,
        LeaseRenewal("job-1", 0, "secret"),
        BATCH_KEY,
        LeaseRenewalReply(12.5, "fx1.fresh"),
        {"lease_deadline": 12.5, "access_token": "fx1.fresh"},
    ),
    (
        calls.COMPLETE_BATCH,
        BatchCompletion("job-1", 0, "secret", BatchResult(files_copied=3, bytes_copied=300, errors=("x",))),
        {
            **BATCH_KEY,
            "result": {"files_copied": 3, "bytes_copied": 300, "files_skipped": 0, "files_changed": 0, "errors": ["x"]},
        },
        BatchReportReply(accepted=True),
        {"accepted": True},
    ),
    (
        calls.FAIL_BATCH,
        BatchFailure("job-1", 0, "secret", "OSError(28)"),
        {**BATCH_KEY, "error": "OSError(28)"},
        BatchReportReply(accepted=False),
        {"accepted": False},
    ),
    (
        calls.CREATE_JOB,
        JobCreation("tok", SPEC),
        {"token": "tok", "spec": SPEC_WIRE},
        JobCreationReply("job-1"),
        {"job_id": "job-1"},
    ),
    (
        calls.IMPORT_PRESCAN,
        PrescanImport("tok", "scan-1", SPEC),
        {"token": "tok", "prescan_job_id": "scan-1", "spec": SPEC_WIRE},
        JobCreationReply("job-2"),
        {"job_id": "job-2"},
    ),
    (
        calls.LIST_JOBS,
        JobListQuery("tok"),
        {"token": "tok"},
        JobListReply((JobView.of(JOB),), "", (QuarantinedJob("jobs/job-0", "jobs/job-0: not a JSON record", 5.0),), 1),
        {
            "jobs": [JOB_WIRE],
            "state_store_error": "",
            "quarantined": [{"key": "jobs/job-0", "error": "jobs/job-0: not a JSON record", "quarantined_at": 5.0}],
            "quarantined_count": 1,
        },
    ),
    (
        calls.SHOW_JOB,
        JobQuery("tok", "job-1"),
        {"token": "tok", "job_id": "job-1"},
        JobReply(JobView.of(JOB, "store down"), (attrs.evolve(BATCH, claim_token=""),), "store down"),
        {
            "job": {**JOB_WIRE, "state_store_error": "store down"},
            "batches": [BATCH_WIRE],
            "state_store_error": "store down",
        },
    ),
    (
        calls.ACT_ON_JOB,
        JobAction("tok", "job-1", "pause"),
        {"token": "tok", "job_id": "job-1", "action": "pause"},
        JobActionReply(JobView.of(JOB)),
        {"job": JOB_WIRE},
    ),
]


def as_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


@pytest.mark.parametrize(("call", "request_", "request_wire", "reply", "reply_wire"), EXCHANGES)
def test_records_travel_as_the_dicts_peers_already_exchange(call, request_, request_wire, reply, reply_wire):
    assert as_json(encode_request(call, request_)) == request_wire
    assert decode_request(call.path, as_json(request_wire)) == (call, request_)
    assert as_json(to_wire(reply)) == reply_wire
    assert decode_reply(call, as_json(reply_wire)) == reply


def test_every_call_is_exchanged_above_and_has_a_typed_link_method():
    assert {exchange[0] for exchange in EXCHANGES} == set(calls.CALLS)
    names = [name for name, value in vars(calls).items() if isinstance(value, calls.Call)]
    assert len(names) == len(calls.CALLS)
    source = inspect.getsource(FsMasterLink)
    assert all(f"calls.{name}," in source for name in names)


def test_every_record_is_frozen():
    for call in calls.CALLS:
        for record in (call.request, call.reply):
            assert attrs.has(record) and record.__setattr__ is not object.__setattr__, record


def test_a_shown_batch_never_carries_its_claim_token():
    shown = to_wire(JobReply(JobView.of(JOB), (BATCH,), ""))
    assert "claim_token" not in shown["batches"][0]
    assert "secret" not in json.dumps(shown)


@pytest.mark.parametrize(
    ("path", "payload", "message"),
    [
        (
            "/fluxon_fs/transfer/renew",
            {**BATCH_KEY, "number": "0"},
            "/fluxon_fs/transfer/renew request: number must be an integer, got str '0'",
        ),
        ("/fluxon_fs/transfer/renew", {"job_id": "job-1", "number": 0}, "claim_token is required"),
        (
            "/fluxon_fs/transfer/create",
            {"token": "t", "spec": {**SPEC_WIRE, "color": "red"}},
            "spec.color is not a known",
        ),
        ("/fluxon_fs/transfer/create", {"token": "t", "spec": {"source_export": "src"}}, "spec.source_dir is required"),
        (
            "/fluxon_fs/export_registry",
            {"op": "register", "endpoint": "e", "exports": {"x": 1}},
            "exports['x'] must be",
        ),
        ("/fluxon_fs/export_registry", {"op": "explode"}, "op must be one of 'register', 'heartbeat', 'unregister'"),
        ("/fluxon_fs/mount_registry", {"local_mount_dir_abs": "/m"}, "op must be one of 'report', 'remove', got None"),
        ("/fluxon_fs/config", ["not", "a", "mapping"], "/fluxon_fs/config request: payload must be a mapping"),
        ("/fluxon_fs/auth/login", {"username": "a", "password": "b", "otp": 1}, "otp is not a known field"),
        ("/fluxon_fs/nope", {}, "/fluxon_fs/nope is not a path of the fs master"),
    ],
)
def test_a_malformed_request_names_the_path_and_the_field(path, payload, message):
    with pytest.raises(InvalidArgumentError, match=message.replace("[", r"\[").replace("(", r"\(")):
        decode_request(path, payload)


def test_a_malformed_reply_names_the_path_and_the_field():
    with pytest.raises(
        InvalidArgumentError, match=r"/fluxon_fs/transfer/list reply: jobs\[0\]\.job\.state is required"
    ):
        decode_reply(
            calls.LIST_JOBS, {"jobs": [{k: v for k, v in JOB_WIRE.items() if k != "state"}], "state_store_error": ""}
        )
    with pytest.raises(InvalidArgumentError, match="/fluxon_fs/config reply: payload is invalid"):
        decode_reply(calls.EXPORT_SNAPSHOT, {"version": "v", "unchanged": False})
