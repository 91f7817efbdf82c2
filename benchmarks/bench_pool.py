"""Shared-memory pool benchmarks: reads by an external reader process against memcpy, side by side.

The owner runs in this process and fills a pool under ``/dev/shm``; a reader runs in a child
process (as external KV clients do) and, in alternating rounds, measures:

* throughput: get each value and copy it into one reused ``bytearray`` — *cold* (a freshly
  attached reader: open + map + page faults per value) and *warm* (mappings cached by the
  reader) — and ``read_into`` the same buffer from a fresh reader (``preadv``, no mapping),
  against copying the same number of bytes from ``bytes`` objects (memcpy);
* small-value latency: a warm ``get`` of 1 KiB values against one ``os.stat`` of a tmpfs file,
  and a cold ``get`` against ``open`` + ``read`` + ``close`` of the same file.

The owner's ``put`` of 1 MiB values is compared with writing the same bytes to new tmpfs files.
Figures are medians over rounds. ``python -m benchmarks.bench_pool [--full]`` prints the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.rows import result_row
from fluxon_core.config.units import ByteSize
from fluxon_plugins.shm_cache import ShmCacheConfig, ShmPoolOwner, ShmPoolReader
from fluxon_plugins.shm_cache.layout import encode_key, key_digest

MIB = 1024 * 1024
SMALL = 1024
THROUGHPUT_TARGET = 0.8
WARM_LATENCY_TARGET = 1.0
COLD_LATENCY_TARGET = 2.0


def _plan(quick: bool) -> dict[str, Any]:
    total = 64 * MIB if quick else 256 * MIB
    return {
        "sets": {"1 MiB": [MIB, total // MIB], "64 MiB": [64 * MIB, total // (64 * MIB)]},
        "small_count": 1000 if quick else 5000,
        "rounds": 3 if quick else 7,
    }


def _keys(label: str, count: int) -> list[str]:
    return [f"/fluxon_fs_cache/bench/{label.replace(' ', '')}/file{i}.bin@1-2/0" for i in range(count)]


# -- child: the external reader ----------------------------------------------------------------


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _measure_reader(path: str, plan: dict[str, Any]) -> dict[str, Any]:
    """Run in the reader process: alternate baseline and pool passes; medians in seconds per pass."""
    config = ShmCacheConfig(path=path, role="reader", view_cache_bytes=ByteSize(2048 * MIB), view_cache_entries=8192)
    out: dict[str, Any] = {}
    for label, (size, count) in plan["sets"].items():
        dst = bytearray(size)  # one reused buffer the size of a value
        keys = _keys(label, count)
        sources = [bytes([i % 251 + 1]) * size for i in range(count)]
        base: list[float] = []
        cold: list[float] = []
        warm: list[float] = []
        into: list[float] = []

        def copy_sources(sources: list[bytes] = sources, dst: bytearray = dst) -> None:
            for src in sources:
                dst[:] = src

        for _ in range(plan["rounds"]):
            base.append(_timed(copy_sources))
            reader = ShmPoolReader(config)

            def copy_pool(reader: ShmPoolReader = reader, keys: list[str] = keys, dst: bytearray = dst) -> None:
                for key in keys:
                    view = reader.get(key)
                    assert view is not None, key
                    dst[:] = view

            cold.append(_timed(copy_pool))
            warm.append(_timed(copy_pool))
            reader.close()
            reader = ShmPoolReader(config)

            def read_into_pool(reader: ShmPoolReader = reader, keys: list[str] = keys, dst: bytearray = dst) -> None:
                for key in keys:
                    assert reader.read_into(key, dst) is not None, key

            into.append(_timed(read_into_pool))
            reader.close()
        out[label] = {
            "bytes": size * count,
            "memcpy_s": statistics.median(base),
            "cold_s": statistics.median(cold),
            "warm_s": statistics.median(warm),
            "read_into_s": statistics.median(into),
        }
    keys = _keys("small", plan["small_count"])
    paths = [os.path.join(path, "values", key_digest(encode_key(k)).hex()) for k in keys]
    stat_s, open_s, cold_s, warm_s = [], [], [], []
    for _ in range(plan["rounds"]):
        stat_s.append(_timed(lambda: [os.stat(p) for p in paths]))

        def open_read_close() -> None:
            for p in paths:
                fd = os.open(p, os.O_RDONLY)
                os.read(fd, 1 << 16)
                os.close(fd)

        open_s.append(_timed(open_read_close))
        reader = ShmPoolReader(config)

        def get_all(reader: ShmPoolReader = reader) -> None:
            for key in keys:
                reader.get(key)

        cold_s.append(_timed(get_all))
        warm_s.append(_timed(get_all))
        reader.close()
    n = len(keys)
    out["small"] = {
        "stat_us": statistics.median(stat_s) / n * 1e6,
        "open_read_us": statistics.median(open_s) / n * 1e6,
        "cold_us": statistics.median(cold_s) / n * 1e6,
        "warm_us": statistics.median(warm_s) / n * 1e6,
    }
    return out


# -- parent: the owner ---------------------------------------------------------------------------


def _measure_puts(owner: ShmPoolOwner, scratch: str, rounds: int, count: int) -> tuple[float, float]:
    """Median seconds to put ``count`` 1 MiB values vs write them to new tmpfs files.

    The two alternate which goes first, since each runs right after the other's pages were freed.
    """
    data = [bytes([i % 251 + 1]) * MIB for i in range(count)]
    names = [os.path.join(scratch, f"f{i}") for i in range(count)]
    keys = _keys("put", count)

    def write_files() -> None:
        for name, value in zip(names, data, strict=True):
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, value)
            os.close(fd)

    def remove_files() -> None:
        for name in names:
            os.unlink(name)

    def put_all() -> None:
        for key, value in zip(keys, data, strict=True):
            owner.put(key, [value])

    def delete_all() -> None:
        for key in keys:
            owner.delete(key)

    pool_s: list[float] = []
    file_s: list[float] = []
    steps = [(write_files, remove_files, file_s), (put_all, delete_all, pool_s)]
    for turn in range(rounds):
        for measure, undo, into in steps if turn % 2 == 0 else steps[::-1]:
            into.append(_timed(measure))
            undo()
    return statistics.median(pool_s), statistics.median(file_s)


def run(quick: bool) -> list[dict[str, Any]]:
    """Fill a pool, measure an external reader and the owner's puts; one row per scenario."""
    plan = _plan(quick)
    root = tempfile.mkdtemp(prefix="fxbench", dir="/dev/shm")
    path = os.path.join(root, "pool")
    total = sum(size * count for size, count in plan["sets"].values())
    rows: list[dict[str, Any]] = []
    try:
        with ShmPoolOwner(ShmCacheConfig(path=path, capacity=total + 256 * MIB)) as owner:
            for label, (size, count) in plan["sets"].items():
                for i, key in enumerate(_keys(label, count)):
                    owner.put(key, [bytes([i % 251 + 1]) * size])
            for key in _keys("small", plan["small_count"]):
                owner.put(key, [b"s" * SMALL])
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.bench_pool", "reader", path, json.dumps(plan)],
                cwd=Path(__file__).resolve().parents[1],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            scratch = os.path.join(root, "files")
            os.makedirs(scratch)
            put_s, write_s = _measure_puts(owner, scratch, plan["rounds"], 32 if quick else 128)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    for label in plan["sets"]:
        figures = measured[label]
        memcpy_gbs = figures["bytes"] / figures["memcpy_s"] / 1e9
        phases = {
            "cold": "get + copy, fresh reader: open+map+faults per value",
            "warm": "get + copy, mappings cached by the reader",
            "read_into": "read_into, fresh reader: preadv into the buffer, no mapping",
        }
        for phase, what in phases.items():
            gbs = figures["bytes"] / figures[f"{phase}_s"] / 1e9
            rows.append(
                result_row(
                    f"pool read {label} values, external reader, {phase}",
                    gbs,
                    memcpy_gbs,
                    "GB/s",
                    f">= {THROUGHPUT_TARGET}x memcpy",
                    gbs >= THROUGHPUT_TARGET * memcpy_gbs,
                    f"{figures['bytes'] // MIB} MiB copied into a reused bytearray; {what}",
                )
            )
    small = measured["small"]
    rows.append(
        result_row(
            "pool get 1 KiB, warm (cached, pool unchanged)",
            small["warm_us"],
            small["stat_us"],
            "us/op",
            f"<= {WARM_LATENCY_TARGET}x os.stat",
            small["warm_us"] <= WARM_LATENCY_TARGET * small["stat_us"],
            "no syscall: one read of the control block's change counter",
        )
    )
    rows.append(
        result_row(
            "pool get 1 KiB, cold (fresh reader)",
            small["cold_us"],
            small["open_read_us"],
            "us/op",
            f"<= {COLD_LATENCY_TARGET}x open+read+close",
            small["cold_us"] <= COLD_LATENCY_TARGET * small["open_read_us"],
            "sha256 name, open, fstat, read, close, key check",
        )
    )
    put_gbs, write_gbs = MIB * (32 if quick else 128) / put_s / 1e9, MIB * (32 if quick else 128) / write_s / 1e9
    rows.append(
        result_row(
            "owner put 1 MiB values",
            put_gbs,
            write_gbs,
            "GB/s",
            f">= {THROUGHPUT_TARGET}x tmpfs file write",
            put_gbs >= THROUGHPUT_TARGET * write_gbs,
            "O_TMPFILE write + link + rename vs open/write/close of new files",
        )
    )
    return rows


def main(argv: list[str]) -> int:
    """``reader PATH PLAN`` (internal) or ``[--full]`` to print the rows."""
    if argv[:1] == ["reader"]:
        print(json.dumps(_measure_reader(argv[1], json.loads(argv[2]))), flush=True)
        return 0
    for row in run(quick="--full" not in argv):
        print(
            f"{row['scenario']:<52} {row['fluxon']:>9} {row['baseline']:>9} {row['unit']:<6} "
            f"x{row['ratio']:<6} {'met' if row['met'] else 'MISSED':<6} {row['target']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
