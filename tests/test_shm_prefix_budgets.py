"""Byte budgets for key prefixes in the shared-memory pool: LRU within the prefix, exact accounting.

Values of ``ONE_PAGE_VALUE`` bytes under the short keys used here are charged exactly one 4 KiB page.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluxon_core.errors import InvalidArgumentError, StorageFullError
from fluxon_core.protocols import PrefixBudgetedCache, PrefixUsage
from fluxon_plugins.shm_cache import ShmCacheConfig, ShmPoolOwner
from tests.support.shm_child import ShmChild
from tests.support.shm_values import make_value

PAGE = 4096
ONE_PAGE_VALUE = 4000
A, B = "/c/a/", "/c/b/"


@pytest.fixture
def pool_dir() -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="fx", dir="/dev/shm")
    try:
        yield os.path.join(root, "pool")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def owner_at(path: str, capacity: int = 64 * PAGE) -> ShmPoolOwner:
    return ShmPoolOwner(ShmCacheConfig(path=path, capacity=capacity))  # type: ignore[arg-type]


def put_page(owner: ShmPoolOwner, key: str, seed: int = 0) -> None:
    owner.put(key, [make_value(seed, ONE_PAGE_VALUE)])


def keys_under(owner: ShmPoolOwner, prefix: str) -> list[str]:
    present = owner.keys()  # least recently used first
    return [key for key in present if key.startswith(prefix)]


def test_a_prefix_over_its_budget_evicts_its_own_least_recent_values_only(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        assert isinstance(owner, PrefixBudgetedCache)
        owner.set_prefix_budget(A, 3 * PAGE)
        owner.set_prefix_budget(B, 2 * PAGE)
        for n in range(2):
            put_page(owner, f"{B}{n}")
        put_page(owner, "/unbudgeted")
        for n in range(5):
            put_page(owner, f"{A}{n}")
        assert keys_under(owner, A) == [f"{A}2", f"{A}3", f"{A}4"]
        assert keys_under(owner, B) == [f"{B}0", f"{B}1"] and owner.contains("/unbudgeted")
        assert owner.prefix_usage() == {
            A: PrefixUsage(budget_bytes=3 * PAGE, used_bytes=3 * PAGE, entries=3, evictions=2),
            B: PrefixUsage(budget_bytes=2 * PAGE, used_bytes=2 * PAGE, entries=2, evictions=0),
        }
        assert owner.stats()["evictions"] == 2 and owner.stats()["used_bytes"] == 6 * PAGE


def test_reads_make_a_value_the_most_recent_of_its_prefix(pool_dir: str) -> None:
    children: list[ShmChild] = []
    try:
        with owner_at(pool_dir) as owner:
            owner.set_prefix_budget(A, 3 * PAGE)
            for n in range(3):
                put_page(owner, f"{A}{n}")
            assert owner.get(f"{A}0") is not None  # owner read: 1 2 0
            reader = ShmChild()
            children.append(reader)
            reader.call("reader", path=pool_dir)
            reader.call("touch", key=f"{A}1")  # a read in another process: 2 0 1
            put_page(owner, f"{A}3")
            assert keys_under(owner, A) == [f"{A}0", f"{A}1", f"{A}3"]
    finally:
        for child in children:
            child.close()


def test_a_value_larger_than_its_prefix_budget_is_storage_full_and_changes_nothing(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, 2 * PAGE)
        put_page(owner, f"{A}keep")
        with pytest.raises(StorageFullError, match="has a budget of 8192 bytes"):
            owner.put(f"{A}huge", [bytes(2 * PAGE)])
        with pytest.raises(StorageFullError, match="budget"):
            owner.open_writer(f"{A}huge", 2 * PAGE)
        assert keys_under(owner, A) == [f"{A}keep"] and owner.prefix_usage()[A].evictions == 0
        owner.put("/elsewhere", [bytes(2 * PAGE)])  # other keys only answer to the pool's capacity


def test_writes_in_progress_hold_room_in_their_prefix(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, 2 * PAGE)
        first = owner.open_writer(f"{A}0", ONE_PAGE_VALUE)
        second = owner.open_writer(f"{A}1", ONE_PAGE_VALUE)
        with pytest.raises(StorageFullError, match="held by writes in progress"):
            owner.open_writer(f"{A}2", ONE_PAGE_VALUE)
        second.abort()
        with first:
            first.write(make_value(1, ONE_PAGE_VALUE))
        put_page(owner, f"{A}2")
        put_page(owner, f"{A}3")  # evicts 0, the least recent
        assert keys_under(owner, A) == [f"{A}2", f"{A}3"]
        assert owner.prefix_usage()[A] == PrefixUsage(2 * PAGE, 2 * PAGE, 2, 1)


def test_a_new_budget_takes_over_present_values_and_a_lower_one_evicts_at_once(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        for n in range(4):
            put_page(owner, f"{A}{n}")
        owner.set_prefix_budget(A, 8 * PAGE)
        assert owner.prefix_usage()[A] == PrefixUsage(8 * PAGE, 4 * PAGE, 4, 0)
        owner.set_prefix_budget(A, 8 * PAGE)  # the same budget again (every mount sets it): nothing happens
        owner.set_prefix_budget(A, 2 * PAGE)
        assert keys_under(owner, A) == [f"{A}2", f"{A}3"]
        assert owner.prefix_usage()[A] == PrefixUsage(2 * PAGE, 2 * PAGE, 2, 2)


def test_budgeted_prefixes_must_be_disjoint_and_budgets_positive(pool_dir: str) -> None:
    with owner_at(pool_dir) as owner:
        owner.set_prefix_budget(A, PAGE)
        with pytest.raises(InvalidArgumentError, match="overlaps"):
            owner.set_prefix_budget("/c/", PAGE)
        with pytest.raises(InvalidArgumentError, match="overlaps"):
            owner.set_prefix_budget(A + "sub/", PAGE)
        for bad in (0, -1, True, 1.5):
            with pytest.raises(InvalidArgumentError, match="positive int"):
                owner.set_prefix_budget(B, bad)  # type: ignore[arg-type]
        owner.set_prefix_budget("/c/ab/", PAGE)  # shares characters, not a prefix: fine


OPS = st.lists(
    st.tuples(
        st.sampled_from(["put", "get", "delete", "budget"]),
        st.sampled_from([A, B, "/x/"]),
        st.integers(0, 5),
        st.integers(1, 4),
    ),
    max_size=60,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_usage_always_matches_the_values_present_and_stays_within_budget(pool_dir: str, ops: list) -> None:
    with owner_at(pool_dir, capacity=8 * PAGE) as owner:
        owner.set_prefix_budget(A, 3 * PAGE)
        owner.set_prefix_budget(B, 2 * PAGE)
        for op, prefix, n, pages in ops:
            key = f"{prefix}{n}"
            if op == "put":
                try:
                    owner.put(key, [bytes(pages * PAGE - len(key) - 16)])
                except StorageFullError:
                    pass
            elif op == "get":
                owner.get(key)
            elif op == "delete":
                owner.delete(key)
            elif prefix != "/x/":
                owner.set_prefix_budget(prefix, pages * PAGE)
            for budgeted, usage in owner.prefix_usage().items():
                present = keys_under(owner, budgeted)
                assert usage.entries == len(present)
                assert usage.used_bytes == sum(charged(owner, key) for key in present)
                assert usage.used_bytes <= usage.budget_bytes
            assert owner.stats()["used_bytes"] <= 8 * PAGE


def charged(owner: ShmPoolOwner, key: str) -> int:
    size = owner.size(key)
    assert size is not None
    return -(-(size + len(key.encode()) + 16) // PAGE) * PAGE
