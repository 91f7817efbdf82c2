"""Directory transfer benchmark: a Fluxon transfer job against ``rsync -a`` and ``rclone copy``, same trees.

The tree: 10 000 small files (1-16 KiB, in 100 directories) plus three large files of 64 MiB with
``--full``; 2 500 small files and three of 16 MiB with ``--quick``. Fluxon runs as a real deployment on this host — kv master,
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


def _plan(quick: bool) -> dict[str, Any]:
    return {
        "small_files": 2_500 if quick else 10_000,
        "large_files": 3,
        "large_bytes": (16 if quick else 64) * MIB,
        "rounds": 2 if quick else 3,
    }


def make_source(root: Path, small_files: int, large_files: int, large_bytes: int, seed: int = 11) -> tuple[int, int]:
    """Write the benchmark tree; returns (files, bytes)."""
    rng = random.Random(seed)
    total = 0
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


def run(quick: bool) -> list[dict[str, Any]]:
    """Time the three tools on the same tree in alternating rounds; one row per baseline."""
    plan = _plan(quick)
    for tool in ("rsync", "rclone"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian package {tool!r})")
    times: dict[str, list[float]] = {"fluxon": [], "rsync": [], "rclone": []}
    with fs_cluster() as fs:
        src = fs.export_dir("src")
        dst = fs.export_dir("dst")
        files, size = make_source(src / "tree", plan["small_files"], plan["large_files"], plan["large_bytes"])
        fs.start_master()
        _start_agent(fs, {"src": str(src), "dst": str(dst)})
        client = TransferClient(fs.kv.external("bench-cli", fs.host), MASTER_KEY, *ADMIN)
        scratch = Path(tempfile.mkdtemp(prefix="fxbench", dir=fs.root))

        def fluxon() -> None:
            prefix = f"r{len(times['fluxon'])}"
            spec = JobSpec(
                source_export="src",
                source_dir="tree",
                target_export="dst",
                target_prefix=prefix,
                desired_worker_count=WORKERS,
                batch_ready_bytes=16 * MIB,
            )
            job = client.wait(client.create_job(spec), timeout_s=600, poll_s=0.05)
            if job["state"] != "succeeded" or job["counters"]["files_copied"] != files:
                raise RuntimeError(f"fluxon job ended {job['state']}: {job['state_reason']} {job['recent_errors']}")

        tools: dict[str, Callable[[], None]] = {
            "fluxon": fluxon,
            "rsync": lambda: _run_tool(["rsync", "-a", f"{src / 'tree'}/", f"{_fresh(scratch / 'rsync')}/"]),
            "rclone": lambda: _run_tool(
                ["rclone", "copy", "--config", "/dev/null", str(src / "tree"), str(_fresh(scratch / "rclone"))]
            ),
        }
        for round_number in range(plan["rounds"]):
            order = list(tools) if round_number % 2 == 0 else list(reversed(tools))
            for name in order:
                times[name].append(_timed(tools[name]))
            for child in dst.iterdir():  # empty the target export (its root stays: the agent holds it open)
                shutil.rmtree(child)
    best = {name: min(values) for name, values in times.items()}
    tree = f"{files} files, {size / MIB:.0f} MiB ({plan['small_files']} x 1-16 KiB + {plan['large_files']} x "
    tree += f"{plan['large_bytes'] // MIB} MiB)"
    rows = []
    for baseline in ("rsync", "rclone"):
        note = (
            f"{tree}; best of {plan['rounds']}: fluxon {best['fluxon']:.2f}s ({files / best['fluxon']:,.0f} files/s), "
            f"{baseline} {best[baseline]:.2f}s ({files / best[baseline]:,.0f} files/s); job time includes scan + verify"
        )
        command = "rsync -a" if baseline == "rsync" else "rclone copy"
        rows.append(_row(f"transfer, same host, vs {command}", size / best["fluxon"], size / best[baseline], note))
    return rows


def main(argv: list[str]) -> int:
    """Print the rows."""
    for row in run(quick="--full" not in argv):
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
