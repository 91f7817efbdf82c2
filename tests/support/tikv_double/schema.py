"""The protobuf messages the TiKV test double speaks — a minimal, hand-written subset of kvproto.

TEST DOUBLE SUPPORT: nothing here is used outside the test suite.

Only the messages and fields that ``tikv_client`` (client-rust inside the ``tikv-client`` wheel)
sends or reads on the code paths the ``tikv`` state store uses are declared. Field *numbers* and wire
types follow kvproto (``metapb``, ``pdpb``, ``errorpb``, ``kvrpcpb``); names are kept so the double
reads like the protocol. Everything else is left out: the client's decoder (prost) skips unknown
fields, and fields the client sends that are not declared here land in the unknown-field set.

Enums are declared as ``int32`` fields: the wire encoding (varint) is identical, and the double only
needs their numeric values (see the ``*_OP`` / ``ACTION_*`` constants below). No ``protoc`` run is
needed: descriptors are built here with ``descriptor_pb2`` into a private descriptor pool.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_T = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "u64": _T.TYPE_UINT64,
    "u32": _T.TYPE_UINT32,
    "i64": _T.TYPE_INT64,
    "i32": _T.TYPE_INT32,
    "bool": _T.TYPE_BOOL,
    "bytes": _T.TYPE_BYTES,
    "string": _T.TYPE_STRING,
    "enum": _T.TYPE_INT32,  # an enum on the wire is a varint; the double uses the numbers
}

# (field name, number, type, repeated). A type that is not a scalar names a message ("pkg.Name").
Field = tuple[str, int, str, bool]


def _f(name: str, number: int, kind: str, repeated: bool = False) -> Field:
    return (name, number, kind, repeated)


_HEADER_REQ = _f("header", 1, "pdpb.RequestHeader")
_HEADER_RESP = _f("header", 1, "pdpb.ResponseHeader")
_CTX = _f("context", 1, "kvrpcpb.Context")
_REGION_ERROR = _f("region_error", 1, "errorpb.Error")
_KEY_ERROR = _f("error", 2, "kvrpcpb.KeyError")

PACKAGES: dict[str, dict[str, list[Field]]] = {
    "metapb": {
        "RegionEpoch": [_f("conf_ver", 1, "u64"), _f("version", 2, "u64")],
        "Peer": [_f("id", 1, "u64"), _f("store_id", 2, "u64"), _f("role", 3, "enum"), _f("is_witness", 4, "bool")],
        "Region": [
            _f("id", 1, "u64"),
            _f("start_key", 2, "bytes"),
            _f("end_key", 3, "bytes"),
            _f("region_epoch", 4, "metapb.RegionEpoch"),
            _f("peers", 5, "metapb.Peer", True),
        ],
        "Store": [
            _f("id", 1, "u64"),
            _f("address", 2, "string"),
            _f("state", 3, "enum"),
            _f("version", 5, "string"),
            _f("peer_address", 6, "string"),
            _f("status_address", 7, "string"),
            _f("node_state", 13, "enum"),
        ],
    },
    "pdpb": {
        "RequestHeader": [_f("cluster_id", 1, "u64"), _f("sender_id", 2, "u64")],
        "Error": [_f("type", 1, "enum"), _f("message", 2, "string")],
        "ResponseHeader": [_f("cluster_id", 1, "u64"), _f("error", 2, "pdpb.Error")],
        "Member": [
            _f("name", 1, "string"),
            _f("member_id", 2, "u64"),
            _f("peer_urls", 3, "string", True),
            _f("client_urls", 4, "string", True),
        ],
        "GetMembersRequest": [_HEADER_REQ],
        "GetMembersResponse": [
            _HEADER_RESP,
            _f("members", 2, "pdpb.Member", True),
            _f("leader", 3, "pdpb.Member"),
            _f("etcd_leader", 4, "pdpb.Member"),
        ],
        "TsoRequest": [_HEADER_REQ, _f("count", 2, "u32"), _f("dc_location", 3, "string")],
        "Timestamp": [_f("physical", 1, "i64"), _f("logical", 2, "i64"), _f("suffix_bits", 3, "u32")],
        "TsoResponse": [_HEADER_RESP, _f("count", 2, "u32"), _f("timestamp", 3, "pdpb.Timestamp")],
        "GetStoreRequest": [_HEADER_REQ, _f("store_id", 2, "u64")],
        "GetStoreResponse": [_HEADER_RESP, _f("store", 2, "metapb.Store")],
        "GetAllStoresRequest": [_HEADER_REQ, _f("exclude_tombstone_stores", 2, "bool")],
        "GetAllStoresResponse": [_HEADER_RESP, _f("stores", 2, "metapb.Store", True)],
        "GetRegionRequest": [_HEADER_REQ, _f("region_key", 2, "bytes"), _f("need_buckets", 3, "bool")],
        "GetRegionByIDRequest": [_HEADER_REQ, _f("region_id", 2, "u64"), _f("need_buckets", 3, "bool")],
        "GetRegionResponse": [_HEADER_RESP, _f("region", 2, "metapb.Region"), _f("leader", 3, "metapb.Peer")],
    },
    "errorpb": {
        "Error": [_f("message", 1, "string")],
    },
    "kvrpcpb": {
        "Context": [
            _f("region_id", 1, "u64"),
            _f("region_epoch", 2, "metapb.RegionEpoch"),
            _f("peer", 3, "metapb.Peer"),
            _f("resolved_locks", 13, "u64", True),
            _f("api_version", 21, "enum"),
            _f("committed_locks", 22, "u64", True),
            _f("keyspace_id", 32, "u32"),
        ],
        "LockInfo": [
            _f("primary_lock", 1, "bytes"),
            _f("lock_version", 2, "u64"),
            _f("key", 3, "bytes"),
            _f("lock_ttl", 4, "u64"),
            _f("txn_size", 5, "u64"),
            _f("lock_type", 6, "enum"),
            _f("lock_for_update_ts", 7, "u64"),
            _f("use_async_commit", 8, "bool"),
            _f("min_commit_ts", 9, "u64"),
            _f("secondaries", 10, "bytes", True),
        ],
        "WriteConflict": [
            _f("start_ts", 1, "u64"),
            _f("conflict_ts", 2, "u64"),
            _f("key", 3, "bytes"),
            _f("primary", 4, "bytes"),
            _f("conflict_commit_ts", 5, "u64"),
            _f("reason", 6, "enum"),
        ],
        "AlreadyExist": [_f("key", 1, "bytes")],
        "CommitTsExpired": [
            _f("start_ts", 1, "u64"),
            _f("attempted_commit_ts", 2, "u64"),
            _f("key", 3, "bytes"),
            _f("min_commit_ts", 4, "u64"),
        ],
        "TxnNotFound": [_f("start_ts", 1, "u64"), _f("primary_key", 2, "bytes")],
        "KeyError": [
            _f("locked", 1, "kvrpcpb.LockInfo"),
            _f("retryable", 2, "string"),
            _f("abort", 3, "string"),
            _f("conflict", 4, "kvrpcpb.WriteConflict"),
            _f("already_exist", 5, "kvrpcpb.AlreadyExist"),
            _f("commit_ts_expired", 7, "kvrpcpb.CommitTsExpired"),
            _f("txn_not_found", 8, "kvrpcpb.TxnNotFound"),
        ],
        "KvPair": [_f("error", 1, "kvrpcpb.KeyError"), _f("key", 2, "bytes"), _f("value", 3, "bytes")],
        "Mutation": [_f("op", 1, "enum"), _f("key", 2, "bytes"), _f("value", 3, "bytes"), _f("assertion", 4, "enum")],
        "TxnInfo": [_f("txn", 1, "u64"), _f("status", 2, "u64")],
        "GetRequest": [_CTX, _f("key", 2, "bytes"), _f("version", 3, "u64")],
        "GetResponse": [_REGION_ERROR, _KEY_ERROR, _f("value", 3, "bytes"), _f("not_found", 4, "bool")],
        "BatchGetRequest": [_CTX, _f("keys", 2, "bytes", True), _f("version", 3, "u64")],
        "BatchGetResponse": [_REGION_ERROR, _f("pairs", 2, "kvrpcpb.KvPair", True), _f("error", 5, "kvrpcpb.KeyError")],
        "ScanRequest": [
            _CTX,
            _f("start_key", 2, "bytes"),
            _f("limit", 3, "u32"),
            _f("version", 4, "u64"),
            _f("key_only", 5, "bool"),
            _f("reverse", 6, "bool"),
            _f("end_key", 7, "bytes"),
            _f("sample_step", 8, "u32"),
        ],
        "ScanResponse": [_REGION_ERROR, _f("pairs", 2, "kvrpcpb.KvPair", True), _f("error", 3, "kvrpcpb.KeyError")],
        "PrewriteRequest": [
            _CTX,
            _f("mutations", 2, "kvrpcpb.Mutation", True),
            _f("primary_lock", 3, "bytes"),
            _f("start_version", 4, "u64"),
            _f("lock_ttl", 5, "u64"),
            _f("skip_constraint_check", 6, "bool"),
            _f("pessimistic_actions", 7, "enum", True),
            _f("txn_size", 8, "u64"),
            _f("for_update_ts", 9, "u64"),
            _f("min_commit_ts", 10, "u64"),
            _f("use_async_commit", 11, "bool"),
            _f("secondaries", 12, "bytes", True),
            _f("try_one_pc", 13, "bool"),
            _f("max_commit_ts", 14, "u64"),
            _f("assertion_level", 15, "enum"),
        ],
        "PrewriteResponse": [
            _REGION_ERROR,
            _f("errors", 2, "kvrpcpb.KeyError", True),
            _f("min_commit_ts", 3, "u64"),
            _f("one_pc_commit_ts", 4, "u64"),
        ],
        "CommitRequest": [
            _CTX,
            _f("start_version", 2, "u64"),
            _f("keys", 3, "bytes", True),
            _f("commit_version", 4, "u64"),
        ],
        "CommitResponse": [_REGION_ERROR, _KEY_ERROR, _f("commit_version", 3, "u64")],
        "CleanupRequest": [_CTX, _f("key", 2, "bytes"), _f("start_version", 3, "u64"), _f("current_ts", 4, "u64")],
        "CleanupResponse": [_REGION_ERROR, _KEY_ERROR, _f("commit_version", 3, "u64")],
        "BatchRollbackRequest": [_CTX, _f("start_version", 2, "u64"), _f("keys", 3, "bytes", True)],
        "BatchRollbackResponse": [_REGION_ERROR, _KEY_ERROR],
        "ScanLockRequest": [
            _CTX,
            _f("max_version", 2, "u64"),
            _f("start_key", 3, "bytes"),
            _f("limit", 4, "u32"),
            _f("end_key", 5, "bytes"),
        ],
        "ScanLockResponse": [_REGION_ERROR, _KEY_ERROR, _f("locks", 3, "kvrpcpb.LockInfo", True)],
        "ResolveLockRequest": [
            _CTX,
            _f("start_version", 2, "u64"),
            _f("commit_version", 3, "u64"),
            _f("txn_infos", 4, "kvrpcpb.TxnInfo", True),
            _f("keys", 5, "bytes", True),
        ],
        "ResolveLockResponse": [_REGION_ERROR, _KEY_ERROR],
        "TxnHeartBeatRequest": [
            _CTX,
            _f("primary_lock", 2, "bytes"),
            _f("start_version", 3, "u64"),
            _f("advise_lock_ttl", 4, "u64"),
        ],
        "TxnHeartBeatResponse": [_REGION_ERROR, _KEY_ERROR, _f("lock_ttl", 3, "u64")],
        "CheckTxnStatusRequest": [
            _CTX,
            _f("primary_key", 2, "bytes"),
            _f("lock_ts", 3, "u64"),
            _f("caller_start_ts", 4, "u64"),
            _f("current_ts", 5, "u64"),
            _f("rollback_if_not_exist", 6, "bool"),
            _f("force_sync_commit", 7, "bool"),
            _f("resolving_pessimistic_lock", 8, "bool"),
            _f("verify_is_primary", 9, "bool"),
        ],
        "CheckTxnStatusResponse": [
            _REGION_ERROR,
            _KEY_ERROR,
            _f("lock_ttl", 3, "u64"),
            _f("commit_version", 4, "u64"),
            _f("action", 5, "enum"),
            _f("lock_info", 6, "kvrpcpb.LockInfo"),
        ],
    },
}

# kvrpcpb.Op
PUT_OP, DEL_OP, LOCK_OP, ROLLBACK_OP, INSERT_OP, PESSIMISTIC_LOCK_OP, CHECK_NOT_EXISTS_OP = range(7)
# kvrpcpb.Action
ACTION_NO_ACTION, ACTION_TTL_EXPIRE_ROLLBACK, ACTION_LOCK_NOT_EXIST_ROLLBACK, ACTION_MIN_COMMIT_TS_PUSHED = range(4)
# kvrpcpb.WriteConflict.Reason
CONFLICT_OPTIMISTIC, CONFLICT_SELF_ROLLED_BACK = 1, 3
# pdpb.ErrorType
PD_ERROR_UNKNOWN, PD_ERROR_REGION_NOT_FOUND = 1, 6


def _file_proto(package: str, messages: dict[str, list[Field]]) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name=f"fluxon_tikv_double/{package}.proto", package=package)
    proto.syntax = "proto3"
    dependencies = set()
    for message_name, fields in messages.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated in fields:
            field = message.field.add(name=name, number=number)
            field.label = _T.LABEL_REPEATED if repeated else _T.LABEL_OPTIONAL
            if kind in _SCALARS:
                field.type = _SCALARS[kind]
            else:
                field.type = _T.TYPE_MESSAGE
                field.type_name = f".{kind}"
                other = kind.split(".")[0]
                if other != package:
                    dependencies.add(f"fluxon_tikv_double/{other}.proto")
    proto.dependency.extend(sorted(dependencies))
    return proto


def _build() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    for package in ("metapb", "errorpb", "pdpb", "kvrpcpb"):
        pool.Add(_file_proto(package, PACKAGES[package]))
    return {
        f"{package}.{name}": message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for package, messages in PACKAGES.items()
        for name in messages
    }


MESSAGES: dict[str, Any] = _build()
"""Message classes by full name, e.g. ``MESSAGES["kvrpcpb.GetRequest"]``."""


def message(full_name: str, **fields: Any) -> Any:
    """A new message of type ``full_name`` (``"pdpb.TsoResponse"``) with ``fields`` set."""
    return MESSAGES[full_name](**fields)
