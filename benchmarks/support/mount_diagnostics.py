"""What-if measurements behind the mount benchmark's misses: ``python -m benchmarks.support.mount_diagnostics``.

Each scenario runs on the same stack as ``bench_mount`` with the mount's piece cache or I/O pool
swapped *in this process only* (no library file changes) for variants that stand for a proposed
fix, and reports wall time (best and median of the rounds) and the CPU seconds every role process
spent (from ``/proc/<pid>/stat``), so a gain can be told apart from load noise:

* cold large read: as is / no cluster-wide cache lookup before fetching a piece / no pool put /
  no caching at all;
* cold small files: as is / no pool put (the puts run in the background since issue 12: this
  shows what they still cost the reader);
* write: as is / without the per-piece cache deletes at close;
* warm read: pieces through the I/O pool (as is) / served inline.

Run it after a fix to check that the gain shows up in the real code.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fluxon_fs.patcher.piece_reader as piece_reader
from benchmarks.support.fs_stack import FsStack, fs_stack
from fluxon_fs.patcher.mount_table import process_mount_table
from fluxon_fs.patcher.mounted_export import MountedExport

MIB = 1024 * 1024
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class Sample:
    """Wall seconds, per-process CPU seconds and this process's minor page faults of one measured action."""

    def __init__(self, pids: dict[str, int], action: Callable[[], object]) -> None:
        pids = {**pids, "client": os.getpid()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        started = time.perf_counter()
        self.result = action()
        self.wall_s = time.perf_counter() - started
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        self.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}


class _Inline:
    """An executor that runs each task in the submitting thread."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)
        return future


def _export() -> MountedExport:
    return next(iter(process_mount_table().exports().values()))


@contextmanager
def _swapped(owner: Any, **replacements: Any) -> Iterator[None]:
    saved = {name: getattr(owner, name) for name in replacements}
    for name, value in replacements.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(owner, name, value)


def _report(title: str, results: dict[str, list[Sample]], per: Callable[[float], str]) -> None:
    print(f"\n{title}  (load {'/'.join(f'{v:.1f}' for v in os.getloadavg())})")
    for name, samples in results.items():
        best = min(samples, key=lambda s: s.wall_s)
        median = statistics.median(s.wall_s for s in samples)
        cpu = " ".join(f"{k}={v:.2f}" for k, v in best.cpu_s.items())
        print(f"  {name:24s} best {per(best.wall_s):>14s}  median {per(median):>14s}  cpu s (best round): {cpu}")


def cold_large(stack: FsStack, size: int, rounds: int) -> None:
    """A new file each round, read once through the mount under each variant; local read for reference."""
    cache = _export().piece_cache
    variants: dict[str, dict[str, Any]] = {
        "as is": {},
        "no lookup": {"get": lambda key: None},
        "no put": {"put": lambda key, data: None},
        "no caching": {"get": lambda key: None, "put": lambda key, data: None},
    }
    data = os.urandom(size)
    results: dict[str, list[Sample]] = {name: [] for name in [*variants, "local read"]}
    serial = 0
    for _ in range(rounds):
        for name, swap in variants.items():
            serial += 1
            local = stack.export_root / f"diag-{serial}.bin"
            with open(local, "wb") as f:
                f.write(data)
            with _swapped(cache, **swap):
                results[name].append(Sample(stack.pids, (stack.mount_dir / local.name).read_bytes))
            cache.flush(30)  # the next variant does not pay for this one's queued puts
            results["local read"].append(Sample(stack.pids, local.read_bytes))
            os.unlink(local)
    _report(f"cold read of a {size // MIB} MiB file", results, lambda s: f"{size / s / MIB:.0f} MiB/s")


def cold_small(stack: FsStack, count: int, rounds: int) -> None:
    """A new directory of 4 KiB files per variant and round, each file read once."""
    cache = _export().piece_cache
    variants: dict[str, dict[str, Any]] = {
        "as is": {},
        "no put": {"put": lambda key, data: None},
    }
    results: dict[str, list[Sample]] = {name: [] for name in variants}
    serial = 0
    for _ in range(rounds):
        for name, swap in variants.items():
            serial += 1
            tree = stack.export_root / f"diag-small-{serial}"
            tree.mkdir()
            for i in range(count):
                (tree / f"f{i}").write_bytes(i.to_bytes(4, "little") * 1024)
            paths = [stack.mount_dir / tree.name / f"f{i}" for i in range(count)]

            def read_all(paths: list[Path] = paths) -> None:
                for path in paths:
                    path.read_bytes()

            with _swapped(cache, **swap):
                results[name].append(Sample(stack.pids, read_all))
            cache.flush(30)
    _report(f"cold read of {count} files of 4 KiB", results, lambda s: f"{s / count * 1e6:.0f} us/file")


def write(stack: FsStack, size: int, rounds: int) -> None:
    """Write a file through the mount in 1 MiB calls, with and without the piece deletes at close."""
    cache = _export().piece_cache
    data = memoryview(os.urandom(size))
    variants: dict[str, dict[str, Any]] = {"as is": {}, "no piece deletes": {"delete": lambda key: None}}
    results: dict[str, list[Sample]] = {name: [] for name in variants}

    def write_once() -> None:
        with open(stack.mount_dir / "diag-write.bin", "wb") as f:
            for start in range(0, size, MIB):
                f.write(data[start : start + MIB])

    for _ in range(rounds):
        for name, swap in variants.items():
            with _swapped(cache, **swap):
                results[name].append(Sample(stack.pids, write_once))
            os.unlink(stack.export_root / "diag-write.bin")
    _report(f"write of {size // MIB} MiB", results, lambda s: f"{size / s / MIB:.0f} MiB/s")


def warm(stack: FsStack, size: int, rounds: int) -> None:
    """A pooled file read whole, with pieces through the I/O pool (as is) or fetched inline."""
    local = stack.export_root / "diag-warm.bin"
    local.write_bytes(os.urandom(size))
    mounted = stack.mount_dir / local.name
    mounted.read_bytes()
    variants: dict[str, dict[str, Any]] = {"as is": {}, "inline pieces": {"io_pool": lambda: _Inline()}}
    results: dict[str, list[Sample]] = {name: [] for name in [*variants, "local read"]}
    for _ in range(rounds):
        for name, swap in variants.items():
            with _swapped(piece_reader, **swap):
                results[name].append(Sample(stack.pids, mounted.read_bytes))
        results["local read"].append(Sample(stack.pids, local.read_bytes))
    os.unlink(local)
    _report(f"warm read of a {size // MIB} MiB file", results, lambda s: f"{size / s / MIB:.0f} MiB/s")


def main() -> None:
    """Run every scenario and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=64, help="large file size (default 64)")
    parser.add_argument("--files", type=int, default=300, help="small files per round (default 300)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * MIB
    scenarios = [
        lambda stack: cold_large(stack, size, args.rounds),
        lambda stack: cold_small(stack, args.files, args.rounds),
        lambda stack: write(stack, size, args.rounds),
        lambda stack: warm(stack, size, args.rounds),
    ]
    with fs_stack(pool_bytes=f"{max(1024, 8 * args.size_mib * args.rounds)}MiB") as stack:
        for scenario in scenarios:
            scenario(stack)
            problem = stack.pool_problem()
            if problem:
                print(f"  ^ INVALID: the client lost the host pool during this scenario ({problem}); new client")
                stack.reconnect()


if __name__ == "__main__":
    main()
