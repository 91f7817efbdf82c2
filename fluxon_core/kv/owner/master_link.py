"""How an owner finds and calls the kv master: a configured address, or the record the master publishes
in a shared coordinator (etcd), looked up again when the master moves."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from fluxon_core.addresses import is_host_local_endpoint, network_identity
from fluxon_core.errors import ApiError, InvalidArgumentError, NetworkError, StoreInitFailedError
from fluxon_core.kv.protocol import master_key
from fluxon_core.kv.rpc_link import AuthedRpc
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import Coordinator
from fluxon_core.rpc_types import Buffer, RpcMessage

log = get_logger("fluxon.kv.owner")

T = TypeVar("T")


def normalize_master_address(address: str) -> str:
    """``host:port`` → ``tcp://host:port``; full endpoints pass through."""
    return address if "://" in address else f"tcp://{address}"


class MasterLink:
    """Calls to the kv master; with a coordinator, a call failing with NetworkError re-reads the master's record."""

    def __init__(
        self,
        rpc: AuthedRpc,
        cluster_name: str,
        *,
        address: str | None,
        coordinator: Coordinator | None,
        timeout_s: float,
    ) -> None:
        if address is None and coordinator is None:
            raise StoreInitFailedError(
                "the owner needs fluxonkv_spec.master_address or a coordinator to find the kv master"
            )
        self._rpc = rpc
        self._cluster_name = cluster_name
        self._fixed = normalize_master_address(address) if address else None
        self._coordinator = coordinator
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._endpoint: str | None = self._fixed
        self._cancel_watch: Callable[[], None] | None = None
        if self._fixed is None and coordinator is not None:
            # follow a restarted master at once instead of after a call to its old endpoint times out
            self._cancel_watch = coordinator.watch_prefix(master_key(cluster_name), self._on_master_record)

    def _on_master_record(self, _key: str, value: bytes | None) -> None:
        if value is not None:
            try:
                self._adopt_record(value)
            except ApiError as exc:
                log.error("%s", exc)

    def _adopt_record(self, raw: bytes) -> str:
        try:
            record = json.loads(raw)
            endpoint = str(record["endpoint"])
            network = str(record.get("network", ""))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NetworkError(f"malformed kv master record {raw!r}: {exc}") from None
        if is_host_local_endpoint(endpoint) and network and network != network_identity():
            raise InvalidArgumentError(
                f"kv master {record.get('instance_key', '?')!r} of cluster {self._cluster_name!r} publishes "
                f"{endpoint} in the coordinator, an address only processes on its own host can reach, and this "
                "owner runs on another host. Set the kv master's host (or advertise_host) to an address this host "
                "can reach, or 0.0.0.0 to bind every interface and advertise the primary address"
            )
        with self._lock:
            if endpoint != self._endpoint:
                log.info("kv master of %s is at %s", self._cluster_name, endpoint)
            self._endpoint = endpoint
        return endpoint

    def close(self) -> None:
        """Stop following the master's record; idempotent."""
        if self._cancel_watch is not None:
            self._cancel_watch()
            self._cancel_watch = None

    @property
    def endpoint(self) -> str:
        """The master endpoint last used ("" before discovery)."""
        return self._endpoint or ""

    def discover(self) -> str:
        """The master's endpoint from the config or the coordinator; NetworkError when unknown."""
        if self._fixed is not None:
            return self._fixed
        assert self._coordinator is not None
        raw = self._coordinator.get(master_key(self._cluster_name))
        if raw is None:
            raise NetworkError(
                f"no kv master of cluster {self._cluster_name!r} is published in the coordinator "
                f"(key {master_key(self._cluster_name)}); is the kv master running?"
            )
        return self._adopt_record(raw)

    def call(
        self, path: str, meta: Mapping[str, Any], frames: Sequence[Buffer] = (), *, timeout_s: float | None = None
    ) -> RpcMessage:
        """Call the master; typed errors propagate."""
        timeout = self._timeout_s if timeout_s is None else timeout_s
        endpoint = self._endpoint or self.discover()
        try:
            return self._rpc.call(endpoint, path, meta, frames, timeout_s=timeout)
        except NetworkError:
            if self._coordinator is None:
                raise
            moved = self.discover()
            if moved == endpoint:
                raise
            return self._rpc.call(moved, path, meta, frames, timeout_s=timeout)

    def wait_reachable(self, timeout_s: float, probe: Callable[[float], T]) -> T:
        """Retry ``probe(attempt_timeout_s)`` (a first call to the master) until it succeeds or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        last: ApiError | None = None
        while True:
            try:
                return probe(max(0.05, min(1.0, deadline - time.monotonic())))
            except InvalidArgumentError as exc:
                # a refusal that no retry can change (e.g. an address the cluster cannot reach)
                raise StoreInitFailedError(
                    f"the kv master of cluster {self._cluster_name!r} refused this owner: {exc.message}"
                ) from exc
            except ApiError as exc:
                last = exc
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                where = self._fixed or f"the coordinator record {master_key(self._cluster_name)}"
                if self._fixed is not None and is_host_local_endpoint(self._fixed):
                    where += " (a loopback address: it reaches only a kv master on this host)"
                raise StoreInitFailedError(
                    f"could not reach the kv master of cluster {self._cluster_name!r} at {where} "
                    f"within {timeout_s:.1f}s: {last}. Is the kv master running, and do cluster_name and "
                    "the cluster secret match?"
                ) from last
            time.sleep(min(0.1, remaining))
