"""Bind and advertised addresses of the roles, and which network a process is on.

A role *binds* a host (``127.0.0.1``, an interface address, or a wildcard such as ``0.0.0.0``) and
*advertises* an endpoint other processes dial. The rules every role follows:

* an explicit advertise host (the role's ``advertise_host`` / ``rpc_advertise_host`` setting)
  always wins;
* otherwise a concrete bind host is advertised as is;
* a wildcard bind advertises the host's primary address (:func:`primary_host_address`).

A loopback (or ``ipc://``) endpoint is reachable only from the network namespace it was bound in.
:func:`network_identity` names that namespace, so the kv master can tell a member that advertises
loopback to a cluster spanning several hosts instead of leaving it silently unreachable.
"""

from __future__ import annotations

import fcntl
import functools
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

import attrs

from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.addresses")

WILDCARD_HOSTS = frozenset({"0.0.0.0", "*", "::", "[::]", ""})
_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
# Routing a datagram socket towards this documentation-only address (RFC 5737) picks the source
# address of the default route without sending anything.
_ROUTE_PROBE = ("192.0.2.1", 9)


@attrs.frozen
class HostAddress:
    """What a host's roles bind and advertise: ``bind_host``, and ``advertise_host`` when one is set."""

    bind_host: str
    advertise_host: str | None = None

    @property
    def advertised(self) -> str:
        """The host other processes dial (the rules of this module)."""
        return advertised_host(self.bind_host, self.advertise_host)


def is_wildcard_host(host: str) -> bool:
    """True for hosts that bind every interface (``0.0.0.0``, ``*``, ``::``)."""
    return host.strip() in WILDCARD_HOSTS


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``."""
    bare = host.strip().strip("[]").lower()
    if bare == "localhost" or bare.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def split_endpoint(endpoint: str) -> tuple[str, str, str]:
    """``tcp://host:port`` → ``("tcp", host, port)``; other schemes give ``(scheme, "", rest)``."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        scheme, rest = "tcp", endpoint
    if scheme != "tcp":
        return scheme, "", rest
    host, _, port = rest.rpartition(":")
    return scheme, host, port


def endpoint_with_host(endpoint: str, host: str) -> str:
    """``endpoint`` with its host replaced (``ipc://`` and other non-tcp endpoints are returned unchanged)."""
    scheme, _, port = split_endpoint(endpoint)
    if scheme != "tcp":
        return endpoint
    bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"tcp://{bracketed}:{port}"


def is_host_local_endpoint(endpoint: str) -> bool:
    """True when only processes of the same host (network namespace) can reach ``endpoint``."""
    scheme, host, _ = split_endpoint(endpoint)
    if scheme == "ipc" or scheme == "inproc":
        return True
    return scheme == "tcp" and is_loopback_host(host)


def advertised_host(bind_host: str, advertise_host: str | None = None) -> str:
    """The host to advertise for a server bound at ``bind_host`` (the rules in the module docstring)."""
    if advertise_host:
        return advertise_host
    if is_wildcard_host(bind_host):
        return primary_host_address()
    return bind_host


def advertised_endpoint(bound_endpoint: str, advertise_host: str | None) -> str:
    """The endpoint to publish for a server whose transport reports ``bound_endpoint``."""
    return endpoint_with_host(bound_endpoint, advertise_host) if advertise_host else bound_endpoint


@functools.cache
def primary_host_address() -> str:
    """This host's primary IPv4 address (computed once per process).

    The source address of the default route; without a default route (an isolated network), the
    first address of an interface that is up and not loopback; without any, the address the host
    name resolves to; and ``127.0.0.1`` as a last resort (with a warning: nothing else can reach it).
    """
    for candidate in (_default_route_source(), *_interface_addresses(), _hostname_address()):
        if candidate and not is_loopback_host(candidate) and not is_wildcard_host(candidate):
            return candidate
    log.warning("no non-loopback address found on this host; advertising 127.0.0.1 for a wildcard bind")
    return "127.0.0.1"


def _default_route_source() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_ROUTE_PROBE)
            return str(probe.getsockname()[0])
    except OSError:
        return None


def _interface_addresses() -> list[str]:
    """IPv4 addresses of interfaces that are up and not loopback, in interface-index order."""
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        return []
    found: list[str] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _index, name in sorted(interfaces):
            request = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request), 16)[0]
                if not flags & _IFF_UP or flags & _IFF_LOOPBACK:
                    continue
                raw = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:  # no IPv4 address on this interface, or not Linux
                continue
            found.append(socket.inet_ntoa(raw[20:24]))
    return found


def _hostname_address() -> str | None:
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return None


@functools.cache
def network_identity() -> str:
    """Names the network namespace of this process: equal for two processes that share loopback.

    The kernel's boot id plus the inode of ``/proc/self/ns/net`` on Linux (two machines, or two
    namespaces of one machine, differ); the host name elsewhere.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot_id = handle.read().strip()
        return f"{boot_id}/{os.readlink('/proc/self/ns/net')}"
    except OSError:
        return socket.gethostname()


@attrs.frozen
class AdvertisedPeer:
    """A process that advertises ``endpoint`` from network ``network`` (``""``: unknown)."""

    name: str
    endpoint: str
    network: str


def peers_on_other_networks(network: str, peers: Iterable[AdvertisedPeer]) -> list[AdvertisedPeer]:
    """The ``peers`` known to be on another network than ``network``."""
    if not network:
        return []
    return [peer for peer in peers if peer.network and peer.network != network]


def describe_peers(peers: Iterable[AdvertisedPeer], limit: int = 3) -> str:
    """``'a' at tcp://…, 'b' at tcp://…`` (at most ``limit``, then ``and N more``)."""
    listed = list(peers)
    text = ", ".join(f"{peer.name!r} at {peer.endpoint}" for peer in listed[:limit])
    if len(listed) > limit:
        text += f" and {len(listed) - limit} more"
    return text
