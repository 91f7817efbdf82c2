"""Refuse an export registration whose endpoint only the agent's own host can reach.

Agents serve exports on their own endpoint, which mounts on every host dial. An endpoint on
loopback (or ``ipc://``) in a cluster whose members span hosts would register fine and then time
out on every other host; the fs master refuses it instead, naming the agent, the address and the
setting to change. Hosts are compared by the network identity each KV member reports
(:func:`fluxon_core.addresses.network_identity`).
"""

from __future__ import annotations

from typing import Any

from fluxon_core.addresses import AdvertisedPeer, describe_peers, is_host_local_endpoint, peers_on_other_networks
from fluxon_core.kv import KvClient
from fluxon_core.log_setup import get_logger

log = get_logger("fluxon.fs.master")


def export_endpoint_problem(store: KvClient, agent: str, endpoint: str) -> str | None:
    """Why agent ``agent`` must not register exports at ``endpoint``; None when it may."""
    if not is_host_local_endpoint(endpoint):
        return None
    status = store.cluster_status()
    if status.is_err():
        log.warning("cannot check the reachability of %s (%s): %s", agent, endpoint, status.unwrap_error())
        return None
    members: list[dict[str, Any]] = [m for m in status.unwrap().get("members", []) if isinstance(m, dict)]
    network = next((str(m.get("network", "")) for m in members if m.get("instance_key") == agent), "")
    peers = [
        AdvertisedPeer(str(m.get("instance_key")), str(m.get("endpoint")), str(m.get("network", ""))) for m in members
    ]
    remote = peers_on_other_networks(network, peers)
    if not remote:
        return None
    return (
        f"agent {agent!r} registers its exports at {endpoint}, an address only processes on its own host can "
        f"reach, but the cluster has members on other hosts ({describe_peers(remote)}). Set "
        f"fluxon_fs.agent.listen_address (or advertise_host) of agent {agent!r}, or leave listen_address unset and "
        "set the fluxonkv_spec.rpc_host of its host's owner, which it follows"
    )
