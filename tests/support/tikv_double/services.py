"""gRPC handlers of the TiKV test double: the PD methods and the TiKV methods ``tikv_client`` calls.

TEST DOUBLE SUPPORT: one process plays a one-member PD and a one-store TiKV holding a single region
that covers every key. Handlers translate kvproto messages (see :mod:`.schema`) to calls on the
in-memory :class:`~.mvcc.MvccStore` and back.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import grpc

from tests.support.tikv_double import mvcc
from tests.support.tikv_double.schema import (
    ACTION_LOCK_NOT_EXIST_ROLLBACK,
    ACTION_MIN_COMMIT_TS_PUSHED,
    ACTION_NO_ACTION,
    ACTION_TTL_EXPIRE_ROLLBACK,
    CHECK_NOT_EXISTS_OP,
    CONFLICT_OPTIMISTIC,
    CONFLICT_SELF_ROLLED_BACK,
    DEL_OP,
    INSERT_OP,
    LOCK_OP,
    MESSAGES,
    PD_ERROR_REGION_NOT_FOUND,
    PUT_OP,
    message,
)

CLUSTER_ID = 7_000_000_000_000_000_001
MEMBER_ID = 11
STORE_ID = 1
REGION_ID = 2
PEER_ID = 3

_OPS = {PUT_OP: "put", DEL_OP: "delete", LOCK_OP: "lock", INSERT_OP: "insert", CHECK_NOT_EXISTS_OP: "check_not_exists"}
_LOCK_TYPES = {mvcc.PUT: PUT_OP, mvcc.DELETE: DEL_OP, mvcc.LOCK: LOCK_OP}
_ACTIONS = {
    "none": ACTION_NO_ACTION,
    "ttl_expire_rollback": ACTION_TTL_EXPIRE_ROLLBACK,
    "lock_not_exist_rollback": ACTION_LOCK_NOT_EXIST_ROLLBACK,
    "min_commit_ts_pushed": ACTION_MIN_COMMIT_TS_PUSHED,
}


@attrs.define
class CallLog:
    """How often each RPC was served, and the methods the client tried that the double lacks."""

    counts: collections.Counter[str] = attrs.field(factory=collections.Counter)
    unimplemented: collections.Counter[str] = attrs.field(factory=collections.Counter)
    key_errors: collections.Counter[str] = attrs.field(factory=collections.Counter)
    active_tso_streams: int = 0
    _mutex: threading.Lock = attrs.field(factory=threading.Lock)

    def record(self, method: str) -> None:
        """Count one call of ``method`` (``"tikvpb.Tikv/KvGet"``)."""
        with self._mutex:
            self.counts[method] += 1

    def record_key_error(self, kind: str) -> None:
        """Count one kvrpcpb.KeyError sent, by the field set (``"locked"``, ``"conflict"``, ...)."""
        with self._mutex:
            self.key_errors[kind] += 1

    def snapshot(self) -> collections.Counter[str]:
        """A copy of the call counts (subtract two snapshots to see what happened in between)."""
        with self._mutex:
            return collections.Counter(self.counts)

    def snapshot_key_errors(self) -> collections.Counter[str]:
        """A copy of the key-error counts."""
        with self._mutex:
            return collections.Counter(self.key_errors)

    def record_unimplemented(self, method: str) -> None:
        """Count a call of a method the double does not serve."""
        with self._mutex:
            self.unimplemented[method] += 1

    def stream_opened(self, delta: int) -> None:
        """Track open TSO streams (one per connected client)."""
        with self._mutex:
            self.active_tso_streams += delta


class Tso:
    """PD's timestamp oracle: strictly increasing ``physical_ms << 18 | logical``."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._physical = 0
        self._logical = 0

    def allocate(self, count: int) -> tuple[int, int]:
        """Reserve ``count`` timestamps; returns ``(physical, logical)`` of the last one (as PD does)."""
        with self._mutex:
            now = time.time_ns() // 1_000_000
            if now > self._physical:
                self._physical, self._logical = now, 0
            if self._logical + count >= 1 << mvcc.PHYSICAL_SHIFT_BITS:
                self._physical, self._logical = self._physical + 1, 0
            self._logical += count
            return self._physical, self._logical

    def now(self) -> int:
        """One fresh timestamp as a single integer."""
        physical, logical = self.allocate(1)
        return physical << mvcc.PHYSICAL_SHIFT_BITS | logical


@attrs.frozen
class Topology:
    """Where the one store and the one region live."""

    address: str  # host:port the store (and PD) listen on


class PdService:
    """The PD methods the client uses: GetMembers, Tso, GetRegion(ByID), GetStore, GetAllStores."""

    def __init__(self, topology: Topology, tso: Tso, log: CallLog) -> None:
        self._topology = topology
        self._tso = tso
        self._log = log

    def _header(self) -> Any:
        return message("pdpb.ResponseHeader", cluster_id=CLUSTER_ID)

    def _member(self) -> Any:
        url = f"http://{self._topology.address}"
        return message("pdpb.Member", name="pd-double", member_id=MEMBER_ID, peer_urls=[url], client_urls=[url])

    def _region(self) -> Any:
        peer = message("metapb.Peer", id=PEER_ID, store_id=STORE_ID)
        return message(
            "metapb.Region",
            id=REGION_ID,
            start_key=b"",
            end_key=b"",
            region_epoch=message("metapb.RegionEpoch", conf_ver=1, version=1),
            peers=[peer],
        )

    def _store(self) -> Any:
        return message("metapb.Store", id=STORE_ID, address=self._topology.address, version="7.5.0")

    def get_members(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The single member is the leader; its client URL is this server."""
        member = self._member()
        return message(
            "pdpb.GetMembersResponse", header=self._header(), members=[member], leader=member, etcd_leader=member
        )

    def tso(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        """Answer each TsoRequest with ``count`` timestamps (the last one is sent; the client derives the rest)."""
        self._log.stream_opened(+1)
        try:
            for request in requests:
                count = max(1, request.count)
                physical, logical = self._tso.allocate(count)
                yield message(
                    "pdpb.TsoResponse",
                    header=self._header(),
                    count=count,
                    timestamp=message("pdpb.Timestamp", physical=physical, logical=logical),
                )
        finally:
            self._log.stream_opened(-1)

    def get_region(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Every key lives in the one region, led by the one peer."""
        region = self._region()
        return message("pdpb.GetRegionResponse", header=self._header(), region=region, leader=region.peers[0])

    def get_region_by_id(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The one region, or PD's REGION_NOT_FOUND for any other id."""
        if request.region_id != REGION_ID:
            header = self._header()
            header.error.type = PD_ERROR_REGION_NOT_FOUND
            header.error.message = f"region {request.region_id} not found"
            return message("pdpb.GetRegionResponse", header=header)
        return self.get_region(request, context)

    def get_store(self, request: Any, context: grpc.ServicerContext) -> Any:
        """The one store (whatever id is asked for, there is only one)."""
        return message("pdpb.GetStoreResponse", header=self._header(), store=self._store())

    def get_all_stores(self, request: Any, context: grpc.ServicerContext) -> Any:
        """A list holding the one store."""
        return message("pdpb.GetAllStoresResponse", header=self._header(), stores=[self._store()])


def _read_options(context_message: Any) -> mvcc.ReadOptions:
    return mvcc.ReadOptions(
        resolved=frozenset(context_message.resolved_locks), committed=frozenset(context_message.committed_locks)
    )


def _lock_info(lock: mvcc.Lock) -> Any:
    return message(
        "kvrpcpb.LockInfo",
        primary_lock=lock.primary,
        lock_version=lock.start_ts,
        key=lock.key,
        lock_ttl=lock.ttl_ms,
        txn_size=lock.txn_size,
        lock_type=_LOCK_TYPES.get(lock.kind, PUT_OP),
        min_commit_ts=lock.min_commit_ts,
    )


def _set_field(key_error_message: Any) -> str:
    return ",".join(field.name for field, _ in key_error_message.ListFields())


def key_error(error: mvcc.KeyError_) -> Any:
    """The kvrpcpb.KeyError TiKV would send for ``error``."""
    if isinstance(error, mvcc.KeyLocked):
        return message("kvrpcpb.KeyError", locked=_lock_info(error.lock))
    if isinstance(error, mvcc.WriteConflict):
        conflict = message(
            "kvrpcpb.WriteConflict",
            start_ts=error.start_ts,
            conflict_ts=error.conflict_start_ts,
            conflict_commit_ts=error.conflict_commit_ts,
            key=error.key,
            primary=error.primary,
            reason=CONFLICT_SELF_ROLLED_BACK if error.self_rolled_back else CONFLICT_OPTIMISTIC,
        )
        return message("kvrpcpb.KeyError", conflict=conflict)
    if isinstance(error, mvcc.AlreadyExists):
        return message("kvrpcpb.KeyError", already_exist=message("kvrpcpb.AlreadyExist", key=error.key))
    if isinstance(error, mvcc.TxnNotFound):
        found = message("kvrpcpb.TxnNotFound", start_ts=error.start_ts, primary_key=error.key)
        return message("kvrpcpb.KeyError", txn_not_found=found)
    if isinstance(error, mvcc.CommitTsExpired):
        expired = message(
            "kvrpcpb.CommitTsExpired",
            start_ts=error.start_ts,
            attempted_commit_ts=error.attempted_commit_ts,
            key=error.key,
            min_commit_ts=error.min_commit_ts,
        )
        return message("kvrpcpb.KeyError", commit_ts_expired=expired)
    if isinstance(error, mvcc.TxnLockNotFound):
        # TiKV reports this one as a retryable string.
        return message(
            "kvrpcpb.KeyError",
            retryable=f"TxnLockNotFound {{ start_ts: {error.start_ts}, commit_ts: {error.commit_ts}, "
            f"key: {error.key!r} }}",
        )
    return message(
        "kvrpcpb.KeyError",
        abort=f"Committed {{ start_ts: {error.start_ts}, commit_ts: {error.commit_ts}, key: {error.key!r} }}",
    )


class TikvService:
    """The transactional TiKV methods (``Kv*``) over one :class:`~.mvcc.MvccStore`."""

    def __init__(self, store: mvcc.MvccStore, log: CallLog) -> None:
        self._store = store
        self._log = log

    def _key_error(self, error: mvcc.KeyError_) -> Any:
        converted = key_error(error)
        self._log.record_key_error(_set_field(converted))
        return converted

    def kv_get(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Snapshot read of one key at ``version``."""
        response = MESSAGES["kvrpcpb.GetResponse"]()
        try:
            value = self._store.get(request.key, request.version, _read_options(request.context))
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
            return response
        if value is None:
            response.not_found = True
        else:
            response.value = value
        return response

    def kv_batch_get(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Snapshot read of several keys; a lock fails the whole request (the client resolves and retries)."""
        response = MESSAGES["kvrpcpb.BatchGetResponse"]()
        try:
            pairs = self._store.batch_get(request.keys, request.version, _read_options(request.context))
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
            return response
        response.pairs.extend(message("kvrpcpb.KvPair", key=key, value=value) for key, value in pairs)
        return response

    def kv_scan(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Forward snapshot scan of ``[start_key, end_key)``; locked keys come back as pairs with an error."""
        response = MESSAGES["kvrpcpb.ScanResponse"]()
        if request.reverse:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "the TiKV test double scans forward only")
        pairs = self._store.scan(
            request.start_key, request.end_key, request.limit, request.version, _read_options(request.context)
        )
        for key, value in pairs:
            if isinstance(value, mvcc.KeyLocked):
                response.pairs.append(message("kvrpcpb.KvPair", key=key, error=self._key_error(value)))
            else:
                response.pairs.append(message("kvrpcpb.KvPair", key=key, value=b"" if request.key_only else value))
        return response

    def kv_prewrite(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Percolator phase one; 1PC and async commit are not offered (the response says so by zeros)."""
        response = MESSAGES["kvrpcpb.PrewriteResponse"]()
        mutations = []
        for mutation in request.mutations:
            if mutation.op not in _OPS:
                context.abort(grpc.StatusCode.UNIMPLEMENTED, f"the TiKV test double has no mutation op {mutation.op}")
            mutations.append(mvcc.Mutation(_OPS[mutation.op], mutation.key, mutation.value))
        try:
            self._store.prewrite(
                mutations,
                request.primary_lock,
                request.start_version,
                request.lock_ttl,
                txn_size=request.txn_size,
                min_commit_ts=request.min_commit_ts,
                skip_constraint_check=request.skip_constraint_check,
            )
        except mvcc.MvccError as error:
            response.errors.extend(self._key_error(item) for item in error.errors)
        return response

    def kv_commit(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Percolator phase two."""
        response = MESSAGES["kvrpcpb.CommitResponse"]()
        try:
            self._store.commit(request.keys, request.start_version, request.commit_version)
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
        return response

    def kv_batch_rollback(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Abort the transaction on these keys."""
        response = MESSAGES["kvrpcpb.BatchRollbackResponse"]()
        try:
            self._store.rollback(request.keys, request.start_version)
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
        return response

    def kv_cleanup(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Roll back one key of a transaction whose lock is dead (pre-4.0 lock resolution)."""
        response = MESSAGES["kvrpcpb.CleanupResponse"]()
        try:
            response.commit_version = self._store.cleanup(request.key, request.start_version, request.current_ts)
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
        return response

    def kv_check_txn_status(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Locked / committed / rolled back, judged at the primary key (rolling back an expired lock)."""
        response = MESSAGES["kvrpcpb.CheckTxnStatusResponse"]()
        try:
            status = self._store.check_txn_status(
                request.primary_key,
                request.lock_ts,
                request.caller_start_ts,
                request.current_ts,
                rollback_if_not_exist=request.rollback_if_not_exist,
            )
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
            return response
        response.lock_ttl = status.lock_ttl
        response.commit_version = status.commit_ts
        response.action = _ACTIONS[status.action]
        if status.lock is not None:
            response.lock_info.CopyFrom(_lock_info(status.lock))
        return response

    def kv_resolve_lock(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Commit or roll back the remaining locks of finished transactions."""
        response = MESSAGES["kvrpcpb.ResolveLockResponse"]()
        if request.txn_infos:
            for info in request.txn_infos:
                self._store.resolve(info.txn, info.status)
        else:
            self._store.resolve(request.start_version, request.commit_version, list(request.keys))
        return response

    def kv_txn_heart_beat(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Keep a long transaction's primary lock alive."""
        response = MESSAGES["kvrpcpb.TxnHeartBeatResponse"]()
        try:
            response.lock_ttl = self._store.heartbeat(
                request.primary_lock, request.start_version, request.advise_lock_ttl
            )
        except mvcc.MvccError as error:
            response.error.CopyFrom(self._key_error(error.errors[0]))
        return response

    def kv_scan_lock(self, request: Any, context: grpc.ServicerContext) -> Any:
        """Locks older than ``max_version`` in a range."""
        response = MESSAGES["kvrpcpb.ScanLockResponse"]()
        locks = self._store.scan_locks(request.start_key, request.end_key, request.max_version, request.limit)
        response.locks.extend(_lock_info(lock) for lock in locks)
        return response


# (service, method) -> (handler attribute, request type, streaming)
PD_METHODS = {
    "GetMembers": ("get_members", "pdpb.GetMembersRequest", False),
    "Tso": ("tso", "pdpb.TsoRequest", True),
    "GetRegion": ("get_region", "pdpb.GetRegionRequest", False),
    "GetRegionByID": ("get_region_by_id", "pdpb.GetRegionByIDRequest", False),
    "GetStore": ("get_store", "pdpb.GetStoreRequest", False),
    "GetAllStores": ("get_all_stores", "pdpb.GetAllStoresRequest", False),
}
TIKV_METHODS = {
    "KvGet": ("kv_get", "kvrpcpb.GetRequest", False),
    "KvBatchGet": ("kv_batch_get", "kvrpcpb.BatchGetRequest", False),
    "KvScan": ("kv_scan", "kvrpcpb.ScanRequest", False),
    "KvPrewrite": ("kv_prewrite", "kvrpcpb.PrewriteRequest", False),
    "KvCommit": ("kv_commit", "kvrpcpb.CommitRequest", False),
    "KvBatchRollback": ("kv_batch_rollback", "kvrpcpb.BatchRollbackRequest", False),
    "KvCleanup": ("kv_cleanup", "kvrpcpb.CleanupRequest", False),
    "KvCheckTxnStatus": ("kv_check_txn_status", "kvrpcpb.CheckTxnStatusRequest", False),
    "KvResolveLock": ("kv_resolve_lock", "kvrpcpb.ResolveLockRequest", False),
    "KvTxnHeartBeat": ("kv_txn_heart_beat", "kvrpcpb.TxnHeartBeatRequest", False),
    "KvScanLock": ("kv_scan_lock", "kvrpcpb.ScanLockRequest", False),
}


class DoubleHandler(grpc.GenericRpcHandler):
    """Routes ``/pdpb.PD/*`` and ``/tikvpb.Tikv/*`` to the services; logs every call."""

    def __init__(self, pd: PdService, tikv: TikvService, log: CallLog) -> None:
        self._log = log
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}
        for service_name, service, methods in (("pdpb.PD", pd, PD_METHODS), ("tikvpb.Tikv", tikv, TIKV_METHODS)):
            for method, (attribute, request_type, streaming) in methods.items():
                path = f"/{service_name}/{method}"
                self._handlers[path] = self._wrap(path, getattr(service, attribute), request_type, streaming)

    def _wrap(self, path: str, function: Callable[..., Any], request_type: str, streaming: bool) -> Any:
        def logged(request: Any, context: grpc.ServicerContext) -> Any:
            self._log.record(path.lstrip("/"))
            return function(request, context)

        deserializer = MESSAGES[request_type].FromString
        serializer = _serialize
        if streaming:
            return grpc.stream_stream_rpc_method_handler(
                logged, request_deserializer=deserializer, response_serializer=serializer
            )
        return grpc.unary_unary_rpc_method_handler(
            logged, request_deserializer=deserializer, response_serializer=serializer
        )

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        """The handler of the called method; an unknown method is logged and left UNIMPLEMENTED."""
        handler = self._handlers.get(handler_call_details.method)
        if handler is None:
            self._log.record_unimplemented(handler_call_details.method.lstrip("/"))
        return handler


def _serialize(response: Any) -> bytes:
    return bytes(response.SerializeToString())
