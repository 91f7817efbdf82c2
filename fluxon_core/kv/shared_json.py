"""``<shared_file_path>/<cluster_name>/shared.json``: how external clients find and join their host's owner.

The owner writes it atomically (temp file + rename, mode 0600 because it carries the cluster
secret) after its pool exists and it registered with the master, and removes it on a clean stop.
An external client needs only ``instance_key``, ``cluster_name`` and the shared paths; the rest
comes from here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.addresses import HostAddress

SHARED_JSON_NAME = "shared.json"
PROTOCOL_VERSION = 1


class SharedJsonError(ValueError):
    """``shared.json`` is missing, unreadable, malformed or from an incompatible protocol version."""


@attrs.frozen
class SharedInfo:
    """The contents of ``shared.json``."""

    protocol_version: int
    cluster_name: str
    sub_cluster: str | None
    owner_instance_key: str
    owner_generation: int
    owner_pid: int
    owner_pid_namespace: str
    owner_host: str
    owner_endpoint: str
    """RPC endpoint external clients on this host use (ipc:// when possible)."""
    owner_peer_endpoint: str
    """The owner's cluster-reachable endpoint (what the master and other owners use)."""
    pool_kind: str
    pool_path: str
    pool_capacity_bytes: int
    master_endpoint: str
    coordination_kind: str
    etcd_addresses: list[str]
    rpc_host: str
    """The host this host's roles bind (the owner's ``fluxonkv_spec.rpc_host``)."""
    large_file_paths: list[str]
    member_lease_ttl_ms: int
    cluster_secret: str
    written_at: float
    rpc_advertise_host: str | None = None
    """The host they advertise instead, when the owner sets ``fluxonkv_spec.rpc_advertise_host``."""

    @property
    def host_address(self) -> HostAddress:
        """What this host's roles bind and advertise."""
        return HostAddress(self.rpc_host, self.rpc_advertise_host)

    def to_json(self) -> str:
        """The file text."""
        data = attrs.asdict(self)
        data["written_at_iso"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.written_at))
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str) -> SharedInfo:
        """Parse the file text; SharedJsonError names ``origin`` and the problem."""
        try:
            data: Any = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SharedJsonError(f"{origin} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise SharedJsonError(f"{origin} must hold a JSON object")
        version = data.get("protocol_version")
        if version != PROTOCOL_VERSION:
            raise SharedJsonError(
                f"{origin} has protocol_version {version!r}; this client speaks {PROTOCOL_VERSION} "
                "(owner and client come from different Fluxon versions)"
            )
        data.pop("written_at_iso", None)
        names = {f.name for f in attrs.fields(cls)}
        optional = {f.name for f in attrs.fields(cls) if f.default is not attrs.NOTHING}
        missing = sorted(names - optional - data.keys())
        if missing:
            raise SharedJsonError(f"{origin} lacks {', '.join(missing)}")
        try:
            return cls(**{name: data[name] for name in names if name in data})
        except TypeError as exc:
            raise SharedJsonError(f"{origin} is malformed: {exc}") from None


def shared_json_path(cluster_file_dir: Path) -> Path:
    """``<shared_file_path>/<cluster_name>/shared.json``."""
    return cluster_file_dir / SHARED_JSON_NAME


def write_shared_json(path: Path, info: SharedInfo) -> None:
    """Write ``info`` atomically with mode 0600 (the directory is created 0700)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{SHARED_JSON_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(info.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def read_shared_json(path: Path) -> SharedInfo:
    """Read and parse ``path``; SharedJsonError when absent or malformed."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SharedJsonError(f"{path} does not exist") from None
    except PermissionError:
        raise SharedJsonError(f"{path} is not readable by this user (it is 0600, owned by the owner's user)") from None
    return SharedInfo.from_json(text, str(path))


def remove_shared_json_if_ours(path: Path, owner_instance_key: str, owner_generation: int) -> None:
    """Delete ``path`` unless a newer owner has replaced it meanwhile."""
    try:
        current = read_shared_json(path)
    except SharedJsonError:
        return
    if current.owner_instance_key == owner_instance_key and current.owner_generation == owner_generation:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
