"""Bind and advertised addresses of the roles, and the refusal of members the cluster cannot reach.

The pure rules (:mod:`fluxon_core.addresses`, the kv master's and the fs master's reachability
checks) are tested directly; the settings are tested on real role processes of one host. Members
on *other* hosts are stood in for by registrations that report another network identity; the real
thing (Linux network namespaces) is ``tests/test_netns_cluster.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fluxon_core import addresses
from fluxon_core.addresses import (
    AdvertisedPeer,
    HostAddress,
    advertised_endpoint,
    advertised_host,
    endpoint_with_host,
    is_host_local_endpoint,
    is_loopback_host,
    is_wildcard_host,
    network_identity,
    primary_host_address,
)
from fluxon_core.errors import ApiError, InvalidArgumentError, StoreInitFailedError
from fluxon_core.kv.auth import RpcAuthenticator, read_secret_file
from fluxon_core.kv.kv_master.master_file import read_master_file
from fluxon_core.kv.kv_master.reachability import registration_problem
from fluxon_core.kv.owner.master_link import MasterLink
from fluxon_core.kv.protocol import MasterPath, MemberInfo, master_key
from fluxon_core.kv.rpc_link import AuthedRpc
from fluxon_core.kv.shared_json import read_shared_json, shared_json_path
from fluxon_core.result import Result
from fluxon_core.runtime.readiness import RoleStartError
from fluxon_fs.fs_agent.agent import export_listen_address
from fluxon_fs.fs_master.agent_reachability import export_endpoint_problem
from tests.support.kv_cluster import KvCluster, kv_cluster

ELSEWHERE = "another-boot-id/net:[1]"


# ---------------------------------------------------------------- the address rules


def test_wildcard_and_loopback_hosts() -> None:
    assert all(is_wildcard_host(h) for h in ("0.0.0.0", "*", "::", "[::]"))
    assert not is_wildcard_host("127.0.0.1")
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.3.2.1", "localhost", "::1", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("198.18.0.2", "0.0.0.0", "node-7.example"))
    assert is_host_local_endpoint("tcp://127.0.0.1:5") and is_host_local_endpoint("ipc:///tmp/x.sock")
    assert not is_host_local_endpoint("tcp://198.18.0.2:5")


def test_an_explicit_advertise_host_wins_and_a_wildcard_advertises_the_primary_address() -> None:
    assert advertised_host("198.18.0.2") == "198.18.0.2"
    assert advertised_host("0.0.0.0", "fluxon-b.example") == "fluxon-b.example"
    assert advertised_host("0.0.0.0") == primary_host_address()
    assert HostAddress("0.0.0.0").advertised == primary_host_address()
    assert endpoint_with_host("tcp://0.0.0.0:41000", "198.18.0.2") == "tcp://198.18.0.2:41000"
    assert endpoint_with_host("tcp://0.0.0.0:41000", "fd00::2") == "tcp://[fd00::2]:41000"
    assert endpoint_with_host("ipc:///tmp/a.sock", "198.18.0.2") == "ipc:///tmp/a.sock"
    assert advertised_endpoint("tcp://198.18.0.2:7", None) == "tcp://198.18.0.2:7"
    assert advertised_endpoint("tcp://10.0.0.5:7", "203.0.113.9") == "tcp://203.0.113.9:7"


@pytest.fixture
def fresh_primary() -> Iterator[None]:
    addresses.primary_host_address.cache_clear()
    yield
    addresses.primary_host_address.cache_clear()


def test_the_primary_address_is_the_default_routes_then_an_interfaces(
    monkeypatch: pytest.MonkeyPatch, fresh_primary: None
) -> None:
    monkeypatch.setattr(addresses, "_default_route_source", lambda: "192.0.2.10")
    monkeypatch.setattr(addresses, "_interface_addresses", lambda: ["198.18.0.2"])
    assert primary_host_address() == "192.0.2.10"
    addresses.primary_host_address.cache_clear()
    # an isolated network has no default route: the first interface that is up and not loopback
    monkeypatch.setattr(addresses, "_default_route_source", lambda: None)
    assert primary_host_address() == "198.18.0.2"
    addresses.primary_host_address.cache_clear()
    monkeypatch.setattr(addresses, "_interface_addresses", lambda: [])
    monkeypatch.setattr(addresses, "_hostname_address", lambda: "127.0.1.1")
    assert primary_host_address() == "127.0.0.1"  # nothing better; a warning says so


def test_the_network_identity_is_stable_in_a_process() -> None:
    assert network_identity() == network_identity() != ""


# ---------------------------------------------------------------- the kv master's rule


def _member(name: str, endpoint: str, network: str, role: str = "owner", owner_key: str = "") -> MemberInfo:
    return MemberInfo(name, 1, role, endpoint, owner_key=owner_key, network=network)


MASTER_A = AdvertisedPeer("kv master m", "tcp://198.18.0.1:31000", "net-a")


def test_a_loopback_member_is_refused_when_the_cluster_spans_hosts() -> None:
    owner_b = _member("owner-b", "tcp://127.0.0.1:4100", "net-b")
    problem = registration_problem(owner_b, MASTER_A, [])
    assert problem is not None
    assert "'owner-b'" in problem and "tcp://127.0.0.1:4100" in problem
    assert "fluxonkv_spec.rpc_host" in problem and "kv master m" in problem
    client_b = _member("reader-b", "tcp://127.0.0.1:4200", "net-b", role="external", owner_key="owner-b")
    problem = registration_problem(client_b, MASTER_A, [])
    assert problem is not None and "owner 'owner-b'" in problem


def test_loopback_is_fine_on_one_host_and_unknown_networks_are_not_compared() -> None:
    master = AdvertisedPeer("kv master m", "tcp://127.0.0.1:31000", "net-a")
    assert registration_problem(_member("o1", "tcp://127.0.0.1:1", "net-a"), master, []) is None
    assert registration_problem(_member("o1", "tcp://127.0.0.1:1", ""), MASTER_A, []) is None
    assert registration_problem(_member("o2", "tcp://198.18.0.2:1", "net-b"), MASTER_A, []) is None


def test_a_member_from_another_host_is_refused_while_a_member_advertises_loopback() -> None:
    loopback_a = _member("owner-a", "tcp://127.0.0.1:4100", "net-a")
    problem = registration_problem(_member("owner-b", "tcp://198.18.0.2:4100", "net-b"), MASTER_A, [loopback_a])
    assert problem is not None and "'owner-a'" in problem and "tcp://127.0.0.1:4100" in problem
    # the same member registering again (a new generation) is not compared with itself
    again = _member("owner-a", "tcp://198.18.0.1:4100", "net-a")
    assert registration_problem(again, MASTER_A, [loopback_a]) is None


# ---------------------------------------------------------------- the settings, on real processes


def _register_as(cluster: KvCluster, member: MemberInfo) -> None:
    assert cluster.master_ready is not None
    rpc = AuthedRpc(RpcAuthenticator(read_secret_file(cluster.secret_file)), caller=member.instance_key)
    try:
        rpc.call(cluster.master_ready.endpoint, MasterPath.REGISTER, {"member": member.to_meta()}, timeout_s=5)
    finally:
        rpc.close()


def test_roles_advertise_their_settings_and_a_wildcard_bind_the_primary_address() -> None:
    with kv_cluster() as cluster:
        master = cluster.start_master(host="0.0.0.0", advertise_host="127.0.0.1")
        assert master.endpoint.startswith("tcp://127.0.0.1:")
        assert read_master_file(cluster.root / "master")["endpoint"] == master.endpoint

        owner = cluster.start_owner("o1", "h1", rpc_host="0.0.0.0")
        assert owner.endpoint.startswith(f"tcp://{primary_host_address()}:")
        shared = read_shared_json(shared_json_path(cluster.root / "h1" / cluster.cluster_name))
        assert (shared.rpc_host, shared.rpc_advertise_host) == ("0.0.0.0", None)
        client = cluster.external("e1", "h1")
        assert client.endpoint().startswith(f"tcp://{primary_host_address()}:")
        assert client.host_address() == HostAddress("0.0.0.0")

        cluster.start_owner("o2", "h2", rpc_host="0.0.0.0", rpc_advertise_host="localhost")
        shared = read_shared_json(shared_json_path(cluster.root / "h2" / cluster.cluster_name))
        assert shared.owner_peer_endpoint.startswith("tcp://localhost:")
        advertised = cluster.external("e2", "h2")
        assert advertised.endpoint().startswith("tcp://localhost:")
        # every member is reachable at what it advertises: values move between the two hosts' pools
        advertised.put_blocking("k", {"v": b"x" * 100_000}).unwrap("put failed")
        assert bytes(client.get_blocking("k").unwrap("get failed").access()["v"]) == b"x" * 100_000
        members = {m["instance_key"]: m for m in client.cluster_status().unwrap()["members"]}
        assert members["e2"]["endpoint"] == advertised.endpoint()
        assert members["e2"]["network"] == network_identity()


def test_the_kv_master_refuses_members_the_cluster_cannot_reach() -> None:
    with kv_cluster() as cluster:
        cluster.start_master()  # loopback: one host
        cluster.start_owner("o1", "h1")  # loopback too, which is fine while every member is on this host
        # a member on another host advertising loopback, as a process there would register
        with pytest.raises(InvalidArgumentError, match=r"'remote-1'.*tcp://127\.0\.0\.1:4242.*rpc_host"):
            _register_as(cluster, _member("remote-1", "tcp://127.0.0.1:4242", ELSEWHERE))
        # a well-configured member on another host: refused while o1 advertises loopback, naming o1
        with pytest.raises(InvalidArgumentError, match=r"'o1'.*tcp://127\.0\.0\.1.*rpc_host.*of owner 'o1'"):
            _register_as(cluster, _member("remote-2", "tcp://198.18.0.2:4242", ELSEWHERE))
        status = cluster.external("e1", "h1").cluster_status().unwrap()
        assert {m["instance_key"] for m in status["members"]} == {"o1", "e1"}


def test_an_owner_refused_by_the_master_fails_at_once_with_the_masters_reason() -> None:
    with kv_cluster(lease_ttl_ms=30_000) as cluster:
        cluster.start_master()
        _register_as(cluster, _member("remote-1", "tcp://198.18.0.2:4242", ELSEWHERE))  # a member on another host
        started = time.monotonic()
        with pytest.raises(RoleStartError, match=r"refused this owner.*'o1'.*tcp://127\.0\.0\.1.*rpc_host"):
            cluster.start_owner("o1", "h1", attach_timeout_ms=30_000)
        assert time.monotonic() - started < 20  # not retried until the attach deadline


class _Coordinator:
    def __init__(self, record: dict[str, Any]) -> None:
        self.record = json.dumps(record).encode()

    def watch_prefix(self, _prefix: str, _callback: Callable[[str, bytes | None], None]) -> Callable[[], None]:
        return lambda: None

    def get(self, _key: str) -> bytes:
        return self.record


def test_an_owner_names_the_setting_when_etcd_publishes_a_loopback_master_of_another_host() -> None:
    record = {"instance_key": "m", "endpoint": "tcp://127.0.0.1:31000", "network": ELSEWHERE}
    link = MasterLink(None, "c1", address=None, coordinator=_Coordinator(record), timeout_s=1)  # type: ignore[arg-type]
    with pytest.raises(
        InvalidArgumentError, match=r"kv master 'm'.*tcp://127\.0\.0\.1:31000.*host \(or advertise_host\)"
    ):
        link.discover()
    same_host = MasterLink(
        None,  # type: ignore[arg-type]
        "c1",
        address=None,
        coordinator=_Coordinator({**record, "network": network_identity()}),  # type: ignore[arg-type]
        timeout_s=1,
    )
    assert same_host.discover() == "tcp://127.0.0.1:31000"
    assert master_key("c1").endswith("/master")


# ---------------------------------------------------------------- fs agents


def test_an_agent_follows_its_hosts_address_unless_set() -> None:
    assert export_listen_address(HostAddress("198.18.0.2"), None, None) == ("tcp://198.18.0.2:0", None)
    assert export_listen_address(HostAddress("0.0.0.0", "b.example"), None, None) == ("tcp://0.0.0.0:0", "b.example")
    assert export_listen_address(HostAddress("0.0.0.0", "b.example"), None, "x.example") == (
        "tcp://0.0.0.0:0",
        "x.example",
    )
    assert export_listen_address(HostAddress("198.18.0.2"), "tcp://0.0.0.0:7000", None) == ("tcp://0.0.0.0:7000", None)


class _Store:
    def __init__(self, members: list[dict[str, Any]] | ApiError) -> None:
        self.members = members

    def cluster_status(self) -> Result[dict[str, Any]]:
        if isinstance(self.members, ApiError):
            return Result.err(self.members)
        return Result.ok({"members": self.members})


def test_the_fs_master_refuses_an_agent_endpoint_only_its_host_can_reach() -> None:
    members = [
        {"instance_key": "agent-b", "endpoint": "tcp://198.18.0.2:1", "network": "net-b"},
        {"instance_key": "owner-c", "endpoint": "tcp://198.18.0.3:1", "network": "net-c"},
    ]
    problem = export_endpoint_problem(_Store(members), "agent-b", "tcp://127.0.0.1:7000")  # type: ignore[arg-type]
    assert problem is not None
    assert "'agent-b'" in problem and "tcp://127.0.0.1:7000" in problem and "fluxon_fs.agent.listen_address" in problem
    assert export_endpoint_problem(_Store(members), "agent-b", "tcp://198.18.0.2:7000") is None  # type: ignore[arg-type]
    one_host = [dict(m, network="net-b") for m in members]
    assert export_endpoint_problem(_Store(one_host), "agent-b", "tcp://127.0.0.1:7000") is None  # type: ignore[arg-type]
    unknown = StoreInitFailedError("no owner")
    assert export_endpoint_problem(_Store(unknown), "agent-b", "tcp://127.0.0.1:7000") is None  # type: ignore[arg-type]
