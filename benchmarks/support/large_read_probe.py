"""Paired what-if measurements of large reads on a mount: ``python -m benchmarks.support.large_read_probe``.

Runs the ``bench_mount`` stack and, in this process only, alternates variants of one large read
with the local read of the same bytes, reporting for each the median throughput, the median of
the paired ratios to the local read of the same round, and the median CPU milliseconds of this
client, the agent and the owner (``/proc/<pid>/stat``) plus this process's minor page faults —
CPU and faults tell a real gain from load noise on a shared machine:

* warm ``open().read()``: ``join`` (the pieces joined into a fresh object, the code before the
  huge-page result) / ``fresh`` (as is: :mod:`fluxon_fs.patcher.fresh_bytes`) / local;
* warm ``readinto`` one reused buffer / local;
* cold ``open().read()`` of a new file per round: as is / ``noput`` (the pool put switched off) / local.

``--mib 256 --rounds 5`` for the sizes of a ``--full`` run (default 64 MiB, 5 rounds).
"""

from __future__ import annotations

import _io
import argparse
import os
import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import fluxon_fs.patcher.piece_reader as piece_reader
from benchmarks.support.fs_stack import FsStack, fs_stack
from benchmarks.support.mount_diagnostics import Sample
from fluxon_fs.patcher.mount_table import process_mount_table

MIB = 1024 * 1024
_REAL_OPEN = _io.open
_FRESH_FROM = piece_reader.MIN_FRESH_BYTES


def _measured_read(pids: dict[str, int], read: Callable[[], int], expected: int) -> Sample:
    """One measured read (:class:`~benchmarks.support.mount_diagnostics.Sample`), checked to return ``expected`` bytes."""
    sample = Sample(pids, read)
    if sample.result != expected:
        raise AssertionError(f"read {sample.result} bytes, expected {expected}")
    return sample


def _read_all(path: Path, opener: Callable[..., Any] | None = None) -> int:
    # open is looked up at call time: install() replaced builtins.open after this module was imported
    with (opener or open)(path, "rb") as f:
        return len(f.read())


def _variant(name: str) -> None:
    """Switch this process's mount to a variant (module and export attributes only)."""
    piece_reader.MIN_FRESH_BYTES = 1 << 62 if name == "join" else _FRESH_FROM
    for export in process_mount_table().exports().values():
        real = export.__dict__.setdefault("_probe_cache_piece", export.cache_piece)
        export.cache_piece = (lambda *args: None) if name == "noput" else real


def _report(label: str, rounds: list[Sample], local: list[Sample], nbytes: int) -> None:
    wall = statistics.median(r.wall_s for r in rounds)
    paired = statistics.median(b.wall_s / r.wall_s for r, b in zip(rounds, local, strict=True))
    cpu = {name: round(statistics.median(r.cpu_s[name] for r in rounds) * 1000) for name in rounds[0].cpu_s}
    faults = round(statistics.median(r.faults for r in rounds))
    print(f"{label:30s} {nbytes / wall / MIB:7.0f} MiB/s  paired vs local {paired:5.2f}  cpu ms {cpu}  faults {faults}")


def _warm(stack: FsStack, pids: dict[str, int], size: int, rounds: int) -> None:
    local, mounted = stack.export_root / "warm.bin", stack.mount_dir / "warm.bin"
    data = os.urandom(size)
    with _REAL_OPEN(local, "wb") as f:
        f.write(data)
    with open(mounted, "rb") as f:
        if f.read() != data:
            raise AssertionError("the mount read other bytes")
    for export in process_mount_table().exports().values():
        export.piece_cache.flush(30.0)
    buffer = bytearray(size)

    def read_into(path: Path, opener: Callable[..., Any] | None = None) -> int:
        with (opener or open)(path, "rb", buffering=0) as f:
            return int(f.readinto(buffer))

    results: dict[str, list[Sample]] = {}
    for _ in range(rounds):
        results.setdefault("local", []).append(_measured_read(pids, lambda: _read_all(local, _REAL_OPEN), size))
        for name in ("join", "fresh"):
            _variant(name)
            results.setdefault(name, []).append(_measured_read(pids, lambda: _read_all(mounted), size))
        results.setdefault("into local", []).append(_measured_read(pids, lambda: read_into(local, _REAL_OPEN), size))
        results.setdefault("into", []).append(_measured_read(pids, lambda: read_into(mounted), size))
    _variant("as is")
    os.unlink(local)
    _report("warm read() local", results["local"], results["local"], size)
    _report("warm read() join (before)", results["join"], results["local"], size)
    _report("warm read() fresh (as is)", results["fresh"], results["local"], size)
    _report("warm readinto local", results["into local"], results["into local"], size)
    _report("warm readinto", results["into"], results["into local"], size)


def _cold(stack: FsStack, pids: dict[str, int], size: int, rounds: int) -> None:
    data = os.urandom(size)
    results: dict[str, list[Sample]] = {}
    count = 0
    for _ in range(rounds):
        for name in ("as is", "noput"):
            count += 1
            local, mounted = stack.export_root / f"cold-{count}.bin", stack.mount_dir / f"cold-{count}.bin"
            with _REAL_OPEN(local, "wb") as f:
                f.write(data)
            _variant(name)
            results.setdefault(name, []).append(_measured_read(pids, partial(_read_all, mounted), size))
            results.setdefault(f"local {name}", []).append(
                _measured_read(pids, partial(_read_all, local, _REAL_OPEN), size)
            )
            os.unlink(local)
    _variant("as is")
    _report("cold read() as is", results["as is"], results["local as is"], size)
    _report("cold read() no pool put", results["noput"], results["local noput"], size)
    _report("cold read() local", results["local as is"], results["local as is"], size)


def main() -> None:
    """Run the warm and cold scenarios and print one line per variant."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = args.mib * MIB
    print(f"load before {os.getloadavg()}")
    with fs_stack(pool_bytes=f"{max(1024, 4 * args.mib)}MiB") as stack:
        pids = {name: stack.pids[name] for name in ("agent", "owner")}
        _warm(stack, pids, size, args.rounds)
        _cold(stack, pids, size, args.rounds)
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
