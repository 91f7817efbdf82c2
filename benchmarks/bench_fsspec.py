"""``fluxon://`` benchmarks: fsspec reads side by side with the same reads through a mount, one run.

The stack of :mod:`benchmarks.support.fs_stack` (all on this host) serves the export; this process
has it mounted and also opens it as ``fluxon://`` on a second KV client of the same host pool, the
way a pandas or dask process next to a mounting one would. Both sides go through the same pieces
and the same agent, so the ratio is the cost of the fsspec layer (and of nothing else):

* warm 64 MiB file: ``fs.cat_file`` vs ``open().read()`` on the mount, content in the host pool;
* cold 64 MiB file: a new file per side and round (content not in the pool, metadata unknown);
* 1000 files of 4 KiB, cold: a new directory per side and round, each file read once;
* the same 1000 files again, warm (pieces in the pool; each open revalidates with one `stat`).

Each round measures both sides back to back, the side going first alternating from round to round;
figures are medians of the rounds (see
:mod:`benchmarks.bench_mount` for the row shapes). ``python -m benchmarks.bench_fsspec [--full]``
prints the rows.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fsspec

from benchmarks.bench_mount import (
    MIB,
    SMALL_FILE_BYTES,
    Pair,
    _checked,
    _latency_row,
    _load,
    _read_all,
    _small_tree,
    _throughput_row,
    _timed,
    _write_local,
)
from benchmarks.support.fs_stack import FsStack, fs_stack
from tests.support.fs_cluster import ADMIN

THROUGHPUT_TARGET = 0.9
"""fsspec reads at least this fraction of the mount's throughput..."""
LATENCY_TARGET = 1.1
"""...and a small file costs at most this much of the mount's time."""


def _plan(quick: bool) -> dict[str, int]:
    return {
        "big_bytes": 64 * MIB,
        "small_files": 1000,
        "rounds": 4 if quick else 8,
        "small_rounds": 4 if quick else 8,
        "pool": 1024,
    }


def _paired(index: int, fsspec_side: Callable[[], object], mount_side: Callable[[], object]) -> tuple[float, float]:
    """Seconds of each side, the side that goes first alternating with the round."""
    if index % 2 == 0:
        fsspec_s = _timed(fsspec_side)
        return fsspec_s, _timed(mount_side)
    mount_s = _timed(mount_side)
    return _timed(fsspec_side), mount_s


def _url(stack: FsStack, relpath: str) -> str:
    return f"fluxon://{stack.export_name}/{relpath}"


def _warm_big(stack: FsStack, fs: Any, plan: dict[str, int]) -> dict[str, Any]:
    size = plan["big_bytes"]
    data = os.urandom(size)
    _write_local(stack.export_root / "warm.bin", data)
    mounted, url = stack.mount_dir / "warm.bin", _url(stack, "warm.bin")
    _checked(_read_all(mounted), size, str(mounted))  # fills the pool
    pair = Pair()
    for index in range(plan["rounds"]):
        pair.add(
            *_paired(
                index,
                lambda: _checked(len(fs.cat_file(url)), size, url),
                lambda: _checked(_read_all(mounted), size, str(mounted)),
            )
        )
    os.unlink(stack.export_root / "warm.bin")
    return _throughput_row(
        f"fsspec warm read {size // MIB} MiB file, cat_file vs mount",
        pair,
        size,
        THROUGHPUT_TARGET,
        "content in the host pool; baseline: open().read() of the same file through the mount",
    )


def _cold_big(stack: FsStack, fs: Any, plan: dict[str, int]) -> dict[str, Any]:
    size = plan["big_bytes"]
    data = os.urandom(size)
    pair = Pair()
    for index in range(plan["rounds"]):
        for side in ("fsspec", "mount"):
            _write_local(stack.export_root / f"cold-{side}-{index}.bin", data)
        url, mounted = _url(stack, f"cold-fsspec-{index}.bin"), stack.mount_dir / f"cold-mount-{index}.bin"
        pair.add(
            *_paired(
                index,
                lambda: _checked(len(fs.cat_file(url)), size, url),  # noqa: B023
                lambda: _checked(_read_all(mounted), size, str(mounted)),  # noqa: B023
            )
        )
        for side in ("fsspec", "mount"):
            os.unlink(stack.export_root / f"cold-{side}-{index}.bin")
    return _throughput_row(
        f"fsspec cold read {size // MIB} MiB file, cat_file vs mount",
        pair,
        size,
        THROUGHPUT_TARGET,
        "a new file per side and round (agent over loopback, pieces put into the pool); "
        "baseline: open().read() through the mount",
    )


def _read_mounted(paths: list[Path]) -> None:
    for path in paths:
        _checked(_read_all(path), SMALL_FILE_BYTES, str(path))


def _read_fsspec(fs: Any, urls: list[str]) -> None:
    for url in urls:
        _checked(len(fs.cat_file(url)), SMALL_FILE_BYTES, url)


def _small_files(stack: FsStack, fs: Any, plan: dict[str, int]) -> list[dict[str, Any]]:
    count = plan["small_files"]
    cold, warm = Pair(), Pair()
    for index in range(plan["small_rounds"]):
        trees = {side: f"small-{side}-{index}" for side in ("fsspec", "mount")}
        names = {side: _small_tree(stack.export_root / tree, count) for side, tree in trees.items()}
        urls = [_url(stack, f"{trees['fsspec']}/{name}") for name in names["fsspec"]]
        mounted = [stack.mount_dir / trees["mount"] / name for name in names["mount"]]
        for pair in (cold, warm):  # the same files twice: cold, then warm
            fsspec_s, mount_s = _paired(index, lambda: _read_fsspec(fs, urls), lambda: _read_mounted(mounted))  # noqa: B023
            pair.add(fsspec_s / count, mount_s / count)
        for tree in trees.values():
            shutil.rmtree(stack.export_root / tree)
    what = f"{count} files of 4 KiB, each read whole (fsspec: cat_file; mount: open+read+close)"
    return [
        _latency_row(
            f"fsspec cold read {count} x 4 KiB files vs mount",
            cold,
            "median",
            LATENCY_TARGET,
            f"<= {LATENCY_TARGET:g}x latency",
            f"{what}; a new directory per side and round",
        ),
        _latency_row(
            f"fsspec warm read {count} x 4 KiB files vs mount",
            warm,
            "median",
            LATENCY_TARGET,
            f"<= {LATENCY_TARGET:g}x latency",
            f"{what}; the same files again right after: pieces in the pool, one stat per open (the cold pass outlasts stale_window_ms)",
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Start the stack, open it as ``fluxon://`` too, measure each scenario; one row per scenario."""
    plan = _plan(quick)
    load_before = _load()
    with fs_stack(pool_bytes=f"{plan['pool']}MiB") as stack:
        fs = fsspec.filesystem(
            "fluxon", config=stack.client_config("bench-fsspec"), username=ADMIN[0], password=ADMIN[1]
        )
        try:
            rows = [_warm_big(stack, fs, plan), _cold_big(stack, fs, plan), *_small_files(stack, fs, plan)]
            problem = stack.pool_problem()
        finally:
            fs.close()
    load = f"load avg {load_before} before, {_load()} after, {os.cpu_count()} cpus"
    for row in rows:
        if problem:
            row["met"] = False
            row["note"] = f"INVALID: the mount's client lost the host pool ({problem}); {row['note']}"
        row["note"] = f"{row['note']}; {load}"
    return rows


if __name__ == "__main__":
    for result in run(quick="--full" not in sys.argv):
        print(result)
