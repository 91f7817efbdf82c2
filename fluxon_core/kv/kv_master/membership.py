"""Members of the cluster, each kept alive by a lease in the master's coordinator.

The coordinator is the record (``/fluxon_kv/<cluster>/members/<instance_key>`` bound to the
member's lease); this class mirrors it in memory and reports members that leave, whether by a
clean ``leave``, a missed keep-alive (lease expiry) or a newer generation taking the name over.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import attrs

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.kv.protocol import MemberInfo, members_prefix
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import Coordinator

log = get_logger("fluxon.kv.master.membership")


@attrs.define
class MemberState:
    """A live member: its record, its lease and what it last reported."""

    info: MemberInfo
    lease_id: int
    registered_at: float
    registered_monotonic: float
    last_seen_monotonic: float
    stats: dict[str, int] = attrs.field(factory=dict)


class Membership:
    """Registration, keep-alive and departure of members; ``on_gone(info, reason)`` runs outside the lock."""

    def __init__(
        self,
        coordinator: Coordinator,
        cluster_name: str,
        lease_ttl_s: float,
        on_gone: Callable[[MemberInfo, str], None],
    ) -> None:
        self._coordinator = coordinator
        self._prefix = members_prefix(cluster_name)
        self._ttl_s = lease_ttl_s
        self._on_gone = on_gone
        self._lock = threading.Lock()
        self._members: dict[str, MemberState] = {}

    @property
    def lease_ttl_s(self) -> float:
        """The lease TTL every member must renew within."""
        return self._ttl_s

    def _record_key(self, instance_key: str) -> str:
        return self._prefix + instance_key

    def register(self, info: MemberInfo) -> MemberState:
        """Admit ``info``; a newer generation under a known name replaces the old one (whose replicas go)."""
        replaced: MemberState | None = None
        with self._lock:
            current = self._members.get(info.instance_key)
            if current is not None and info.generation < current.info.generation:
                raise PermissionDeniedError(
                    f"member {info.instance_key!r} generation {info.generation} is older than the registered "
                    f"generation {current.info.generation}; a newer process took this instance_key over"
                )
            if current is not None and info.generation == current.info.generation:
                lease_id = current.lease_id
                if not self._coordinator.keep_alive(lease_id):
                    lease_id = self._coordinator.grant_lease(self._ttl_s)
            else:
                replaced = current
                lease_id = self._coordinator.grant_lease(self._ttl_s)
            self._coordinator.put(
                self._record_key(info.instance_key), json.dumps(info.to_meta()).encode(), lease_id=lease_id
            )
            now = time.monotonic()
            state = MemberState(info, lease_id, time.time(), now, now)
            self._members[info.instance_key] = state
        if replaced is not None:
            self._coordinator.revoke(replaced.lease_id)
            log.info(
                "member %s generation %d replaced by generation %d",
                info.instance_key,
                replaced.info.generation,
                info.generation,
            )
            self._on_gone(replaced.info, "replaced by a newer generation")
        log.info("member %s (%s, generation %d) at %s", info.instance_key, info.role, info.generation, info.endpoint)
        return state

    def keepalive(self, instance_key: str, generation: int, stats: dict[str, int] | None = None) -> bool:
        """Renew a member's lease; False when the master does not know it (it must register again)."""
        with self._lock:
            state = self._members.get(instance_key)
            if state is None or state.info.generation != generation:
                return False
            alive = self._coordinator.keep_alive(state.lease_id)
            if alive:
                state.last_seen_monotonic = time.monotonic()
                if stats is not None:
                    state.stats = dict(stats)
                return True
        self._forget(instance_key, generation, "lease expired")
        return False

    def leave(self, instance_key: str, generation: int) -> None:
        """A clean departure."""
        self._forget(instance_key, generation, "left")

    def expel(self, instance_key: str, reason: str) -> None:
        """Drop a member the master cannot reach; it must register again."""
        with self._lock:
            state = self._members.get(instance_key)
        if state is not None:
            self._forget(instance_key, state.info.generation, reason)

    def _forget(self, instance_key: str, generation: int, reason: str) -> None:
        with self._lock:
            state = self._members.get(instance_key)
            if state is None or state.info.generation != generation:
                return
            del self._members[instance_key]
        try:
            self._coordinator.revoke(state.lease_id)
        except Exception as exc:  # the lease may already be gone; the member is forgotten either way
            log.debug("revoking lease of %s: %s", instance_key, exc)
        log.info("member %s (generation %d) gone: %s", instance_key, generation, reason)
        self._on_gone(state.info, reason)

    def get(self, instance_key: str) -> MemberInfo | None:
        """The live member named ``instance_key``."""
        with self._lock:
            state = self._members.get(instance_key)
            return None if state is None else state.info

    def states(self) -> list[MemberState]:
        """Every live member (copies of the records)."""
        with self._lock:
            return [attrs.evolve(s, stats=dict(s.stats)) for s in self._members.values()]

    def on_record_deleted(self, record_key: str) -> None:
        """Coordinator watch callback: a member record vanished (its lease expired)."""
        instance_key = record_key[len(self._prefix) :]
        if self._coordinator.get(record_key) is not None:
            return  # re-registered since; the delete belonged to an older lease
        with self._lock:
            state = self._members.get(instance_key)
        if state is not None:
            self._forget(instance_key, state.info.generation, "lease expired")

    def sweep(self) -> None:
        """Backstop for missed watch events: forget members whose record is gone from the coordinator."""
        snapshot_started = time.monotonic()
        present = {key for key, _ in self._coordinator.get_prefix(self._prefix)}
        with self._lock:
            # a member (re)registered while the snapshot was read may be missing from it
            missing = [
                s
                for k, s in self._members.items()
                if self._record_key(k) not in present and s.registered_monotonic < snapshot_started
            ]
        for state in missing:
            self._forget(state.info.instance_key, state.info.generation, "lease expired")

    def watch(self) -> Callable[[], None]:
        """Start watching member records; returns the cancel function."""

        def on_change(key: str, value: bytes | None) -> None:
            if value is None:
                self.on_record_deleted(key)

        return self._coordinator.watch_prefix(self._prefix, on_change)

    def close(self) -> None:
        """Revoke every lease (clean master stop)."""
        with self._lock:
            states = list(self._members.values())
            self._members.clear()
        for state in states:
            try:
                self._coordinator.revoke(state.lease_id)
            except Exception as exc:  # shutting down anyway
                log.debug("revoking lease of %s: %s", state.info.instance_key, exc)
