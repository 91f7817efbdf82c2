"""Pre-scan benchmark: ``transfer_check_local_blocking`` against ``find -printf`` and ``rclone size``.

The tree: 100 000 files with ``--full`` (25 000 with ``--quick``), 0-4 KiB, 100 per directory, in
four equal parts. All three tools read the same metadata of the whole tree (path, size, mtime, mode;
``rclone size`` sums sizes): ``find ROOT -printf '%P %s %T@ %m\\n'`` to /dev/null, ``rclone size
ROOT``, and the pre-scan (``checker_concurrency_limit=4``, the guide's value) into a fresh sqlite
state store, called in-process. Rounds alternate the tools with a warm page cache; each figure is
the best round (least disturbed by other load on a shared machine). ratio = Fluxon / baseline
speed in files/s, target ≥ 0.8.

What each prints or keeps: ``find`` formats one line per entry (files, directories, links) and
writes it to /dev/null; ``rclone size`` only sums; the pre-scan records files and directories
(relpath, kind, size, mtime_ns, mode), encodes them as JSON batches and persists them (sqlite, WAL)
with the scan's epoch record before and after: its figure includes opening the store and every
write. Its walk forks up to ``checker_concurrency_limit`` worker processes (no more than the CPUs
it may use); their CPU time is in the note (``getrusage`` of self and children).

Memory: tracemalloc's peak while pre-scanning the whole tree against the peak for one quarter of
it; the ratio stays near 1 when memory is bounded by the open batch rather than by the tree. It
traces the calling process; the note adds the peak RSS of a separate process doing the whole
pre-scan and of the largest of its worker processes.

``python -m benchmarks.bench_prescan [--full]`` prints the rows.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fluxon_fs.transfer.prescan import transfer_check_local_blocking

SPEED_TARGET = 0.8
MEMORY_TARGET = 1.5
FILES_PER_DIR = 100
PARTS = 4
CONCURRENCY = 4
BATCH_READY_BYTES = 8 * 1024**3
MIB = 1024 * 1024


def _plan(quick: bool) -> dict[str, int]:
    return {"files": 25_000 if quick else 100_000, "rounds": 3 if quick else 5}


def make_tree(root: Path, files: int) -> None:
    """``root/part<p>/d<n>/f<i>.dat``: ``files`` files of 0-4 KiB, FILES_PER_DIR per directory."""
    payload = os.urandom(4096)
    current = None
    for i in range(files):
        directory = root / f"part{i * PARTS // files}" / f"d{i // FILES_PER_DIR:05d}"
        if directory != current:
            directory.mkdir(parents=True)
            current = directory
        fd = os.open(directory / f"f{i:07d}.dat", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, payload[: i % 4097])
        finally:
            os.close(fd)


def _store(work: Path, label: str) -> dict[str, Any]:
    path = work / f"state-{label}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return {"kind": "sqlite", "sqlite": {"path": str(path), "key_prefix": "/bench/"}}


def _prescan(root: Path, store: dict[str, Any]) -> int:
    summary = transfer_check_local_blocking(
        str(root), store, batch_ready_bytes=BATCH_READY_BYTES, checker_concurrency_limit=CONCURRENCY
    )
    return summary.file_count


def _command(argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed with {result.returncode}: {result.stderr[-2000:]}")

    return run


def _traced_peak(action: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


_RSS_CHILD = """
import resource, sys
from benchmarks.bench_prescan import _prescan
from pathlib import Path
_prescan(Path(sys.argv[1]), {"kind": "sqlite", "sqlite": {"path": sys.argv[2], "key_prefix": "/bench/"}})
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _child_rss_mib(root: Path, work: Path) -> tuple[float, float]:
    """Peak RSS of a process pre-scanning ``root``, and of the largest of its worker processes (MiB)."""
    result = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD, str(root), str(work / "state-rss.db")],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    own, workers = result.stdout.split()[-2:]
    return int(own) / 1024, int(workers) / 1024


def _cpu_s() -> float:
    """CPU time of this process and of its reaped children (the pre-scan's workers, the baselines)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(quick: bool) -> list[dict[str, Any]]:
    """Time the three scanners in alternating rounds; compare memory for the whole tree and a quarter."""
    plan = _plan(quick)
    files = plan["files"]
    for tool in ("find", "rclone"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed")
    work = Path(tempfile.mkdtemp(prefix="fluxon-bench-prescan-", dir="/tmp"))
    try:
        root = work / "tree"
        make_tree(root, files)
        scanned: list[int] = []
        tools: dict[str, Callable[[], None]] = {
            "fluxon": lambda: scanned.append(_prescan(root, _store(work, "speed"))),
            "find": _command(["find", str(root), "-printf", "%P %s %T@ %m\\n"]),
            "rclone": _command(["rclone", "size", "--config", "/dev/null", str(root)]),
        }
        times: dict[str, list[float]] = {name: [] for name in tools}
        cpu: dict[str, list[float]] = {name: [] for name in tools}
        for round_number in range(plan["rounds"]):
            order = list(tools) if round_number % 2 == 0 else list(reversed(tools))
            for name in order:
                cpu_before = _cpu_s()
                started = time.perf_counter()
                tools[name]()
                times[name].append(time.perf_counter() - started)
                cpu[name].append(_cpu_s() - cpu_before)
        if set(scanned) != {files}:
            raise RuntimeError(f"the pre-scan found {sorted(set(scanned))} files, expected {files}")
        peak_all = _traced_peak(lambda: _prescan(root, _store(work, "mem-all")))
        peak_part = _traced_peak(lambda: _prescan(root / "part0", _store(work, "mem-part")))
        rss = _child_rss_mib(root, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {name: min(values) for name, values in times.items()}
    rows = []
    for baseline, label in (("find", "find -printf"), ("rclone", "rclone size")):
        fluxon_speed, baseline_speed = files / best["fluxon"], files / best[baseline]
        ratio = fluxon_speed / baseline_speed
        rows.append(
            {
                "scenario": f"pre-scan {files:,} files vs {label}",
                "fluxon": fluxon_speed,
                "baseline": baseline_speed,
                "unit": "files/s",
                "ratio": ratio,
                "target": f">= {SPEED_TARGET}",
                "met": ratio >= SPEED_TARGET,
                "note": f"best of {plan['rounds']}: fluxon {best['fluxon']:.2f}s (CPU {min(cpu['fluxon']):.2f}s), "
                f"{baseline} {best[baseline]:.2f}s (CPU {min(cpu[baseline]):.2f}s); concurrency {CONCURRENCY}, "
                f"load {os.getloadavg()[0]:.1f}",
            }
        )
    ratio = peak_all / peak_part
    rows.append(
        {
            "scenario": f"pre-scan memory, {files:,} vs {files // PARTS:,} files",
            "fluxon": peak_all,
            "baseline": peak_part,
            "unit": "MiB traced peak",
            "ratio": ratio,
            "target": f"<= {MEMORY_TARGET} (bounded)",
            "met": ratio <= MEMORY_TARGET,
            "note": f"peak RSS of a process pre-scanning {files:,} files: {rss[0]:.0f} MiB, "
            f"of its largest worker: {rss[1]:.0f} MiB",
        }
    )
    return rows


def main(argv: list[str]) -> int:
    """Print the rows."""
    for row in run(quick="--full" not in argv):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
