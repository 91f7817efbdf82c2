"""The owner's replicas: its pool, the master-assigned version of every local copy, and the rules that
keep them consistent with the master's routes.

Two locks per key (striped):

* the *write lock* serialises this owner's own writers of a key (put, fetch-and-insert, remove)
  and is held across calls to the master;
* the *state lock* guards the pool entry and its version and is never held across a call, so the
  master's invalidations (``drop``) can always run — even while a put of the same key waits for
  the master — and cannot deadlock with it.

A write in flight is *pending*: drops that arrive meanwhile raise its watermark; once the master
answers, the copy is kept only if its version is not older than the watermark.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from fluxon_core.errors import ApiError, KeyAlreadyExistsError, KeyNotFoundError, NetworkError
from fluxon_core.kv.pool import OwnerPool
from fluxon_core.kv.protocol import MasterPath, OwnerPath
from fluxon_core.kv.rpc_link import AuthedRpc
from fluxon_core.log_setup import get_logger
from fluxon_core.protocols import Buffer
from fluxon_core.rpc_types import RpcMessage

log = get_logger("fluxon.kv.owner")

_STRIPES = 64
RECONCILE_INTERVAL_S = 0.2


@attrs.define
class _Pending:
    writers: int = 0
    watermark: int = 0


@attrs.frozen
class FetchedValue:
    """A value fetched from a peer owner (not necessarily kept in the local pool)."""

    version: int
    blob: Buffer


class LocalReplicas:
    """Put, get, remove and invalidation of this owner's copies."""

    def __init__(
        self,
        pool: OwnerPool,
        call_master: Callable[..., RpcMessage],
        rpc: AuthedRpc,
        identity: Callable[[], dict[str, Any]],
        *,
        peer_timeout_s: float,
    ) -> None:
        self.pool = pool
        self._call_master = call_master
        self._rpc = rpc
        self._identity = identity
        self._peer_timeout_s = peer_timeout_s
        self._state_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._write_locks = [threading.Lock() for _ in range(_STRIPES)]
        self._versions: dict[str, int] = {}
        self._leases: dict[str, int] = {}
        self._pending: dict[str, _Pending] = {}
        self._evictions_seen = 0
        self._evicted = threading.Event()
        self._stopped = threading.Event()
        self._reconciler = threading.Thread(target=self._reconcile_loop, name="fluxon-kv-reconcile", daemon=True)
        self._reconciler.start()

    def _stripe(self, key: str) -> int:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % _STRIPES

    # -- writes -----------------------------------------------------------------------------------

    def put(
        self,
        key: str,
        write: Callable[[], None],
        size: int,
        *,
        reject_if_exists: bool = False,
        lease_id: int | None = None,
    ) -> int:
        """Write locally with ``write()`` (pool put or adopt), then commit at the master; returns the version."""
        stripe = self._stripe(key)
        with self._write_locks[stripe]:
            with self._state_locks[stripe]:
                if reject_if_exists and key in self._versions:
                    raise KeyAlreadyExistsError(f"key {key!r} already exists")
                previous = self._versions.get(key)
                self._begin_pending(key)
                try:
                    write()
                except BaseException:
                    self._end_pending(key)
                    raise
                # the pool now holds the new bytes, not the previous version
                self._versions.pop(key, None)
                self._leases.pop(key, None)
            try:
                answer = self._call_master(
                    MasterPath.COMMIT,
                    {
                        **self._identity(),
                        "key": key,
                        "size": size,
                        "reject_if_exists": reject_if_exists,
                        "lease_id": lease_id,
                    },
                )
                version = int(answer.meta["version"])
            except BaseException:
                with self._state_locks[stripe]:
                    if self._end_pending(key).writers == 0:
                        self.pool.delete(key)
                if previous is not None:
                    self._report_dropped([(key, previous)])
                raise
            with self._state_locks[stripe]:
                pending = self._end_pending(key)
                if pending.watermark > version:
                    self.pool.delete(key)  # a newer write elsewhere (or a remove) overtook this one
                else:
                    self._versions[key] = version
                    if lease_id is not None:
                        self._leases[key] = lease_id
        self._after_write()
        return version

    def put_many(self, items: Sequence[tuple[str, Callable[[], None], int]]) -> list[int | Exception]:
        """Several puts ``(key, write, size)`` with one commit at the master; per item its version or its error.

        Each value is written like :meth:`put` (an item whose ``write()`` fails is left out, the
        others go on); then one ``commit_many`` makes them all current. The write locks of every
        key's stripe are held across that call (taken in stripe order, so batches cannot deadlock).
        """
        results: list[int | Exception] = [NetworkError("not committed")] * len(items)
        locks = [self._write_locks[stripe] for stripe in sorted({self._stripe(key) for key, _, _ in items})]
        for lock in locks:
            lock.acquire()
        try:
            written: list[tuple[int, str, int, int | None]] = []
            for index, (key, write, size) in enumerate(items):
                with self._state_locks[self._stripe(key)]:
                    previous = self._versions.get(key)
                    self._begin_pending(key)
                    try:
                        write()
                    except Exception as exc:
                        self._end_pending(key)
                        results[index] = exc
                        continue
                    self._versions.pop(key, None)
                    self._leases.pop(key, None)
                written.append((index, key, size, previous))
            if written:
                for (index, key, _, _), version in zip(written, self._commit_many(written), strict=True):
                    with self._state_locks[self._stripe(key)]:
                        if self._end_pending(key).watermark > version:
                            self.pool.delete(key)
                        else:
                            self._versions[key] = version
                    results[index] = version
        finally:
            for lock in reversed(locks):
                lock.release()
        self._after_write()
        return results

    def _commit_many(self, written: Sequence[tuple[int, str, int, int | None]]) -> list[int]:
        """Commit written copies at the master; on failure none stays (their pending state ended)."""
        try:
            answer = self._call_master(
                MasterPath.COMMIT_MANY, {**self._identity(), "items": [[key, size] for _, key, size, _ in written]}
            )
            versions = [int(version) for version in answer.meta["versions"]]
            if len(versions) != len(written):
                raise NetworkError(f"commit_many answered {len(versions)} versions for {len(written)} keys")
            return versions
        except BaseException:
            for _, key, _, _ in written:
                with self._state_locks[self._stripe(key)]:
                    if self._end_pending(key).writers == 0:
                        self.pool.delete(key)
            self._report_dropped([(key, previous) for _, key, _, previous in written if previous is not None])
            raise

    def _begin_pending(self, key: str) -> None:
        pending = self._pending.setdefault(key, _Pending())
        pending.writers += 1

    def _end_pending(self, key: str) -> _Pending:
        pending = self._pending[key]
        pending.writers -= 1
        if pending.writers == 0:
            del self._pending[key]
        return pending

    def remove(self, key: str) -> None:
        """Delete ``key`` everywhere (the master invalidates every holder, this one included)."""
        with self._write_locks[self._stripe(key)]:
            self._call_master(MasterPath.REMOVE, {"key": key})

    def drop(self, items: Iterable[tuple[str, int]]) -> int:
        """Master invalidation: delete local copies older than the given versions; returns how many."""
        dropped = 0
        for key, below in items:
            with self._state_locks[self._stripe(key)]:
                pending = self._pending.get(key)
                if pending is not None:
                    pending.watermark = max(pending.watermark, below)
                version = self._versions.get(key)
                if version is not None and version < below:
                    del self._versions[key]
                    self._leases.pop(key, None)
                    self.pool.delete(key)
                    dropped += 1
        return dropped

    # -- reads ------------------------------------------------------------------------------------

    def get(self, key: str) -> Buffer:
        """The value: the local copy, or a copy fetched from a peer (kept locally when it fits)."""
        view = self.pool.get(key)
        if view is not None:
            return view
        with self._write_locks[self._stripe(key)]:
            view = self.pool.get(key)
            if view is not None:
                return view
            fetched = self._fetch_from_peers(key)
            self._insert_replica(key, fetched)
            return fetched.blob

    def _lookup(self, key: str) -> dict[str, Any]:
        answer = self._call_master(MasterPath.LOOKUP, {"key": key}).meta
        if not answer.get("found"):
            raise KeyNotFoundError(f"key {key!r} not found")
        return dict(answer)

    def _fetch_from_peers(self, key: str) -> FetchedValue:
        me = self._identity()["holder"]
        for _attempt in range(3):
            route = self._lookup(key)
            version = int(route["version"])
            last_error: ApiError | None = None
            for holder in route["holders"]:
                if holder["instance_key"] == me:
                    continue  # the master still lists a copy this pool just lost
                try:
                    reply = self._rpc.call(
                        holder["endpoint"], OwnerPath.FETCH, {"key": key}, timeout_s=self._peer_timeout_s
                    )
                except KeyNotFoundError:
                    self._call_master(
                        MasterPath.DROP_REPLICAS, {"holder": holder["instance_key"], "items": [[key, version]]}
                    )
                    continue
                except ApiError as exc:
                    last_error = exc
                    continue
                if int(reply.meta["version"]) != version or not reply.frames:
                    continue  # the holder moved on to another version; look the route up again
                return FetchedValue(version, reply.frames[0])
            if me in [h["instance_key"] for h in route["holders"]]:
                self._report_dropped([(key, version)])
            if last_error is not None:
                raise NetworkError(f"no holder of key {key!r} could serve it: {last_error}")
        raise KeyNotFoundError(f"key {key!r} not found (its replicas vanished while being fetched)")

    def _insert_replica(self, key: str, fetched: FetchedValue) -> None:
        stripe = self._stripe(key)
        with self._state_locks[stripe]:
            self._begin_pending(key)
        try:
            accepted = bool(
                self._call_master(
                    MasterPath.ADD_REPLICA, {**self._identity(), "key": key, "version": fetched.version}
                ).meta.get("accepted")
            )
        except ApiError as exc:
            log.info("could not register a replica of %r: %s", key, exc)
            accepted = False
        kept = False
        with self._state_locks[stripe]:
            pending = self._end_pending(key)
            if accepted and pending.watermark <= fetched.version:
                try:
                    self.pool.put(key, [fetched.blob])
                    self._versions[key] = fetched.version
                    kept = True
                except ApiError as exc:
                    log.info("fetched %r but could not keep a replica: %s", key, exc)
        if accepted and not kept:
            self._report_dropped([(key, fetched.version)])
        self._after_write()

    def serve_fetch(self, key: str) -> tuple[int, memoryview]:
        """A peer's fetch: the local copy and its version; KeyNotFoundError when there is none."""
        with self._state_locks[self._stripe(key)]:
            version = self._versions.get(key)
            view = self.pool.get(key) if version is not None else None
        if version is None or view is None:
            raise KeyNotFoundError(f"no local replica of {key!r}")
        return version, view

    def exists(self, key: str) -> bool:
        """True when the key exists anywhere in the cluster."""
        if self.pool.contains(key):
            return True
        return bool(self._call_master(MasterPath.LOOKUP, {"key": key}).meta.get("found"))

    def size(self, key: str) -> int:
        """Stored size of the value in bytes."""
        local = self.pool.size(key)
        if local is not None:
            return local
        return int(self._lookup(key)["size"])

    # -- reconciliation ---------------------------------------------------------------------------

    def _after_write(self) -> None:
        evictions = self.pool.stats().get("evictions", 0)
        if evictions != self._evictions_seen:
            self._evictions_seen = evictions
            self._evicted.set()

    def _reconcile_loop(self) -> None:
        # Batched off the write path: a full pool evicts on every put, and the master may lag a
        # moment (a peer asking for an evicted copy is told "not found" and reports it itself).
        while not self._stopped.is_set():
            self._evicted.wait()
            if self._stopped.is_set():
                return
            self._evicted.clear()
            try:
                self.reconcile()
            except Exception:
                log.exception("reconciling evicted replicas failed")
            self._stopped.wait(RECONCILE_INTERVAL_S)

    def reconcile(self) -> int:
        """Tell the master about local copies the pool evicted; returns how many."""
        present = set(self.pool.keys())
        gone: list[tuple[str, int]] = []
        for key, version in list(self._versions.items()):
            if key in present:
                continue
            with self._state_locks[self._stripe(key)]:
                if self._versions.get(key) == version and not self.pool.contains(key):
                    del self._versions[key]
                    self._leases.pop(key, None)
                    gone.append((key, version))
        self._report_dropped(gone)
        return len(gone)

    def close(self) -> None:
        """Stop the background reconciliation; idempotent."""
        self._stopped.set()
        self._evicted.set()
        if self._reconciler is not threading.current_thread():
            self._reconciler.join(5.0)

    def _report_dropped(self, items: Sequence[tuple[str, int]]) -> None:
        if not items:
            return
        try:
            self._call_master(
                MasterPath.DROP_REPLICAS,
                {"holder": self._identity()["holder"], "items": [[k, v] for k, v in items]},
            )
        except ApiError as exc:
            log.warning("could not tell the master that %d replicas are gone: %s", len(items), exc)

    def announce(self) -> None:
        """Report every local copy to a (restarted) master and drop the ones it says are stale."""
        items = [[k, v, self.pool.size(k) or 0, self._leases.get(k)] for k, v in list(self._versions.items())]
        answer = self._call_master(MasterPath.ANNOUNCE, {**self._identity(), "items": items}).meta
        stale = [str(k) for k in answer.get("stale") or []]
        for key in stale:
            with self._state_locks[self._stripe(key)]:
                if self._versions.pop(key, None) is not None:
                    self._leases.pop(key, None)
                    self.pool.delete(key)
        log.info("announced %d replicas to the kv master; %d were stale", len(items), len(stale))

    def wipe(self) -> int:
        """Delete every committed local copy (the master expelled this owner and forgot its routes)."""
        count = 0
        for key in list(self._versions):
            with self._state_locks[self._stripe(key)]:
                if self._versions.pop(key, None) is not None:
                    self._leases.pop(key, None)
                    self.pool.delete(key)
                    count += 1
        return count

    def __len__(self) -> int:
        return len(self._versions)
