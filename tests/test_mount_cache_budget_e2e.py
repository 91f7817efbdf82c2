"""Each export's ``cache_max_bytes`` is a budget in the host pool, and the panel shows the content cache as it is.

Real processes: kv master, owner, fs master (budgets in its ``fluxon_fs.cache``), one fs agent serving
``demo`` and ``aux``; ``demo`` and ``aux`` are mounted in this process, other readers run as separate
processes on the same host. What reaches the agent is counted by the agent (``MountE2E.agent_ops``);
what the pool holds is read from the pool owner's accounting (``KvClient.prefix_usage``); the panel
is read through its JSON API with a bearer token.

The tests run in order on one cluster: the budget test reads ``demo`` and ``aux``, the panel tests
check what that reading (and a second process's) shows.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fluxon_core.protocols import PrefixUsage
from fluxon_fs.patcher import export_cache_prefix
from tests.support.fs_cluster import ADMIN
from tests.support.mount_e2e import MountE2E, running_mount_e2e
from tests.support.poll import wait_until

MiB = 1024 * 1024
PAGE = 4096
PIECE_CHARGE = MiB + PAGE  # a 1 MiB piece in the pool: value + encoding, key and trailer, in 4 KiB pages
FILE_BYTES = 2 * MiB  # two pieces
FILE_CHARGE = 2 * PIECE_CHARGE + PAGE  # and the version hint left with the first piece
DEMO_BUDGET = 3 * FILE_CHARGE + 16 * 1024  # three files, not four
AUX_BUDGET = 64 * MiB
DEMO_FILES = [f"budget/f{n}.bin" for n in range(10)]
AUX_FILES = ["warm/a.bin", "warm/b.bin"]
REPORT_INTERVAL_MS = 200


@pytest.fixture(scope="module")
def e2e() -> Iterator[MountE2E]:
    with running_mount_e2e(
        cache_max_bytes={"demo": DEMO_BUDGET, "aux": AUX_BUDGET}, report_interval_ms=REPORT_INTERVAL_MS
    ) as env:
        yield env


@pytest.fixture(scope="module")
def contents(e2e: MountE2E) -> dict[str, bytes]:
    """The files of both exports, written on the agent's side."""
    files = {}
    for export, names in (("demo", DEMO_FILES), ("aux", AUX_FILES)):
        for name in names:
            path = e2e.real(name, export)
            path.parent.mkdir(parents=True, exist_ok=True)
            files[f"{export}:{name}"] = data = os.urandom(FILE_BYTES)
            path.write_bytes(data)
    return files


@pytest.fixture(scope="module")
def panel(e2e: MountE2E) -> Iterator[httpx.Client]:
    """The fs master's panel API, logged in as the admin (bearer token)."""
    assert e2e.fs.master_ready is not None
    base = e2e.fs.master_ready.fields["panel"]
    login = httpx.post(f"{base}/api/login", json={"username": ADMIN[0], "password": ADMIN[1]}, timeout=15)
    assert login.status_code == 200, login.text
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=15) as c:
        yield c


def usage(e2e: MountE2E, export: str) -> PrefixUsage:
    return e2e.store.prefix_usage().unwrap()[export_cache_prefix(export)]


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def digest(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def overview_export(panel: httpx.Client, name: str) -> dict[str, Any]:
    overview = panel.get("/api/overview")
    assert overview.status_code == 200, overview.text
    return next(export for export in overview.json()["exports"] if export["name"] == name)


def test_reading_more_than_the_budget_keeps_the_export_within_it_and_the_latest_files_warm(
    e2e: MountE2E, contents: dict[str, bytes]
) -> None:
    for name in AUX_FILES:
        assert read(e2e.path(name, "aux")) == contents[f"aux:{name}"]
    e2e.settle_cache()
    aux_before = usage(e2e, "aux")
    assert aux_before == PrefixUsage(AUX_BUDGET, 2 * FILE_CHARGE, 2 * 3, 0)

    for name in DEMO_FILES:  # 10 files of 2 MiB through a budget of three files
        assert read(e2e.path(name)) == contents[f"demo:{name}"]
        assert usage(e2e, "demo").used_bytes <= DEMO_BUDGET, name
    e2e.settle_cache()
    demo = usage(e2e, "demo")
    assert demo.budget_bytes == DEMO_BUDGET
    assert demo.used_bytes == 3 * FILE_CHARGE and demo.entries == 3 * 3
    assert demo.evictions == (len(DEMO_FILES) - 3) * 3  # LRU inside the export: the oldest files' pieces and hints
    assert usage(e2e, "aux") == aux_before  # another export's pieces are untouched

    latest = DEMO_FILES[-3:]
    answer, calls = e2e.agent_ops_during(lambda: e2e.reader_process("budget-latest", *latest))
    assert answer == {name: digest(contents[f"demo:{name}"]) for name in latest}
    assert calls["read_chunk"] == 0, calls  # served from the pool by another process
    answer, calls = e2e.agent_ops_during(lambda: e2e.reader_process("budget-aux", *AUX_FILES, export="aux"))
    assert answer == {name: digest(contents[f"aux:{name}"]) for name in AUX_FILES}
    assert calls["read_chunk"] == 0, calls

    oldest = DEMO_FILES[0]
    answer, calls = e2e.agent_ops_during(lambda: e2e.reader_process("budget-oldest", oldest))
    assert answer == {oldest: digest(contents[f"demo:{oldest}"])}
    assert calls["read_chunk"] == 2, calls  # evicted: both pieces from the agent again, which evicts f7
    assert usage(e2e, "demo").used_bytes <= DEMO_BUDGET


def test_the_overview_shows_each_export_budget_and_its_usage_in_the_host_pool(
    e2e: MountE2E, panel: httpx.Client
) -> None:
    owner = e2e.store.pool_owner()

    def pools_reported() -> dict[str, Any] | None:
        demo, aux = overview_export(panel, "demo"), overview_export(panel, "aux")
        pools = {"demo": demo["cache_pools"], "aux": aux["cache_pools"]}
        wanted = {"demo": usage(e2e, "demo"), "aux": usage(e2e, "aux")}
        for name, reported in pools.items():
            if [p["pool_owner"] for p in reported] != [owner] or reported[0]["used_bytes"] != wanted[name].used_bytes:
                return None
        return {"demo": demo, "aux": aux}

    shown = wait_until(pools_reported, 10, "the mounts' periodic cache reports to reach the panel")
    demo = shown["demo"]
    assert demo["cache_max_bytes"] == DEMO_BUDGET
    assert demo["cache_pools"][0]["budget_bytes"] == DEMO_BUDGET
    assert demo["cache_used_bytes"] == demo["cache_pools"][0]["used_bytes"] <= DEMO_BUDGET
    assert demo["cache_pools"][0]["evictions"] >= 7 * 3
    assert shown["aux"]["cache_pools"][0]["used_bytes"] == 2 * FILE_CHARGE
    assert shown["aux"]["cache_max_bytes"] == AUX_BUDGET

    page = panel.get("/ui/").text
    assert f"{owner}: " in page and "cache budget (per host)" in page


def test_the_overview_counts_content_cache_hits_and_misses(e2e: MountE2E, panel: httpx.Client) -> None:
    # So far (previous test): this process read 10 demo and 2 aux files cold (2 misses each); other
    # processes read 3 demo and 2 aux files from the pool (2 hits each) and one evicted file (2 misses).
    expected = {"demo": (3 * 2, 10 * 2 + 2), "aux": (2 * 2, 2 * 2)}

    def counted() -> bool:
        exports = {name: overview_export(panel, name) for name in expected}
        return all((exports[n]["cache_hits"], exports[n]["cache_misses"]) == hm for n, hm in expected.items())

    wait_until(counted, 10, "hits and misses of every reader to reach the panel")
    cache = panel.get("/api/overview").json()
    assert (cache["cache"]["hits"], cache["cache"]["misses"]) == (10, 26)
    assert cache["cache_hit_rate"] == pytest.approx(10 / 36)

    # A second read in this process: hits, reported by the periodic report of a live mount.
    name = DEMO_FILES[-1]
    before = overview_export(panel, "demo")["cache_hits"]
    _, calls = e2e.agent_ops_during(lambda: read(e2e.path(name)))
    assert calls["read_chunk"] == 0, calls
    wait_until(lambda: overview_export(panel, "demo")["cache_hits"] == before + 2, 10, "the live mount's report")
    assert overview_export(panel, "demo")["cache_misses"] == expected["demo"][1]


def test_a_budget_another_process_set_is_put_back_by_the_mounts_reports(e2e: MountE2E) -> None:
    assert e2e.store.set_prefix_budget(export_cache_prefix("demo"), 2 * DEMO_BUDGET).is_ok()  # the last setter wins
    assert usage(e2e, "demo").budget_bytes == 2 * DEMO_BUDGET
    wait_until(lambda: usage(e2e, "demo").budget_bytes == DEMO_BUDGET, 10, "the fs master's budget to be restored")
