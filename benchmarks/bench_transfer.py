"""Directory transfer benchmark: a Fluxon transfer job against ``rsync -a`` and ``rclone copy``, same trees.

The trees (sets): 2 500 small files (1-16 KiB, in 100 directories) plus three large files of
16 MiB, and 1 000 files of 1 MiB in one directory, with ``--quick``; ``--full`` adds 10 000 small
files plus three of 64 MiB. Fluxon runs as a real deployment on this host — kv master,
owner, fs master and one fs agent as processes, the agent serving both the source and the target
export (so data goes within one agent) — and a job is timed from ``create_job`` to ``succeeded``:
scan, copy and the verification pass included. ``rsync -a SRC/ DST/`` and ``rclone copy SRC DST``
(local to local, default settings) copy the same tree. Rounds alternate the three tools, each
into an empty target; the page cache holds the source for all of them. Figures are the best round
of each tool (the least disturbed by other load on a shared machine); ratio = Fluxon / baseline
throughput, target ≥ 1.0.

``python -m benchmarks.bench_transfer [--full]`` prints the rows.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.rows import result_row
from fluxon_core.runtime.processes import start_role_process
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.roles import FS_AGENT_MODULE
from fluxon_fs.transfer.jobs import JobSpec
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, fs_cluster

MIB = 1024 * 1024
SMALL_DIRS = 100
TARGET = 1.0
WORKERS = 2


SETS: dict[str, dict[str, int]] = {
    "2.5k small + 3 x 16 MiB": {"small_files": 2_500, "large_files": 3, "large_bytes": 16 * MIB},
    "10k small + 3 x 64 MiB": {"small_files": 10_000, "large_files": 3, "large_bytes": 64 * MIB},
    "1k x 1 MiB": {"small_files": 0, "large_files": 1_000, "large_bytes": MIB},
}
QUICK_SETS = ("2.5k small + 3 x 16 MiB", "1k x 1 MiB")


def _plan(quick: bool) -> dict[str, Any]:
    return {"sets": QUICK_SETS if quick else tuple(SETS), "rounds": 3}


def make_source(root: Path, small_files: int, large_files: int, large_bytes: int, seed: int = 11) -> tuple[int, int]:
    """Write the benchmark tree; returns (files, bytes)."""
    rng = random.Random(seed)
    total = 0
    root.mkdir(parents=True, exist_ok=True)
    for i in range(small_files):
        directory = root / "small" / f"d{i % SMALL_DIRS:03d}"
        if i < SMALL_DIRS:
            directory.mkdir(parents=True)
        size = rng.randint(1024, 16 * 1024)
        (directory / f"f{i:05d}.bin").write_bytes(rng.randbytes(size))
        total += size
    (root / "large").mkdir()
    for i in range(large_files):
        (root / "large" / f"big{i}.bin").write_bytes(os.urandom(large_bytes))
        total += large_bytes
    return small_files + large_files, total


def _start_agent(fs: FsCluster, exports: dict[str, str]) -> None:
    config = fs.agent_config("agent-1", exports)
    config["fluxon_fs"]["agent"]["transfer_workers"] = WORKERS
    proc = start_role_process(FS_AGENT_MODULE, "fs_agent", config, workdir=fs.root / "agent-agent-1")
    fs.agents["agent-1"] = proc
    proc.wait_ready(60)


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _run_tool(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with {result.returncode}: {result.stderr[-2000:]}")


def _row(scenario: str, fluxon: float, baseline: float, note: str) -> dict[str, Any]:
    ratio = fluxon / baseline if baseline else 0.0
    return result_row(scenario, fluxon / MIB, baseline / MIB, "MiB/s", f">= {TARGET}", ratio >= TARGET, note)


def _measure_set(fs: FsCluster, client: TransferClient, name: str, rounds: int, scratch: Path) -> dict[str, Any]:
    """Best times of the three tools on one set's tree (written into the source export first)."""
    shape = SETS[name]
    src, dst = fs.export_dir("src"), fs.export_dir("dst")
    tree = f"set{list(SETS).index(name)}"
    files, size = make_source(src / tree, shape["small_files"], shape["large_files"], shape["large_bytes"])
    times: dict[str, list[float]] = {"fluxon": [], "rsync": [], "rclone": []}

    def fluxon() -> None:
        spec = JobSpec(
            source_export="src",
            source_dir=tree,
            target_export="dst",
            target_prefix=f"r{len(times['fluxon'])}",
            desired_worker_count=WORKERS,
            batch_ready_bytes=16 * MIB,
        )
        job = client.wait(client.create_job(spec), timeout_s=600, poll_s=0.05)
        if job["state"] != "succeeded" or job["counters"]["files_copied"] != files:
            raise RuntimeError(f"fluxon job ended {job['state']}: {job['state_reason']} {job['recent_errors']}")

    tools: dict[str, Callable[[], None]] = {
        "fluxon": fluxon,
        "rsync": lambda: _run_tool(["rsync", "-a", f"{src / tree}/", f"{_fresh(scratch / 'rsync')}/"]),
        "rclone": lambda: _run_tool(
            ["rclone", "copy", "--config", "/dev/null", str(src / tree), str(_fresh(scratch / "rclone"))]
        ),
    }
    for round_number in range(rounds):
        order = list(tools) if round_number % 2 == 0 else list(reversed(tools))
        for tool in order:
            times[tool].append(_timed(tools[tool]))
        for child in dst.iterdir():  # empty the target export (its root stays: the agent holds it open)
            shutil.rmtree(child)
    shutil.rmtree(src / tree)
    for tool in ("rsync", "rclone"):
        shutil.rmtree(scratch / tool, ignore_errors=True)
    return {"files": files, "size": size, "best": {tool: min(values) for tool, values in times.items()}}


def run(quick: bool) -> list[dict[str, Any]]:
    """Time the three tools on each set's tree in alternating rounds; one row per set and baseline."""
    plan = _plan(quick)
    for tool in ("rsync", "rclone"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian package {tool!r})")
    measured: dict[str, dict[str, Any]] = {}
    with fs_cluster() as fs:
        src = fs.export_dir("src")
        dst = fs.export_dir("dst")
        fs.start_master()
        _start_agent(fs, {"src": str(src), "dst": str(dst)})
        client = TransferClient(fs.kv.external("bench-cli", fs.host), MASTER_KEY, *ADMIN)
        scratch = Path(tempfile.mkdtemp(prefix="fxbench", dir=fs.root))
        for name in plan["sets"]:
            measured[name] = _measure_set(fs, client, name, plan["rounds"], scratch)
    rows = []
    for name, result in measured.items():
        files, size, best = result["files"], result["size"], result["best"]
        for baseline in ("rsync", "rclone"):
            note = (
                f"{files} files, {size / MIB:.0f} MiB; best of {plan['rounds']}: fluxon {best['fluxon']:.2f}s "
                f"({files / best['fluxon']:,.0f} files/s), {baseline} {best[baseline]:.2f}s "
                f"({files / best[baseline]:,.0f} files/s); job time includes scan + verify"
            )
            command = "rsync -a" if baseline == "rsync" else "rclone copy"
            rows.append(
                _row(f"transfer {name}, same host, vs {command}", size / best["fluxon"], size / best[baseline], note)
            )
    return rows


def main(argv: list[str]) -> int:
    """Print the rows."""
    for row in run(quick="--full" not in argv):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
