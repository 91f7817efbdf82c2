"""``fluxon://`` benchmarks: fsspec reads side by side with the same reads through a mount, one run.

The stack of :mod:`benchmarks.support.fs_stack` (all on this host) serves the export; this process
has it mounted and also opens it as ``fluxon://`` on a second KV client of the same host pool, the
way a pandas or dask process next to a mounting one would. Both sides go through the same pieces
and the same agent, so the ratio is the cost of the fsspec layer (and of nothing else):

* warm 64 MiB file: ``fs.cat_file`` vs ``open().read()`` on the mount, content in the host pool;
* cold 64 MiB file: a new file per side and round (content not in the pool, metadata unknown);
* 1000 files of 4 KiB, cold: a new directory per side and round, each file read once;
* the same 1000 files again, warm (pieces in the pool; each open revalidates with one `stat`).

The scenarios and the pairing of rounds are :mod:`benchmarks.support.versus_mount`'s; figures are
medians of the rounds. ``python -m benchmarks.bench_fsspec [--full]``
prints the rows.
"""

from __future__ import annotations

import sys
from typing import Any

import fsspec

from benchmarks.bench_mount import MIB, _load
from benchmarks.support.fs_stack import fs_stack
from benchmarks.support.versus_mount import cold_big_row, small_file_rows, warm_big_row, with_conditions
from tests.support.fs_cluster import ADMIN

THROUGHPUT_TARGET = 0.9
"""fsspec reads at least this fraction of the mount's throughput..."""
LATENCY_TARGET = 1.1
"""...and a small file costs at most this much of the mount's time."""


def _plan(quick: bool) -> dict[str, int]:
    return {"big_bytes": 64 * MIB, "small_files": 1000, "rounds": 4 if quick else 8, "pool": 1024}


def run(quick: bool) -> list[dict[str, Any]]:
    """Start the stack, open it as ``fluxon://`` too, measure each scenario; one row per scenario."""
    plan = _plan(quick)
    load_before = _load()
    with fs_stack(pool_bytes=f"{plan['pool']}MiB") as stack:
        fs = fsspec.filesystem(
            "fluxon", config=stack.client_config("bench-fsspec"), username=ADMIN[0], password=ADMIN[1]
        )

        def read(relpath: str) -> int:
            return len(fs.cat_file(f"fluxon://{stack.export_name}/{relpath}"))

        big = {"size": plan["big_bytes"], "rounds": plan["rounds"], "target": THROUGHPUT_TARGET}
        try:
            rows = [
                warm_big_row(stack, read, title="fsspec cat_file vs mount, read", **big),
                cold_big_row(stack, read, title="fsspec cat_file vs mount, read", **big),
                *small_file_rows(
                    stack,
                    read,
                    title="fsspec cat_file vs mount, read",
                    count=plan["small_files"],
                    rounds=plan["rounds"],
                    target=LATENCY_TARGET,
                    what="fsspec: cat_file",
                ),
            ]
            problem = stack.pool_problem()
        finally:
            fs.close()
    return with_conditions(rows, load_before, problem)


if __name__ == "__main__":
    for result in run(quick="--full" not in sys.argv):
        print(result)
