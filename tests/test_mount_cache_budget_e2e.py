"""Each export's ``cache_max_bytes`` is a budget in the host pool.

Real processes: kv master, owner, fs master (budgets in its ``fluxon_fs.cache``), one fs agent serving
``demo`` and ``aux``; ``demo`` and ``aux`` are mounted in this process, other readers run as separate
processes on the same host. What reaches the agent is counted by the agent (``MountE2E.agent_ops``);
what the pool holds is read from the pool owner's accounting (``KvClient.prefix_usage``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from fluxon_core.protocols import PrefixUsage
from fluxon_fs.patcher import export_cache_prefix
from tests.support.mount_e2e import MountE2E, running_mount_e2e

MiB = 1024 * 1024
PAGE = 4096
PIECE_CHARGE = MiB + PAGE  # a 1 MiB piece in the pool: value + encoding, key and trailer, in 4 KiB pages
FILE_BYTES = 2 * MiB  # two pieces
FILE_CHARGE = 2 * PIECE_CHARGE + PAGE  # and the version hint left with the first piece
DEMO_BUDGET = 3 * FILE_CHARGE + 16 * 1024  # three files, not four
AUX_BUDGET = 64 * MiB
DEMO_FILES = [f"budget/f{n}.bin" for n in range(10)]
AUX_FILES = ["warm/a.bin", "warm/b.bin"]


@pytest.fixture(scope="module")
def e2e() -> Iterator[MountE2E]:
    with running_mount_e2e(cache_max_bytes={"demo": DEMO_BUDGET, "aux": AUX_BUDGET}) as env:
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


def usage(e2e: MountE2E, export: str) -> PrefixUsage:
    return e2e.store.prefix_usage().unwrap()[export_cache_prefix(export)]


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def digest(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


def test_reading_more_than_the_budget_keeps_the_export_within_it_and_the_latest_files_warm(
    e2e: MountE2E, contents: dict[str, bytes]
) -> None:
    for name in AUX_FILES:
        assert read(e2e.path(name, "aux")) == contents[f"aux:{name}"]
    aux_before = usage(e2e, "aux")
    assert aux_before == PrefixUsage(AUX_BUDGET, 2 * FILE_CHARGE, 2 * 3, 0)

    for name in DEMO_FILES:  # 10 files of 2 MiB through a budget of three files
        assert read(e2e.path(name)) == contents[f"demo:{name}"]
        assert usage(e2e, "demo").used_bytes <= DEMO_BUDGET, name
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
