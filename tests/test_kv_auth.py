"""Every RPC of the KV plane is authenticated with the cluster secret; anything else is refused."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator

import pytest

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.kv.auth import (
    RpcAuthenticator,
    SecretFileError,
    load_or_create_secret_file,
    read_secret_file,
)
from fluxon_core.kv.protocol import MasterPath, NodePath, OwnerPath
from fluxon_core.kv.shared_json import read_shared_json, shared_json_path
from fluxon_core.rpc import default_transport
from fluxon_core.rpc_types import RpcCall, RpcMessage
from tests.support.kv_cluster import KvCluster, kv_cluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[KvCluster]:
    with kv_cluster() as c:
        c.start_master()
        c.start_owner("o1", "h1")
        yield c


def call_of(authenticator: RpcAuthenticator, caller: str, path: str) -> RpcCall:
    return RpcCall(path, caller, authenticator.token(caller, path), RpcMessage(), time.monotonic() + 5)


def test_tokens_verify_only_for_their_caller_path_and_secret():
    good = RpcAuthenticator(os.urandom(32))
    good.verify(call_of(good, "alice", "/p"))
    forged = call_of(RpcAuthenticator(os.urandom(32)), "alice", "/p")
    with pytest.raises(PermissionDeniedError, match="does not match this cluster's secret"):
        good.verify(forged)
    other_path = RpcCall("/q", "alice", good.token("alice", "/p"), RpcMessage(), 0)
    with pytest.raises(PermissionDeniedError, match="does not match"):
        good.verify(other_path)
    impostor = RpcCall("/p", "mallory", good.token("alice", "/p"), RpcMessage(), 0)
    with pytest.raises(PermissionDeniedError, match="does not match"):
        good.verify(impostor)
    for bad in ("", "v1.x.y", "v2.1.abc", "garbage"):
        with pytest.raises(PermissionDeniedError, match="missing or malformed"):
            good.verify(RpcCall("/p", "alice", bad, RpcMessage(), 0))
    strict = RpcAuthenticator(b"k" * 32, max_clock_skew_s=1)
    old_stamp = int(time.time() * 1000) - 5000
    stale = f"v1.{old_stamp}.{strict._mac('alice', '/p', old_stamp)}"
    with pytest.raises(PermissionDeniedError, match="stale"):
        strict.verify(RpcCall("/p", "alice", stale, RpcMessage(), 0))


def test_secret_file_is_created_private_and_reused(tmp_path):
    path = tmp_path / "secrets" / "demo.secret"
    secret = load_or_create_secret_file(path)
    assert len(secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_secret_file(path) == secret == read_secret_file(path)
    path.chmod(0o640)
    with pytest.raises(SecretFileError, match="chmod 600"):
        read_secret_file(path)
    with pytest.raises(SecretFileError, match="does not exist"):
        read_secret_file(tmp_path / "nope")


def test_shared_json_is_private_to_the_owner_user(cluster: KvCluster):
    path = shared_json_path(cluster.root / "h1" / cluster.cluster_name)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = read_shared_json(path)
    assert info.owner_instance_key == "o1" and info.cluster_name == cluster.cluster_name
    assert info.owner_endpoint.startswith("ipc://") and info.owner_peer_endpoint.startswith("tcp://")
    assert info.master_endpoint == cluster.master_ready.endpoint


def test_unauthenticated_and_forged_calls_are_refused_everywhere(cluster: KvCluster):
    info = read_shared_json(shared_json_path(cluster.root / "h1" / cluster.cluster_name))
    external = cluster.external("auth-probe", "h1")
    assert external.cluster_authenticator().secret_hex == info.cluster_secret
    targets = [
        (cluster.master_ready.endpoint, MasterPath.STATUS),
        (info.owner_endpoint, OwnerPath.ATTACH),
        (info.owner_peer_endpoint, OwnerPath.FETCH),
        (external.endpoint(), NodePath.PING),
    ]
    client = default_transport().new_client()
    wrong = RpcAuthenticator(os.urandom(32))
    right = RpcAuthenticator(bytes.fromhex(info.cluster_secret))
    try:
        for endpoint, path in targets:
            with pytest.raises(PermissionDeniedError):
                client.call(endpoint, path, RpcMessage(), timeout_s=5, caller="intruder")
            with pytest.raises(PermissionDeniedError):
                client.call(
                    endpoint, path, RpcMessage(), timeout_s=5, caller="intruder", auth=wrong.token("intruder", path)
                )
        answer = client.call(
            cluster.master_ready.endpoint,
            MasterPath.STATUS,
            RpcMessage(),
            timeout_s=5,
            caller="insider",
            auth=right.token("insider", MasterPath.STATUS),
        )
        assert {m["instance_key"] for m in answer.meta["members"]} >= {"o1", "auth-probe"}
    finally:
        client.close()


def test_an_owner_with_another_secret_cannot_join(cluster: KvCluster, tmp_path):
    other = tmp_path / "other.secret"
    load_or_create_secret_file(other)
    config = cluster.owner_config("impostor", "h9", cluster_secret_file=str(other), master_connect_timeout_ms=1500)
    from fluxon_core.errors import StoreInitFailedError
    from fluxon_core.kv import new_store

    error = new_store(config).unwrap_error()
    assert isinstance(error, StoreInitFailedError)
    assert "could not reach the kv master" in str(error) and "does not match this cluster's secret" in str(error)


def test_an_owner_without_a_secret_says_where_it_looked(tmp_path, monkeypatch):
    from fluxon_core.errors import StoreInitFailedError
    from fluxon_core.kv import new_store

    monkeypatch.setenv("HOME", str(tmp_path))
    config = {
        "instance_key": "lonely-owner",
        "contribute_to_cluster_pool_size": {"dram": "1MiB"},
        "fluxonkv_spec": {"cluster_name": "nosecret", "share_mem_path": str(tmp_path), "master_address": "127.0.0.1:1"},
    }
    error = new_store(config).unwrap_error()
    assert isinstance(error, StoreInitFailedError)
    assert str(tmp_path / ".fluxon" / "secrets" / "nosecret.secret") in str(error)
    assert "cluster_secret_file" in str(error)
