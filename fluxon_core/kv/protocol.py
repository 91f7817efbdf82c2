"""Wire vocabulary of the KV plane: RPC paths, coordinator keys and the member record.

Paths under ``/fluxon_kv/`` are reserved for the plane; user handlers registered with
``KvClient.rpc_register`` live anywhere else.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

import attrs

from fluxon_core.addresses import network_identity
from fluxon_core.errors import InvalidArgumentError, NetworkError
from fluxon_core.protocols import PrefixUsage

RESERVED_PREFIX = "/fluxon_kv/"

UNREGISTERED_MEMBER = "unregistered member"
"""Start of the NetworkError message the master answers a member it does not know (it must register again)."""


def is_unregistered_member_error(exc: BaseException) -> bool:
    """True for the master's "register again" answer."""
    return isinstance(exc, NetworkError) and exc.message.startswith(UNREGISTERED_MEMBER)


class MasterPath:
    """RPC paths served by the kv master."""

    REGISTER = "/fluxon_kv/master/register"
    KEEPALIVE = "/fluxon_kv/master/keepalive"
    LEAVE = "/fluxon_kv/master/leave"
    LOOKUP = "/fluxon_kv/master/lookup"
    COMMIT = "/fluxon_kv/master/commit"
    COMMIT_MANY = "/fluxon_kv/master/commit_many"
    ADD_REPLICA = "/fluxon_kv/master/add_replica"
    DROP_REPLICAS = "/fluxon_kv/master/drop_replicas"
    ANNOUNCE = "/fluxon_kv/master/announce"
    REMOVE = "/fluxon_kv/master/remove"
    COUNT_PREFIX = "/fluxon_kv/master/count_prefix"
    RESOLVE = "/fluxon_kv/master/resolve"
    STATUS = "/fluxon_kv/master/status"
    LEASE_GRANT = "/fluxon_kv/master/lease_grant"
    LEASE_KEEPALIVE = "/fluxon_kv/master/lease_keepalive"
    LEASE_REVOKE = "/fluxon_kv/master/lease_revoke"


# Master paths an external client may reach through its owner (the owner forwards them verbatim).
PROXIED_MASTER_PATHS = (
    MasterPath.REGISTER,
    MasterPath.KEEPALIVE,
    MasterPath.LEAVE,
    MasterPath.LOOKUP,
    MasterPath.COUNT_PREFIX,
    MasterPath.RESOLVE,
    MasterPath.STATUS,
    MasterPath.LEASE_GRANT,
    MasterPath.LEASE_KEEPALIVE,
    MasterPath.LEASE_REVOKE,
)


class OwnerPath:
    """RPC paths served by an owner."""

    ATTACH = "/fluxon_kv/owner/attach"
    PUT = "/fluxon_kv/owner/put"
    PUT_MANY = "/fluxon_kv/owner/put_many"
    REMOVE = "/fluxon_kv/owner/remove"
    GET = "/fluxon_kv/owner/get"
    EXISTS = "/fluxon_kv/owner/exists"
    SIZE = "/fluxon_kv/owner/size"
    FETCH = "/fluxon_kv/owner/fetch"
    DROP = "/fluxon_kv/owner/drop"
    PREFIX_BUDGET = "/fluxon_kv/owner/prefix_budget"
    PREFIX_USAGE = "/fluxon_kv/owner/prefix_usage"
    PROXY_PREFIX = "/fluxon_kv/owner/master"

    @staticmethod
    def proxy(master_path: str) -> str:
        """The owner path forwarding to ``master_path``."""
        return OwnerPath.PROXY_PREFIX + master_path[len("/fluxon_kv/master") :]


class NodePath:
    """RPC paths every member (owner or external) serves on its own endpoint."""

    PING = "/fluxon_kv/node/ping"


def coordinator_prefix(cluster_name: str) -> str:
    """Root of the cluster's keys in the coordinator."""
    return f"/fluxon_kv/{cluster_name}/"


def members_prefix(cluster_name: str) -> str:
    """Coordinator prefix of member records (each bound to the member's lease)."""
    return coordinator_prefix(cluster_name) + "members/"


def key_leases_prefix(cluster_name: str) -> str:
    """Coordinator prefix of leases that bind KV keys (``put(..., lease_id=)``)."""
    return coordinator_prefix(cluster_name) + "leases/"


def master_key(cluster_name: str) -> str:
    """Coordinator key where the kv master publishes its endpoint."""
    return coordinator_prefix(cluster_name) + "master"


def secret_key(cluster_name: str) -> str:
    """Coordinator key holding the cluster secret (when the master publishes it)."""
    return coordinator_prefix(cluster_name) + "secret"


def pid_namespace() -> str:
    """Identity of this process's PID namespace, so pids are only compared within one."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@attrs.frozen
class MemberInfo:
    """A member of the cluster as the master records it."""

    instance_key: str
    generation: int
    role: str
    endpoint: str
    host: str = attrs.field(factory=socket.gethostname)
    pid: int = attrs.field(factory=os.getpid)
    owner_key: str = ""
    network: str = attrs.field(factory=network_identity)
    """The member's network namespace (:func:`fluxon_core.addresses.network_identity`); "" when unknown."""

    def to_meta(self) -> dict[str, Any]:
        """JSON-ready form."""
        return attrs.asdict(self)

    @classmethod
    def from_meta(cls, data: Any) -> MemberInfo:
        """Parse the JSON form; a malformed record is a NetworkError."""
        if not isinstance(data, Mapping):
            raise NetworkError(f"malformed member record {data!r}")
        try:
            return cls(
                instance_key=str(data["instance_key"]),
                generation=int(data["generation"]),
                role=str(data["role"]),
                endpoint=str(data["endpoint"]),
                host=str(data.get("host", "")),
                pid=int(data.get("pid", 0)),
                owner_key=str(data.get("owner_key", "")),
                network=str(data.get("network", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise NetworkError(f"malformed member record {data!r}: {exc}") from None


def prefix_usage_to_meta(usage: Mapping[str, PrefixUsage]) -> dict[str, Any]:
    """The JSON form of a pool's prefix usage (the owner's answer to ``PREFIX_USAGE``)."""
    return {"prefixes": {prefix: attrs.asdict(figures) for prefix, figures in usage.items()}}


def prefix_usage_from_meta(meta: Mapping[str, Any]) -> dict[str, PrefixUsage]:
    """Parse :func:`prefix_usage_to_meta`; a malformed answer is a NetworkError."""
    try:
        return {str(prefix): PrefixUsage(**figures) for prefix, figures in meta["prefixes"].items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise NetworkError(f"malformed prefix usage {meta!r}: {exc}") from None


def meta_str(meta: Mapping[str, Any], name: str) -> str:
    """A required string field of a request; a missing or wrong one is an InvalidArgumentError."""
    value = meta.get(name)
    if not isinstance(value, str):
        raise InvalidArgumentError(f"request field {name!r} must be a string, got {value!r}")
    return value


def meta_int(meta: Mapping[str, Any], name: str) -> int:
    """A required int field of a request."""
    value = meta.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"request field {name!r} must be an integer, got {value!r}")
    return value
