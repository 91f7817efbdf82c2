"""The master's route table: which owners hold a replica of which key, at which version.

Versions are handed out by the master and only grow (time-based, so they keep growing across
master restarts). A holder told to drop ``key`` below version ``v`` deletes its copy when its own
version is older than ``v``; that is how an overwrite or a remove reaches every host.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

import attrs

from fluxon_core.errors import KeyAlreadyExistsError, KeyNotFoundError


@attrs.define
class Route:
    """Where the current version of one key lives."""

    version: int
    size: int
    holders: set[str]
    lease_id: int | None = None


@attrs.frozen
class RouteView:
    """An immutable snapshot of a route, safe to use outside the table's lock."""

    version: int
    size: int
    holders: tuple[str, ...]
    lease_id: int | None


@attrs.frozen
class Invalidation:
    """Tell ``holder`` to delete its copy of ``key`` if that copy is older than ``below``."""

    holder: str
    key: str
    below: int


@attrs.frozen
class AnnouncedReplica:
    """A replica an owner reports holding (after a master restart or re-registration)."""

    key: str
    version: int
    size: int
    lease_id: int | None = None


class RouteTable:
    """Routes of the cluster-wide cache; every method is atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._by_member: dict[str, set[str]] = {}
        self._by_lease: dict[int, set[str]] = {}
        self._last_version = 0

    def _next_version(self) -> int:
        self._last_version = max(self._last_version + 1, time.time_ns())
        return self._last_version

    def _unlink(self, key: str, route: Route) -> None:
        for holder in route.holders:
            keys = self._by_member.get(holder)
            if keys is not None:
                keys.discard(key)
        if route.lease_id is not None:
            bound = self._by_lease.get(route.lease_id)
            if bound is not None:
                bound.discard(key)

    def _link(self, key: str, route: Route) -> None:
        for holder in route.holders:
            self._by_member.setdefault(holder, set()).add(key)
        if route.lease_id is not None:
            self._by_lease.setdefault(route.lease_id, set()).add(key)

    def lookup(self, key: str) -> RouteView | None:
        """The route of ``key`` or None."""
        with self._lock:
            route = self._routes.get(key)
            if route is None:
                return None
            return RouteView(route.version, route.size, tuple(sorted(route.holders)), route.lease_id)

    def commit(
        self, key: str, holder: str, size: int, *, reject_if_exists: bool = False, lease_id: int | None = None
    ) -> tuple[int, list[Invalidation]]:
        """Make ``holder``'s freshly written copy the current version; older copies elsewhere must go."""
        with self._lock:
            old = self._routes.get(key)
            if old is not None and reject_if_exists:
                raise KeyAlreadyExistsError(f"key {key!r} already exists")
            version = self._next_version()
            invalidations: list[Invalidation] = []
            if old is not None:
                self._unlink(key, old)
                invalidations = [Invalidation(h, key, version) for h in sorted(old.holders) if h != holder]
            route = Route(version, size, {holder}, lease_id)
            self._routes[key] = route
            self._link(key, route)
            return version, invalidations

    def add_replica(self, key: str, holder: str, version: int) -> bool:
        """Record that ``holder`` copied ``version`` of ``key``; False when that version is no longer current."""
        with self._lock:
            route = self._routes.get(key)
            if route is None or route.version != version:
                return False
            route.holders.add(holder)
            self._by_member.setdefault(holder, set()).add(key)
            return True

    def drop_replica(self, key: str, holder: str, version: int) -> None:
        """``holder`` no longer has ``version`` of ``key`` (evicted); the key goes when no holder is left."""
        with self._lock:
            route = self._routes.get(key)
            if route is None or route.version != version or holder not in route.holders:
                return
            route.holders.discard(holder)
            keys = self._by_member.get(holder)
            if keys is not None:
                keys.discard(key)
            if not route.holders:
                self._unlink(key, route)
                del self._routes[key]

    def remove(self, key: str) -> list[Invalidation]:
        """Delete ``key``; every holder must drop its copy."""
        with self._lock:
            route = self._routes.pop(key, None)
            if route is None:
                raise KeyNotFoundError(f"key {key!r} not found")
            self._unlink(key, route)
            below = self._next_version()
            return [Invalidation(h, key, below) for h in sorted(route.holders)]

    def remove_lease_keys(self, lease_id: int) -> list[Invalidation]:
        """Delete every key bound to ``lease_id`` (the lease ended)."""
        with self._lock:
            keys = self._by_lease.pop(lease_id, set())
            invalidations: list[Invalidation] = []
            for key in sorted(keys):
                route = self._routes.pop(key, None)
                if route is None:
                    continue
                self._unlink(key, route)
                below = self._next_version()
                invalidations.extend(Invalidation(h, key, below) for h in sorted(route.holders))
            return invalidations

    def drop_member(self, member: str) -> int:
        """Forget every replica ``member`` held; returns how many keys lost their last copy."""
        with self._lock:
            lost = 0
            for key in self._by_member.pop(member, set()):
                route = self._routes.get(key)
                if route is None:
                    continue
                route.holders.discard(member)
                if not route.holders:
                    self._unlink(key, route)
                    del self._routes[key]
                    lost += 1
            return lost

    def announce(self, holder: str, replicas: Iterable[AnnouncedReplica]) -> tuple[list[Invalidation], list[str]]:
        """Merge replicas ``holder`` reports; returns (drops for other holders, keys ``holder`` must drop)."""
        with self._lock:
            others: list[Invalidation] = []
            stale: list[str] = []
            for item in replicas:
                self._last_version = max(self._last_version, item.version)
                route = self._routes.get(item.key)
                if route is None or route.version < item.version:
                    if route is not None:
                        self._unlink(item.key, route)
                        others.extend(Invalidation(h, item.key, item.version) for h in route.holders if h != holder)
                    route = Route(item.version, item.size, {holder}, item.lease_id)
                    self._routes[item.key] = route
                    self._link(item.key, route)
                elif route.version == item.version:
                    route.holders.add(holder)
                    self._by_member.setdefault(holder, set()).add(item.key)
                else:
                    stale.append(item.key)
            return others, stale

    def count_prefix(self, prefix: str) -> int:
        """How many keys start with ``prefix``."""
        with self._lock:
            if not prefix:
                return len(self._routes)
            return sum(1 for key in self._routes if key.startswith(prefix))

    def lease_ids(self) -> list[int]:
        """Leases that currently bind at least one key."""
        with self._lock:
            return [lease_id for lease_id, keys in self._by_lease.items() if keys]

    def keys_held_by(self, member: str) -> int:
        """How many keys ``member`` holds a replica of."""
        with self._lock:
            return len(self._by_member.get(member, ()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._routes)
