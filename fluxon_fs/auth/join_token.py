"""The join token: everything a new host needs to join a cluster, in one 0600 file.

A host joining a cluster needs the KV cluster secret (its owner is a member of the KV plane), the
FS service secret (its fs agent acts as the system), where to find the kv master (etcd endpoints,
or the master's address) and the fs master's instance key. The first host writes them into one
file (``write_join_token``); an operator copies that file to each new host, once, and points
``FLUXON_JOIN_TOKEN_FILE`` at it. The joining host writes the two secrets into its own 0600 secret
files (:func:`install_join_secrets`), and its roles' configs name only those paths, so no secret
appears in a process's arguments, a config file or a log.

The file is JSON, mode 0600 (it is refused when group or others may read it, like every secret
file), with a ``format`` marker. It also records the network identity of the host that wrote it,
so a token naming loopback addresses is refused on any other host with the setting to change.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from fluxon_core.addresses import is_host_local_endpoint, network_identity
from fluxon_core.errors import InvalidArgumentError
from fluxon_core.kv.auth import SecretFileError, secret_from_hex, write_secret_file

JOIN_TOKEN_ENV = "FLUXON_JOIN_TOKEN_FILE"
"""Environment variable naming the join token file of a joining host (examples/start_kv_and_fs_svc.py)."""
JOIN_TOKEN_FORMAT = "fluxon-join-token/1"


@attrs.frozen
class JoinToken:
    """What a joining host needs; the secrets are hex text, as in the secret files."""

    cluster_name: str
    fs_master_instance_key: str
    cluster_secret: str = attrs.field(repr=False)
    fs_service_secret: str = attrs.field(repr=False)
    etcd_endpoints: tuple[str, ...] = ()
    kv_master_address: str | None = None
    written_by_network: str = ""
    """:func:`fluxon_core.addresses.network_identity` of the host that wrote the token."""

    def __attrs_post_init__(self) -> None:
        if not self.etcd_endpoints and not self.kv_master_address:
            raise InvalidArgumentError("a join token needs etcd_endpoints or kv_master_address")

    def host_local_addresses(self) -> list[str]:
        """The addresses in the token that only the writing host can reach (loopback)."""
        addresses = [f"tcp://{endpoint}" for endpoint in self.etcd_endpoints]
        if self.kv_master_address:
            addresses.append(self.kv_master_address)
        return [address for address in addresses if is_host_local_endpoint(address)]

    def check_usable_here(self, origin: str) -> None:
        """InvalidArgumentError when this host cannot reach the cluster the token names."""
        local = self.host_local_addresses()
        if local and self.written_by_network != network_identity():
            raise InvalidArgumentError(
                f"join token {origin} names {', '.join(local)}, which only the host that wrote it can reach. "
                "Start that host with KV_MASTER_HOST=0.0.0.0 (or its address) and ETCD_ENDPOINT at an address the "
                "other hosts reach, then copy its new join token"
            )


def write_join_token(path: str | os.PathLike[str], token: JoinToken) -> Path:
    """Write ``token`` to ``path`` atomically, mode 0600 (parent created 0700)."""
    file_path = Path(path)
    file_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data: dict[str, Any] = {"format": JOIN_TOKEN_FORMAT, **attrs.asdict(token)}
    data["etcd_endpoints"] = list(token.etcd_endpoints)
    data["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data["written_on"] = socket.gethostname()
    tmp = file_path.with_name(f".{file_path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, file_path)
    return file_path


def read_join_token(path: str | os.PathLike[str]) -> JoinToken:
    """The token in ``path``; InvalidArgumentError naming the file and the problem."""
    file_path = Path(path)
    origin = str(file_path)
    try:
        mode = file_path.stat().st_mode
        text = file_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError(f"join token {origin} cannot be read: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidArgumentError(
            f"join token {origin} is accessible by group/others (mode {oct(mode & 0o777)}); it holds the cluster's "
            "secrets: chmod 600 it"
        )
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"join token {origin} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != JOIN_TOKEN_FORMAT:
        raise InvalidArgumentError(f"join token {origin} is not a {JOIN_TOKEN_FORMAT} file")
    try:
        token = JoinToken(
            cluster_name=str(data["cluster_name"]),
            fs_master_instance_key=str(data["fs_master_instance_key"]),
            cluster_secret=str(data["cluster_secret"]),
            fs_service_secret=str(data["fs_service_secret"]),
            etcd_endpoints=tuple(str(e) for e in data.get("etcd_endpoints") or ()),
            kv_master_address=data.get("kv_master_address") or None,
            written_by_network=str(data.get("written_by_network", "")),
        )
        for name in ("cluster_secret", "fs_service_secret"):
            secret_from_hex(getattr(token, name), f"{origin} {name}")
    except (KeyError, TypeError) as exc:
        raise InvalidArgumentError(f"join token {origin} lacks or mistypes {exc}") from None
    except SecretFileError as exc:
        raise InvalidArgumentError(str(exc)) from None
    return token


def install_join_secrets(token: JoinToken, cluster_secret_file: Path, service_secret_file: Path) -> None:
    """Write the token's cluster secret and FS service secret into this host's 0600 secret files."""
    write_secret_file(cluster_secret_file, secret_from_hex(token.cluster_secret, "join token cluster_secret"))
    write_secret_file(service_secret_file, secret_from_hex(token.fs_service_secret, "join token fs_service_secret"))


def join_token_for(
    *,
    cluster_name: str,
    fs_master_instance_key: str,
    cluster_secret: bytes,
    fs_service_secret: bytes,
    etcd_endpoints: Sequence[str] = (),
    kv_master_address: str | None = None,
) -> JoinToken:
    """A token of this host's cluster (records this host's network identity)."""
    return JoinToken(
        cluster_name=cluster_name,
        fs_master_instance_key=fs_master_instance_key,
        cluster_secret=cluster_secret.hex(),
        fs_service_secret=fs_service_secret.hex(),
        etcd_endpoints=tuple(etcd_endpoints),
        kv_master_address=kv_master_address,
        written_by_network=network_identity(),
    )
