"""Refuse members whose advertised endpoint the rest of the cluster cannot reach.

A loopback (or ``ipc://``) endpoint reaches only processes of the member's own host. On one host
that is the right default; in a cluster with members on other hosts it is a silent partition: the
member registers fine and then every call to it times out. So registration is refused, with an
error that names the member, the address and the setting to change, when

* the registering member advertises a host-local endpoint and some member (or the master) is on
  another network, or
* the registering member is on another network than a member that advertises a host-local
  endpoint (the error names that member).

"Another network" compares :attr:`MemberInfo.network` (a network-namespace identity); members that
did not report one are not compared.
"""

from __future__ import annotations

from collections.abc import Iterable

from fluxon_core.addresses import (
    AdvertisedPeer,
    describe_peers,
    is_host_local_endpoint,
    peers_on_other_networks,
)
from fluxon_core.kv.protocol import MemberInfo

OWNER_ROLE = "owner"


def address_setting(member: MemberInfo) -> str:
    """Which setting decides what ``member`` advertises."""
    if member.role == OWNER_ROLE:
        return (
            f"fluxonkv_spec.rpc_host (or rpc_advertise_host) of owner {member.instance_key!r}: an address of its "
            "host the others can reach, or 0.0.0.0 to bind every interface and advertise the primary address"
        )
    owner = repr(member.owner_key) if member.owner_key else "of its host"
    return (
        f"fluxonkv_spec.rpc_host (or rpc_advertise_host) of the owner {owner}: external clients bind and advertise "
        "what their owner's shared.json names"
    )


def _peer(member: MemberInfo) -> AdvertisedPeer:
    return AdvertisedPeer(member.instance_key, member.endpoint, member.network)


def registration_problem(candidate: MemberInfo, master: AdvertisedPeer, members: Iterable[MemberInfo]) -> str | None:
    """Why ``candidate`` must not join a cluster of ``master`` and ``members``; None when it may."""
    others = [m for m in members if m.instance_key != candidate.instance_key]
    if is_host_local_endpoint(candidate.endpoint):
        remote = peers_on_other_networks(candidate.network, [master, *map(_peer, others)])
        if remote:
            return (
                f"member {candidate.instance_key!r} ({candidate.role}) advertises {candidate.endpoint}, an address "
                f"only processes on its own host can reach, but the cluster has members on other hosts "
                f"({describe_peers(remote)}). Set {address_setting(candidate)}."
            )
        return None
    for other in others:
        if is_host_local_endpoint(other.endpoint) and peers_on_other_networks(candidate.network, [_peer(other)]):
            return (
                f"member {candidate.instance_key!r} ({candidate.role}) at {candidate.endpoint} joins from another "
                f"host than member {other.instance_key!r} ({other.role}), which advertises {other.endpoint}, an "
                f"address only processes on its own host can reach. Set {address_setting(other)}, and restart it."
            )
    return None
