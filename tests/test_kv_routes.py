"""The master's route table: versions, invalidations, member departure, re-announcement."""

from __future__ import annotations

import pytest

from fluxon_core.errors import KeyAlreadyExistsError, KeyNotFoundError
from fluxon_core.kv.kv_master.routes import AnnouncedReplica, Invalidation, RouteTable


def test_overwrite_invalidates_older_copies_on_other_holders():
    table = RouteTable()
    v1, inv = table.commit("k", "a", 10)
    assert inv == []
    assert table.add_replica("k", "b", v1)
    v2, inv = table.commit("k", "c", 12)
    assert v2 > v1
    assert inv == [Invalidation("a", "k", v2), Invalidation("b", "k", v2)]
    route = table.lookup("k")
    assert route is not None and route.holders == ("c",) and route.size == 12


def test_add_replica_of_a_superseded_version_is_refused():
    table = RouteTable()
    v1, _ = table.commit("k", "a", 1)
    table.commit("k", "a", 1)
    assert not table.add_replica("k", "b", v1)
    assert not table.add_replica("missing", "b", v1)


def test_reject_if_exists():
    table = RouteTable()
    table.commit("k", "a", 1, reject_if_exists=True)
    with pytest.raises(KeyAlreadyExistsError):
        table.commit("k", "b", 1, reject_if_exists=True)


def test_remove_invalidates_every_holder_and_missing_keys_are_not_found():
    table = RouteTable()
    v1, _ = table.commit("k", "a", 1)
    table.add_replica("k", "b", v1)
    inv = table.remove("k")
    assert {i.holder for i in inv} == {"a", "b"} and all(i.below > v1 for i in inv)
    assert table.lookup("k") is None
    with pytest.raises(KeyNotFoundError):
        table.remove("k")


def test_member_departure_drops_its_replicas_and_only_copies_vanish():
    table = RouteTable()
    v1, _ = table.commit("shared", "a", 1)
    table.add_replica("shared", "b", v1)
    table.commit("only-a", "a", 1)
    assert table.drop_member("a") == 1
    assert table.lookup("only-a") is None
    route = table.lookup("shared")
    assert route is not None and route.holders == ("b",)
    assert table.count_prefix("") == 1


def test_evicted_replica_drop_removes_the_key_with_its_last_holder():
    table = RouteTable()
    v1, _ = table.commit("k", "a", 1)
    table.drop_replica("k", "a", v1 - 1)  # an older version: ignored
    assert table.lookup("k") is not None
    table.drop_replica("k", "a", v1)
    assert table.lookup("k") is None


def test_count_prefix():
    table = RouteTable()
    for key in ("/a/1", "/a/2", "/b/1"):
        table.commit(key, "a", 1)
    assert table.count_prefix("/a/") == 2 and table.count_prefix("/c") == 0 and table.count_prefix("") == 3


def test_announce_after_master_restart_merges_by_version():
    table = RouteTable()
    others, stale = table.announce("a", [AnnouncedReplica("k", 100, 5), AnnouncedReplica("j", 7, 1)])
    assert others == [] and stale == []
    others, stale = table.announce("b", [AnnouncedReplica("k", 100, 5), AnnouncedReplica("j", 5, 1)])
    assert stale == ["j"]
    others, stale = table.announce("c", [AnnouncedReplica("k", 200, 6)])
    assert set(others) == {Invalidation("a", "k", 200), Invalidation("b", "k", 200)}
    version, _ = table.commit("new", "a", 1)
    assert version > 200  # versions keep growing past what owners reported


def test_lease_bound_keys_go_with_the_lease():
    table = RouteTable()
    table.commit("k1", "a", 1, lease_id=7)
    table.commit("k2", "b", 1, lease_id=7)
    table.commit("k3", "a", 1)
    assert table.lease_ids() == [7]
    inv = table.remove_lease_keys(7)
    assert {(i.holder, i.key) for i in inv} == {("a", "k1"), ("b", "k2")}
    assert table.count_prefix("k") == 1 and table.lease_ids() == []
