"""Which agents serve which exports, with leases, and the versioned export snapshot built from it."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

from fluxon_core.config.fields import absolute_path, identifier
from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.config import ExportCacheConfig, FsCacheConfig
from fluxon_fs.master_api.codec import to_wire
from fluxon_fs.master_api.records import ExportSnapshotReply, SnapshotAgent, SnapshotExport


@attrs.frozen
class AgentRecord:
    """A live fs agent and the exports it serves."""

    agent_instance_key: str
    endpoint: str
    exports: dict[str, str]  # export name -> root directory on the agent
    lease_deadline: float
    registered_at_wall: float


@attrs.frozen
class ExportSnapshot:
    """What clients need to mount exports; ``version`` changes whenever anything in it changes."""

    version: str
    cache: FsCacheConfig
    """The master's cache config with every export below, without local rules (they are each host's own)."""
    exports: dict[str, SnapshotExport]
    """Configured exports and those of live agents, with the agents serving each."""

    def reply(self, known_version: str) -> ExportSnapshotReply:
        """The answer to a client holding ``known_version``: only the version when that is this one."""
        if known_version == self.version:
            return ExportSnapshotReply(self.version, unchanged=True)
        return ExportSnapshotReply(self.version, unchanged=False, cache=self.cache, exports=self.exports)

    @property
    def body(self) -> dict[str, Any]:
        """The JSON form of ``cache`` and ``exports``, as clients receive them."""
        wire = to_wire(self.reply(known_version=""))
        return {"cache": wire["cache"], "exports": wire["exports"]}


class ExportRegistry:
    """Agents register their exports under a lease; the snapshot merges them with configured exports.

    An agent that stops renewing its lease leaves the snapshot once the lease expires
    (``expire()`` runs on every read and from the master's reaper thread).
    """

    def __init__(
        self,
        cache_config: FsCacheConfig,
        lease_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cache_config = cache_config
        self._lease_ttl_s = lease_ttl_s
        self._clock = clock
        self._agents: dict[str, AgentRecord] = {}
        self._lock = threading.Lock()
        self._epoch = secrets.token_hex(4)
        self._counter = 0
        self._snapshot: ExportSnapshot | None = None

    @property
    def lease_ttl_s(self) -> float:
        """Seconds an agent registration lives without a heartbeat."""
        return self._lease_ttl_s

    def register(self, agent_instance_key: str, endpoint: str, exports: dict[str, str]) -> str:
        """Record (or refresh) an agent; returns the new snapshot version.

        Export names must be names (letters, digits, ``.``, ``_``, ``-``) and roots absolute, as in the
        master's config; an agent may not serve a configured export from a different root directory.
        """
        for name, root in exports.items():
            problem = identifier(name) or absolute_path(root)
            if problem:
                raise InvalidArgumentError(f"agent {agent_instance_key!r} cannot serve export {name!r}: {problem}")
            configured = self._cache_config.exports.get(name)
            if configured is not None and configured.remote_root_dir_abs != root:
                raise InvalidArgumentError(
                    f"agent {agent_instance_key!r} serves export {name!r} from {root!r}, but the fs master "
                    f"config says remote_root_dir_abs={configured.remote_root_dir_abs!r}; check REMOTE_ROOT_DIR"
                )
        with self._lock:
            previous = self._agents.get(agent_instance_key)
            self._agents[agent_instance_key] = AgentRecord(
                agent_instance_key=agent_instance_key,
                endpoint=endpoint,
                exports=dict(exports),
                lease_deadline=self._clock() + self._lease_ttl_s,
                registered_at_wall=time.time() if previous is None else previous.registered_at_wall,
            )
            if previous is None or previous.endpoint != endpoint or previous.exports != exports:
                self._changed()
            return self._current().version

    def heartbeat(self, agent_instance_key: str) -> bool:
        """Renew an agent's lease; False when it is unknown (expired) and must register again."""
        with self._lock:
            record = self._agents.get(agent_instance_key)
            if record is None:
                return False
            self._agents[agent_instance_key] = attrs.evolve(record, lease_deadline=self._clock() + self._lease_ttl_s)
            return True

    def unregister(self, agent_instance_key: str) -> bool:
        """Drop an agent now (clean stop); True when it was registered."""
        with self._lock:
            removed = self._agents.pop(agent_instance_key, None) is not None
            if removed:
                self._changed()
            return removed

    def expire(self) -> list[str]:
        """Drop agents whose lease passed; returns their instance keys."""
        now = self._clock()
        with self._lock:
            dead = [key for key, record in self._agents.items() if record.lease_deadline <= now]
            for key in dead:
                del self._agents[key]
            if dead:
                self._changed()
            return dead

    def agents(self) -> list[AgentRecord]:
        """Live agents, sorted by instance key."""
        self.expire()
        with self._lock:
            return sorted(self._agents.values(), key=lambda r: r.agent_instance_key)

    def snapshot(self) -> ExportSnapshot:
        """The current versioned snapshot."""
        self.expire()
        with self._lock:
            return self._current()

    def _changed(self) -> None:
        self._counter += 1
        self._snapshot = None

    def _current(self) -> ExportSnapshot:
        if self._snapshot is None:
            self._snapshot = self._build(f"{self._epoch}:{self._counter}")
        return self._snapshot

    def _build(self, version: str) -> ExportSnapshot:
        configs = dict(self._cache_config.exports)
        agents: dict[str, list[SnapshotAgent]] = {name: [] for name in configs}
        for record in sorted(self._agents.values(), key=lambda r: r.agent_instance_key):
            for name, root in record.exports.items():
                configs.setdefault(name, ExportCacheConfig(remote_root_dir_abs=root))
                agents.setdefault(name, []).append(SnapshotAgent(record.agent_instance_key, record.endpoint))
        return ExportSnapshot(
            version=version,
            cache=attrs.evolve(self._cache_config, rules=[], exports=configs),
            exports={name: SnapshotExport.of(config, agents[name]) for name, config in configs.items()},
        )
