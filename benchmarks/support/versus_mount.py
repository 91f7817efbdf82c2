"""Another reader of an export (``fluxon://``, the S3 gateway) measured against the same reads through a mount.

Both sides run on one stack in the same run, back to back in each round, the side going first
alternating from round to round; every ratio is "the other reader / the mount":

* a warm big file (content in the host pool, read once through the mount first);
* a cold big file (a new file per side and round: content not in the pool, metadata unknown);
* many small files, cold (a new directory per side and round), then the same files again, warm.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

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
from benchmarks.support.fs_stack import FsStack

Reader = Callable[[str], int]
"""Reads an export-relative path whole; returns how many bytes it got."""

MOUNT_BASELINE = "baseline: open().read() of the same file through the mount"


def paired(index: int, other: Callable[[], object], mount: Callable[[], object]) -> tuple[float, float]:
    """Seconds of each side (other, mount), the side that goes first alternating with the round."""
    if index % 2 == 0:
        other_s = _timed(other)
        return other_s, _timed(mount)
    mount_s = _timed(mount)
    return _timed(other), mount_s


def _through_mount(stack: FsStack, relpath: str, size: int) -> Callable[[], object]:
    path = stack.mount_dir / relpath
    return lambda: _checked(_read_all(path), size, str(path))


def _through(read: Reader, relpath: str, size: int) -> Callable[[], object]:
    return lambda: _checked(read(relpath), size, relpath)


def warm_big_row(stack: FsStack, read: Reader, *, title: str, size: int, rounds: int, target: float) -> dict[str, Any]:
    """Throughput of a ``size``-byte file whose pieces are in the host pool."""
    _write_local(stack.export_root / "warm.bin", os.urandom(size))
    _through_mount(stack, "warm.bin", size)()  # fills the pool
    _through(read, "warm.bin", size)()
    pair = Pair()
    for index in range(rounds):
        pair.add(*paired(index, _through(read, "warm.bin", size), _through_mount(stack, "warm.bin", size)))
    os.unlink(stack.export_root / "warm.bin")
    return _throughput_row(
        f"{title} {size // MIB} MiB, warm", pair, size, target, f"content in the host pool; {MOUNT_BASELINE}"
    )


def cold_big_row(stack: FsStack, read: Reader, *, title: str, size: int, rounds: int, target: float) -> dict[str, Any]:
    """Throughput of a ``size``-byte file nobody read yet (a new file per side and round)."""
    data = os.urandom(size)
    pair = Pair()
    for index in range(rounds):
        names = {side: f"cold-{side}-{index}.bin" for side in ("other", "mount")}
        for name in names.values():
            _write_local(stack.export_root / name, data)
        pair.add(*paired(index, _through(read, names["other"], size), _through_mount(stack, names["mount"], size)))
        for name in names.values():
            os.unlink(stack.export_root / name)
    return _throughput_row(
        f"{title} {size // MIB} MiB, cold",
        pair,
        size,
        target,
        f"a new file per side and round (agent over loopback, pieces put into the pool); {MOUNT_BASELINE}",
    )


def small_file_rows(
    stack: FsStack,
    read: Reader,
    *,
    title: str,
    count: int,
    rounds: int,
    target: float,
    what: str,
    after_round: Callable[[list[str]], None] | None = None,
    warm_note: Callable[[], str] = lambda: "",
) -> list[dict[str, Any]]:
    """Latency per file of ``count`` 4 KiB files read whole, cold and then warm.

    ``after_round`` gets the other reader's paths of the round (for an extra measurement of the
    caller's); ``warm_note`` is called once all rounds ran and adds to the warm row's note.
    """
    cold, warm = Pair(), Pair()
    for index in range(rounds):
        trees = {side: f"small-{side}-{index}" for side in ("other", "mount")}
        names = {side: _small_tree(stack.export_root / tree, count) for side, tree in trees.items()}
        relpaths = [f"{trees['other']}/{name}" for name in names["other"]]
        mounted = [f"{trees['mount']}/{name}" for name in names["mount"]]

        def read_other(relpaths: list[str] = relpaths) -> None:
            for relpath in relpaths:
                _checked(read(relpath), SMALL_FILE_BYTES, relpath)

        def read_mounted(relpaths: list[str] = mounted) -> None:
            for relpath in relpaths:
                _through_mount(stack, relpath, SMALL_FILE_BYTES)()

        for pair in (cold, warm):  # the same files twice: cold, then warm
            other_s, mount_s = paired(index, read_other, read_mounted)
            pair.add(other_s / count, mount_s / count)
        if after_round is not None:
            after_round(relpaths)
        for tree in trees.values():
            shutil.rmtree(stack.export_root / tree)
    described = f"{count} files of 4 KiB, each read whole ({what}; mount: open+read+close)"
    extra = warm_note()
    return [
        _latency_row(
            f"{title} {count} x 4 KiB, cold",
            cold,
            "median",
            target,
            f"<= {target:g}x latency",
            f"{described}; a new directory per side and round",
        ),
        _latency_row(
            f"{title} {count} x 4 KiB, warm",
            warm,
            "median",
            target,
            f"<= {target:g}x latency",
            f"{described}; the same files again right after: pieces in the pool, one stat per open"
            + (f"; {extra}" if extra else ""),
        ),
    ]


def with_conditions(rows: list[dict[str, Any]], load_before: str, pool_problem: str | None) -> list[dict[str, Any]]:
    """``rows`` with the load average in each note, marked invalid when the mount lost its host pool."""
    load = f"load avg {load_before} before, {_load()} after, {os.cpu_count()} cpus"
    for row in rows:
        if pool_problem:
            row["met"] = False
            row["note"] = f"INVALID: the mount's client lost the host pool ({pool_problem}); {row['note']}"
        row["note"] = f"{row['note']}; {load}"
    return rows
