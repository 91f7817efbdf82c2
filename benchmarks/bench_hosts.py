"""Across hosts: the mount and a transfer job over a real link, vs SFTP and ``rsync`` over ssh on it.

Builds the three-host lab of the network-namespace tests (:mod:`tests.support.netns_cluster`: host a
runs etcd, the kv master and the fs master; host b an owner and the agent exporting ``bdata``; host
c an owner, the agent exporting ``cdata`` and the clients), each host a network namespace on one
bridge, so every byte crosses veth pairs and a bridge between separate network stacks. A private
sshd runs inside b and another inside c (:mod:`benchmarks.support.sshd` with the host's launcher).

* cold large read: a new file in b's export each round, read with ``open().read()`` by a process in
  c through its mount, and read by a process in c over SFTP from b's sshd (paramiko, prefetching:
  the pipelined way ``sftp get`` reads); MiB/s;
* cold 4 KiB files: a new directory of small files in b's export each round, each read once through
  the mount from c, and over SFTP from c (``open().read()`` per file, as fsspec's ``cat_file``);
  µs per file;
* transfer: a tree in b's export copied by a transfer job into c's export, timed from the job's
  creation to ``succeeded`` (scan, copy and verification included), vs ``rsync -a`` run in b over
  ssh to c's sshd (``-e ssh``, default cipher); MiB/s.

Every round runs both sides back to back, alternating which goes first; figures are medians of the
rounds (best rounds in the note). The agents read the page cache of this one kernel, as the sshds
do. Where the lab cannot be built (not root, no namespaces, no etcd/sshd/rsync) every row says why
in its note instead of failing the harness.

``python -m benchmarks.bench_hosts [--full]`` prints the rows.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from benchmarks.bench_transfer import make_source
from benchmarks.rows import result_row
from benchmarks.support.sshd import SSHD, SshEndpoint, local_sshd
from tests.support.netns import Host, NetnsError, NetnsLab, netns_unavailable_reason
from tests.support.netns_cluster import ADMIN, MASTER_KEY, NetnsCluster, Worker

MIB = 1024 * 1024
SMALL_FILE_BYTES = 4096
SSHD_PORT = 2222
TARGET = 1.0
TRANSFER_WORKERS = 2
ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = (
    "cold read {big} MiB file from host b, on host c: mount vs SFTP (paramiko)",
    "cold read 4 KiB files from host b, on host c: mount vs SFTP (paramiko)",
    "transfer b -> c: job vs rsync -a over ssh",
    "cold read {big} MiB file from host b, on host c: mount vs OpenSSH sftp",
)
UNITS = ("MiB/s", "µs", "MiB/s", "MiB/s")
THROUGHPUT_TARGET = f">= {TARGET:g}x throughput"
TARGETS = (THROUGHPUT_TARGET, f"<= {TARGET:g}x latency", THROUGHPUT_TARGET, THROUGHPUT_TARGET)


def _plan(quick: bool) -> dict[str, int]:
    return {
        "big_bytes": (16 if quick else 64) * MIB,
        "small_files": 200,
        "rounds": 2 if quick else 3,
        "tree_small_files": 300 if quick else 1000,
        "tree_large_files": 2,
        "tree_large_bytes": (8 if quick else 32) * MIB,
        "transfer_rounds": 2 if quick else 3,
        "pool": 256 if quick else 512,  # MiB per owner: c's holds every cold round's pieces
    }


class _Cluster(NetnsCluster):
    """The test deployment with owners whose pools hold the benchmark's cold rounds."""

    pool_mib = 256

    def owner_config(self, host: str, rpc_host: str | None) -> dict[str, Any]:
        config = super().owner_config(host, rpc_host)
        config["contribute_to_cluster_pool_size"] = {"dram": f"{self.pool_mib}MiB"}
        return config


@contextmanager
def _cluster(pool_mib: int) -> Iterator[_Cluster]:
    with NetnsLab(("a", "b", "c")) as lab:
        cluster = _Cluster(lab)
        cluster.pool_mib = pool_mib
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.close()


def _unavailable_reason() -> str | None:
    for tool in ("rsync", "ssh"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (openssh-server)"
    return netns_unavailable_reason()


def _unavailable_rows(plan: dict[str, int], reason: str) -> list[dict[str, Any]]:
    return [
        result_row(
            scenario.format(big=plan["big_bytes"] // MIB), 0.0, 0.0, unit, target, False, f"not measured: {reason}"
        )
        for scenario, unit, target in zip(SCENARIOS, UNITS, TARGETS, strict=True)
    ]


class _Rounds:
    """Seconds of each round of the Fluxon side and of the baseline."""

    def __init__(self) -> None:
        self.fluxon: list[float] = []
        self.baseline: list[float] = []

    def add(self, first_is_fluxon: bool, fluxon: Callable[[], float], baseline: Callable[[], float]) -> None:
        """Run both sides back to back, in the order given."""
        if first_is_fluxon:
            self.fluxon.append(fluxon())
            self.baseline.append(baseline())
        else:
            self.baseline.append(baseline())
            self.fluxon.append(fluxon())

    def median(self) -> tuple[float, float]:
        return statistics.median(self.fluxon), statistics.median(self.baseline)

    def best(self) -> tuple[float, float]:
        return min(self.fluxon), min(self.baseline)


def _sftp_read(host: Host, endpoint: SshEndpoint, paths: list[str], *, prefetch: bool) -> dict[str, Any]:
    """Read ``paths`` over SFTP from a process inside ``host``; its own timing (connection excluded)."""
    request = {
        "host": endpoint.host,
        "port": endpoint.port,
        "username": endpoint.username,
        "key_filename": endpoint.key_filename,
        "paths": paths,
        "prefetch": prefetch,
    }
    done = subprocess.run(
        [*host.launcher, sys.executable, "-m", "benchmarks.support.sftp_reader"],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sftp_reader in {host.name} failed ({done.returncode}): {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def _checked(result: dict[str, Any], size: int, what: str) -> float:
    if result["size"] != size:
        raise RuntimeError(f"{what} read {result['size']} bytes, expected {size}")
    return float(result["seconds"])


def _mounted(cluster: NetnsCluster, worker: Worker, relpath: str) -> str:
    return str(cluster.mount_dir(worker.host.name, worker.name, "bdata") / relpath)


@contextmanager
def _ssh_master(host: Host, endpoint: SshEndpoint, workdir: Path) -> Iterator[list[str]]:
    """An OpenSSH master connection from ``host``; yields the ssh options that reuse it (ControlPath)."""
    control = workdir / f"ssh-{host.name}.ctl"
    options = [
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR", "-o", f"ControlPath={control}", "-i", endpoint.key_filename,
    ]  # fmt: skip
    target = f"{endpoint.username}@{endpoint.host}"
    master = subprocess.Popen(
        [*host.launcher, "ssh", *options, "-M", "-N", "-p", str(endpoint.port), target],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        check = ["ssh", *options, "-O", "check", "-p", str(endpoint.port), target]
        while host.run(check, timeout_s=10).returncode != 0:
            if master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ssh master connection from {host.name} did not start")
            time.sleep(0.1)
        yield options
    finally:
        master.terminate()
        master.wait(10)


def _openssh_get(host: Host, endpoint: SshEndpoint, options: list[str], path: Path) -> float:
    """Seconds of ``sftp get PATH /dev/null`` run in ``host`` over the master connection."""
    command = [*host.launcher, "sftp", "-q", *options, "-P", str(endpoint.port), "-b", "-"]
    command.append(f"{endpoint.username}@{endpoint.host}")
    started = time.perf_counter()
    done = subprocess.run(command, input=f"get {path} /dev/null\n", capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"sftp get in {host.name} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def _cold_read(
    cluster: NetnsCluster, worker: Worker, sshd_b: SshEndpoint, ssh_options: list[str], plan: dict[str, int]
) -> list[dict[str, Any]]:
    """Three sides per round (mount, paramiko, OpenSSH ``sftp``), order rotated; one row per baseline."""
    size = plan["big_bytes"]
    c = cluster.lab["c"]
    seconds: dict[str, list[float]] = {"mount": [], "paramiko": [], "openssh": []}
    for index in range(plan["rounds"]):
        name = f"cold-{index}.bin"
        local = cluster.export_dir("b") / name
        local.write_bytes(os.urandom(size))
        sides: dict[str, Callable[[], float]] = {
            "mount": lambda: _checked(
                worker.call("read_files", paths=[_mounted(cluster, worker, name)], timeout_s=300),  # noqa: B023
                size,
                "the mount",
            ),
            "paramiko": lambda: _checked(_sftp_read(c, sshd_b, [str(local)], prefetch=True), size, "sftp"),  # noqa: B023
            "openssh": lambda: _openssh_get(c, sshd_b, ssh_options, local),  # noqa: B023
        }
        order = list(sides)[index % 3 :] + list(sides)[: index % 3]
        for side in order:
            seconds[side].append(sides[side]())
        local.unlink()
    fluxon_s = statistics.median(seconds["mount"])
    fluxon = size / fluxon_s / MIB
    rows = []
    for side, scenario, detail in (
        ("paramiko", SCENARIOS[0], "paramiko SFTP with prefetch (connected beforehand)"),
        ("openssh", SCENARIOS[3], "OpenSSH sftp get to /dev/null over an open master connection (process start "
         "and session open included, ~tens of ms)"),
    ):  # fmt: skip
        baseline = size / statistics.median(seconds[side]) / MIB
        note = (
            f"new file each round, read by a process on c with open().read() through the mount (agent on b, pieces "
            f"into c's pool) vs {detail} from an sshd on b; median of {plan['rounds']} rounds (best "
            f"{size / min(seconds['mount']) / MIB:.0f} vs {size / min(seconds[side]) / MIB:.0f} MiB/s)"
        )
        row = result_row(
            scenario.format(big=size // MIB), fluxon, baseline, UNITS[0], TARGETS[0], fluxon >= baseline, note
        )
        rows.append(row)
    return rows


def _small_files(cluster: NetnsCluster, worker: Worker, sshd_b: SshEndpoint, plan: dict[str, int]) -> dict[str, Any]:
    count = plan["small_files"]
    rounds = _Rounds()
    for index in range(plan["rounds"]):
        tree = cluster.export_dir("b") / f"small-{index}"
        tree.mkdir()
        names = [f"f{i:05d}.bin" for i in range(count)]
        for i, name in enumerate(names):
            (tree / name).write_bytes(i.to_bytes(4, "little") * (SMALL_FILE_BYTES // 4))
        mounted = [_mounted(cluster, worker, f"small-{index}/{name}") for name in names]
        local = [str(tree / name) for name in names]
        total = count * SMALL_FILE_BYTES
        rounds.add(
            index % 2 == 0,
            lambda: _checked(worker.call("read_files", paths=mounted, timeout_s=300), total, "the mount") / count,  # noqa: B023
            lambda: _checked(_sftp_read(cluster.lab["c"], sshd_b, local, prefetch=False), total, "sftp") / count,  # noqa: B023
        )
        shutil.rmtree(tree)
    fluxon_s, baseline_s = rounds.median()
    best_f, best_b = rounds.best()
    note = (
        f"{count} files of 4 KiB, new directory each round, each read once (open+read+close) by a process on c; "
        f"mount vs paramiko SFTP (connected beforehand) from an sshd on b; median of {plan['rounds']} rounds "
        f"(best {best_f * 1e6:.0f} vs {best_b * 1e6:.0f} µs)"
    )
    return result_row(
        SCENARIOS[1], fluxon_s * 1e6, baseline_s * 1e6, UNITS[1], TARGETS[1], fluxon_s <= baseline_s, note
    )


def _rsync(host: Host, source: Path, sshd_c: SshEndpoint, target: Path) -> None:
    ssh = (
        f"ssh -p {sshd_c.port} -i {sshd_c.key_filename} -o BatchMode=yes -o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    )
    command = ["rsync", "-a", "-e", ssh, f"{source}/", f"{sshd_c.username}@{sshd_c.host}:{target}/"]
    done = host.run(command, timeout_s=600)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed with {done.returncode}: {done.stderr[-2000:]}")


def _transfer(cluster: NetnsCluster, worker: Worker, sshd_c: SshEndpoint, plan: dict[str, int]) -> dict[str, Any]:
    source = cluster.export_dir("b") / "tree"
    files, size = make_source(source, plan["tree_small_files"], plan["tree_large_files"], plan["tree_large_bytes"])
    scratch = cluster.dir("c", "rsync")
    target_export = cluster.export_dir("c")

    def job(index: int) -> float:
        spec = {
            "source_export": "bdata",
            "source_dir": "tree",
            "target_export": "cdata",
            "target_prefix": f"r{index}",
            "batch_ready_bytes": 16 * MIB,
            "desired_worker_count": TRANSFER_WORKERS,
        }
        started = time.perf_counter()
        job = worker.call(
            "transfer",
            master=MASTER_KEY,
            identity=list(ADMIN),
            spec=spec,
            job_timeout_s=600,
            poll_s=0.05,
            timeout_s=620,
        )
        seconds = time.perf_counter() - started
        if job["state"] != "succeeded" or job["counters"]["files_copied"] != files:
            raise RuntimeError(f"transfer job ended {job['state']}: {job.get('state_reason')} {job['counters']}")
        return seconds

    def rsync(index: int) -> float:
        target = scratch / f"r{index}"
        started = time.perf_counter()
        _rsync(cluster.lab["b"], source, sshd_c, target)
        return time.perf_counter() - started

    rounds = _Rounds()
    for index in range(plan["transfer_rounds"]):
        rounds.add(index % 2 == 0, lambda: job(index), lambda: rsync(index))  # noqa: B023
        for child in (*target_export.iterdir(), *scratch.iterdir()):
            shutil.rmtree(child)
    fluxon_s, baseline_s = rounds.median()
    best_f, best_b = rounds.best()
    tree = (
        f"{files} files, {size / MIB:.0f} MiB ({plan['tree_small_files']} x 1-16 KiB + "
        f"{plan['tree_large_files']} x {plan['tree_large_bytes'] // MIB} MiB)"
    )
    note = (
        f"{tree} from b's export into c's; job timed from create to succeeded (scan + copy + verify), "
        f"{TRANSFER_WORKERS} workers; rsync -a run on b over ssh to an sshd on c; median of "
        f"{plan['transfer_rounds']} rounds: {fluxon_s:.2f}s vs {baseline_s:.2f}s (best {best_f:.2f}s vs {best_b:.2f}s)"
    )
    fluxon, baseline = size / fluxon_s / MIB, size / baseline_s / MIB
    return result_row(SCENARIOS[2], fluxon, baseline, UNITS[2], TARGETS[2], fluxon >= baseline, note)


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def run(quick: bool) -> list[dict[str, Any]]:
    """Build the lab and the cluster, start the sshds, measure the three scenarios; one row each."""
    plan = _plan(quick)
    reason = _unavailable_reason()
    if reason is not None:
        return _unavailable_rows(plan, reason)
    load_before = _load()
    with ExitStack() as exits:
        try:
            cluster = exits.enter_context(_cluster(plan["pool"]))
            sshd_b = exits.enter_context(local_sshd(cluster.lab["b"].address, SSHD_PORT, cluster.lab["b"].launcher))
            sshd_c = exits.enter_context(local_sshd(cluster.lab["c"].address, SSHD_PORT, cluster.lab["c"].launcher))
            worker = cluster.worker("c", "bench-c", mount=True)
            ssh_options = exits.enter_context(_ssh_master(cluster.lab["c"], sshd_b, cluster.dir("c", "ssh")))
        except (NetnsError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
            return _unavailable_rows(plan, f"the namespace lab could not be built: {exc}")
        cold_paramiko, cold_openssh = _cold_read(cluster, worker, sshd_b, ssh_options, plan)
        rows = [
            cold_paramiko,
            cold_openssh,
            _small_files(cluster, worker, sshd_b, plan),
            _transfer(cluster, worker, sshd_c, plan),
        ]
    load = f"load avg {load_before} before, {_load()} after, {os.cpu_count()} cpus"
    for row in rows:
        row["note"] = f"{row['note']}; {load}"
    return rows


if __name__ == "__main__":
    for result in run(quick="--full" not in sys.argv):
        print(result)
