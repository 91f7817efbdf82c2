"""Mount benchmarks (PERF.md): a mounted export read and written from this process, side by side
with the same operations on the local disk and with fsspec over SFTP to a private local sshd.

The whole stack runs on this host (kv master, owner, fs master, fs agent: real processes, loopback
TCP); the mounting client is this process. Every file the mount reads also exists on the local disk
(it *is* the agent's file), so the local baseline reads the very same bytes, from the page cache
like the agent does.

* warm read: a large file whose pieces are in the host pool, ``open().read()`` on the mount vs on
  the local file, and one ``readinto`` of a reused buffer on both;
* cold read: a new large file each round (content not in the pool, metadata unknown);
* cold small files: a new directory of 4 KiB files each round, read once each through the mount,
  locally, with fsspec ``sftp`` and with fsspec ``simplecache`` over ``sftp`` (fresh cache dir);
* ``os.stat`` of mounted files whose metadata is cached vs ``os.stat`` of local files;
* ``os.stat`` of mounted files the mount has not seen (one agent call each), and ``os.listdir`` of a
  new directory of 1000 files followed by ``os.stat`` of each (one agent call in all), vs local;
* ``os.stat`` and ``open``+``close`` of local paths with the patcher installed and a mount present vs
  the unpatched functions (``posix.stat``/``_io.open``, the objects ``install()`` replaces);
* writing a large file through the mount vs locally, in 1 MiB ``write`` calls, close included.

Large reads, writes and small-file reads run a few rounds, each round measuring both sides back to
back; their figures are the medians of the rounds (best rounds in the note). The µs-scale rows
(``os.stat``, ``open``) run many short alternating batches and report the best batch of each side,
as ``timeit`` does (medians in the note). Every note also has the median of the per-round ratios
and the load average. A scenario
during which the mount's KV client lost the host pool is run again on a new client (at most
``SCENARIO_ATTEMPTS`` times; the note says so), since it would otherwise measure the mount without
its cache.
``python -m benchmarks.bench_mount [--full]`` prints the rows.
"""

from __future__ import annotations

import _io
import os
import posix
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import fsspec

from benchmarks.rows import result_row
from benchmarks.support.fs_stack import FsStack, fs_stack
from benchmarks.support.sshd import SshEndpoint, local_sshd

MIB = 1024 * 1024
SMALL_FILE_BYTES = 4096
WRITE_CALL_BYTES = MIB

WARM_READ_TARGET = 1.0
WARM_READINTO_TARGET = 1.5
COLD_READ_TARGET = 0.6
SMALL_LOCAL_TARGET = 20.0
SMALL_SFTP_TARGET = 1 / 5
STAT_TARGET = 3.0
COLD_STAT_TARGET = 100.0
LISTING_TARGET = 5.0
LISTING_ENTRIES = 1000
UNMOUNTED_TARGET = 1.15
WRITE_TARGET = 0.5
SCENARIO_ATTEMPTS = 3

# The originals install() replaces; kept in a dict so the patcher's swap of module globals
# (any global that *is* an original) leaves them alone.
_REAL: dict[str, Callable[..., Any]] = {"stat": posix.stat, "open": _io.open}


def _plan(quick: bool) -> dict[str, int]:
    return {
        "big_bytes": (64 if quick else 256) * MIB,
        "small_files": 500 if quick else 2000,
        "rounds": 3 if quick else 5,
        "sftp_rounds": 1 if quick else 3,
        "simplecache_files": 100 if quick else 300,
        "micro_paths": 100,
        "micro_rounds": 200 if quick else 500,
        "pool": 1024 if quick else 2048,  # MiB: the owner's pool holds a warm file plus cold rounds
    }


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class Pair:
    """Seconds of repeated rounds of the Fluxon side and of the baseline."""

    def __init__(self) -> None:
        self.fluxon: list[float] = []
        self.baseline: list[float] = []

    def add(self, fluxon_s: float, baseline_s: float) -> None:
        """One round of each side."""
        self.fluxon.append(fluxon_s)
        self.baseline.append(baseline_s)

    @property
    def best(self) -> tuple[float, float]:
        """Best (shortest) round of each side."""
        return min(self.fluxon), min(self.baseline)

    @property
    def median(self) -> tuple[float, float]:
        """Median round of each side."""
        return statistics.median(self.fluxon), statistics.median(self.baseline)

    def pick(self, summary: str) -> tuple[float, float]:
        """``best`` or ``median`` of each side."""
        return self.best if summary == "best" else self.median

    @property
    def median_ratio(self) -> float:
        """Median of the per-round time ratios fluxon / baseline."""
        return statistics.median(f / b for f, b in zip(self.fluxon, self.baseline, strict=True))


def _throughput_row(scenario: str, pair: Pair, nbytes: int, target: float, note: str) -> dict[str, Any]:
    """Medians of the rounds (each round runs both sides back to back); best rounds in the note."""
    fluxon_s, baseline_s = pair.median
    fluxon, baseline = nbytes / fluxon_s / MIB, nbytes / baseline_s / MIB
    best_f, best_b = pair.best
    note = (
        f"{note}; median of {len(pair.fluxon)} rounds (median of paired ratios {1 / pair.median_ratio:.2f}; "
        f"best rounds {nbytes / best_f / MIB:.0f} vs {nbytes / best_b / MIB:.0f} MiB/s = {best_b / best_f:.2f})"
    )
    return result_row(
        scenario, fluxon, baseline, "MiB/s", f">= {target:g}x throughput", fluxon >= target * baseline, note
    )


def _latency_row(scenario: str, pair: Pair, summary: str, target: float, target_text: str, note: str) -> dict[str, Any]:
    """Seconds per operation in ``pair``; ``summary`` is "median" (rounds) or "best" (many short batches)."""
    fluxon_s, baseline_s = pair.pick(summary)
    fluxon, baseline = fluxon_s * 1e6, baseline_s * 1e6
    other = "best" if summary == "median" else "median"
    other_f, other_b = pair.pick(other)
    note = (
        f"{note}; {summary} of {len(pair.fluxon)} {'rounds' if summary == 'median' else 'batches'} "
        f"(median of paired ratios {pair.median_ratio:.2f}; {other}: {other_f * 1e6:.1f} vs {other_b * 1e6:.1f} us)"
    )
    return result_row(scenario, fluxon, baseline, "us/op", target_text, fluxon <= target * baseline, note)


def _write_local(path: Path, data: bytes) -> None:
    with _REAL["open"](path, "wb") as f:
        f.write(data)


def _read_all(path: Path, opener: Callable[..., Any] | None = None) -> int:
    # open is looked up at call time: install() replaces builtins.open, not a default bound earlier.
    with (opener or open)(path, "rb") as f:
        return len(f.read())


def _checked(size: int, expected: int, what: str) -> None:
    if size != expected:
        raise AssertionError(f"{what}: read {size} bytes, expected {expected}")


# -- scenarios ------------------------------------------------------------------------------------


def _read_into(path: Path, buffer: bytearray, opener: Callable[..., Any] | None = None) -> int:
    with (opener or open)(path, "rb", buffering=0) as f:
        return int(f.readinto(buffer))


def _warm_read(stack: FsStack, plan: dict[str, int]) -> list[dict[str, Any]]:
    """``open().read()`` (a new bytes object each time), and ``readinto`` one reused buffer."""
    size = plan["big_bytes"]
    local = stack.export_root / "warm.bin"
    mounted = stack.mount_dir / "warm.bin"
    data = os.urandom(size)
    _write_local(local, data)
    with open(mounted, "rb") as f:  # fills the pool
        if f.read() != data:
            raise AssertionError(f"{mounted}: content differs from {local}")
    reads, intos = Pair(), Pair()
    buffer = bytearray(size)
    for _ in range(plan["rounds"]):
        baseline_s = _timed(lambda: _checked(_read_all(local, _REAL["open"]), size, str(local)))
        fluxon_s = _timed(lambda: _checked(_read_all(mounted), size, str(mounted)))
        reads.add(fluxon_s, baseline_s)
        baseline_s = _timed(lambda: _checked(_read_into(local, buffer, _REAL["open"]), size, str(local)))
        fluxon_s = _timed(lambda: _checked(_read_into(mounted, buffer), size, str(mounted)))
        intos.add(fluxon_s, baseline_s)
    os.unlink(local)
    where = "content in the host pool; baseline: same file on local disk (page cache)"
    return [
        _throughput_row(f"warm read {size // MIB} MiB file, open().read()", reads, size, WARM_READ_TARGET, where),
        _throughput_row(
            f"warm read {size // MIB} MiB file, readinto a reused buffer",
            intos,
            size,
            WARM_READINTO_TARGET,
            f"{where}; unbuffered open, one readinto of the whole file",
        ),
    ]


def _cold_read(stack: FsStack, plan: dict[str, int]) -> dict[str, Any]:
    size = plan["big_bytes"]
    data = os.urandom(size)
    pair = Pair()
    for index in range(plan["rounds"]):
        local = stack.export_root / f"cold-{index}.bin"
        mounted = stack.mount_dir / f"cold-{index}.bin"
        _write_local(local, data)
        fluxon_s = _timed(lambda: _checked(_read_all(mounted), size, str(mounted)))  # noqa: B023
        baseline_s = _timed(lambda: _checked(_read_all(local, _REAL["open"]), size, str(local)))  # noqa: B023
        pair.add(fluxon_s, baseline_s)
        os.unlink(local)
    return _throughput_row(
        f"cold read {size // MIB} MiB file, open().read()",
        pair,
        size,
        COLD_READ_TARGET,
        "new file each round: agent on this host over loopback, pieces put into the pool; "
        "baseline: same file on local disk (page cache, as the agent reads it)",
    )


def _small_tree(root: Path, count: int) -> list[str]:
    root.mkdir()
    names = [f"f{i:05d}.bin" for i in range(count)]
    for i, name in enumerate(names):
        _write_local(root / name, i.to_bytes(4, "little") * (SMALL_FILE_BYTES // 4))
    return names


def _read_each(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            _checked(len(f.read()), SMALL_FILE_BYTES, str(path))


def _read_each_local(paths: list[Path]) -> None:
    real_open = _REAL["open"]
    for path in paths:
        with real_open(path, "rb") as f:
            _checked(len(f.read()), SMALL_FILE_BYTES, str(path))


def _sftp_options(endpoint: SshEndpoint) -> dict[str, Any]:
    return {
        "host": endpoint.host,
        "port": endpoint.port,
        "username": endpoint.username,
        "key_filename": endpoint.key_filename,
    }


def _read_each_fsspec(fs: Any, paths: list[str]) -> None:
    for path in paths:
        _checked(len(fs.cat_file(path)), SMALL_FILE_BYTES, path)


@contextmanager
def _simplecache(endpoint: SshEndpoint) -> Iterator[Any]:
    cache_dir = tempfile.mkdtemp(prefix="fxsc", dir="/tmp")
    try:
        yield fsspec.filesystem(
            "simplecache",
            target_protocol="sftp",
            target_options=_sftp_options(endpoint),
            cache_storage=cache_dir,
            skip_instance_cache=True,
        )
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def _small_files(stack: FsStack, plan: dict[str, int], endpoint: SshEndpoint | None) -> list[dict[str, Any]]:
    """Seconds per file; the peers read the same files as the mount in the same round (simplecache,
    much slower, only the first ``simplecache_files`` of them)."""
    count, cached_count = plan["small_files"], min(plan["small_files"], plan["simplecache_files"])
    local_pair, sftp_pair, cache_pair = Pair(), Pair(), Pair()
    sftp = None
    if endpoint is not None:
        sftp = fsspec.filesystem("sftp", skip_instance_cache=True, **_sftp_options(endpoint))
    for index in range(plan["rounds"]):
        tree = f"small-{index}"
        names = _small_tree(stack.export_root / tree, count)
        local = [stack.export_root / tree / n for n in names]
        fluxon_s = _timed(lambda: _read_each([stack.mount_dir / tree / n for n in names])) / count  # noqa: B023
        local_pair.add(fluxon_s, _timed(lambda: _read_each_local(local)) / count)  # noqa: B023
        if sftp is not None and endpoint is not None and index < plan["sftp_rounds"]:
            remote = [str(p) for p in local]
            sftp_pair.add(fluxon_s, _timed(lambda: _read_each_fsspec(sftp, remote)) / count)  # noqa: B023
            with _simplecache(endpoint) as cached:
                cache_s = _timed(lambda: _read_each_fsspec(cached, remote[:cached_count]))  # noqa: B023
                cache_pair.add(fluxon_s, cache_s / cached_count)
        shutil.rmtree(stack.export_root / tree)
    what = f"{count} files of 4 KiB, new directory each round, each read once (open+read+close)"
    rows = [
        _latency_row(
            "cold read 4 KiB files vs local",
            local_pair,
            "median",
            SMALL_LOCAL_TARGET,
            f"<= {SMALL_LOCAL_TARGET:g}x latency",
            f"{what}; baseline: same files on local disk",
        )
    ]
    if sftp is None:
        return rows
    peers = (
        ("fsspec sftp", sftp_pair, f"{plan['sftp_rounds']} round(s)"),
        ("fsspec simplecache over sftp", cache_pair, f"peer reads {cached_count} of the files, fresh cache dir"),
    )
    for label, pair, detail in peers:
        rows.append(
            _latency_row(
                f"cold read 4 KiB files vs {label}",
                pair,
                "median",
                SMALL_SFTP_TARGET,
                "<= 0.2x latency (>= 5x faster)",
                f"{what}; peer: cat_file per file over a private sshd on 127.0.0.1, connected beforehand; {detail}",
            )
        )
    return rows


def _micro_pair(fluxon: Callable[[], object], baseline: Callable[[], object], rounds: int, calls: int) -> Pair:
    """Seconds per call of many short alternating batches (the best batch is the least disturbed one)."""
    pair = Pair()
    for turn in range(rounds):
        if turn % 2 == 0:
            fluxon_s = _timed(fluxon)
            baseline_s = _timed(baseline)
        else:
            baseline_s = _timed(baseline)
            fluxon_s = _timed(fluxon)
        pair.add(fluxon_s / calls, baseline_s / calls)
    return pair


def _cached_stat(stack: FsStack, plan: dict[str, int]) -> dict[str, Any]:
    count = plan["micro_paths"]
    names = _small_tree(stack.export_root / "stat", count)
    mounted = [str(stack.mount_dir / "stat" / n) for n in names]
    local = [str(stack.export_root / "stat" / n) for n in names]
    stat, real_stat = os.stat, _REAL["stat"]

    def stat_mounted() -> None:
        for path in mounted:
            stat(path)

    def stat_local() -> None:
        for path in local:
            real_stat(path)

    def warm_then_stat_mounted() -> float:
        stat_mounted()  # re-warm (the metadata TTL is 5 s) outside the timed batch
        return _timed(stat_mounted)

    pair = Pair()
    for _ in range(plan["micro_rounds"]):
        fluxon_s = warm_then_stat_mounted()
        baseline_s = _timed(stat_local)
        pair.add(fluxon_s / count, baseline_s / count)
    shutil.rmtree(stack.export_root / "stat")
    return _latency_row(
        "os.stat on a mount, metadata cached",
        pair,
        "best",
        STAT_TARGET,
        f"<= {STAT_TARGET:g}x latency",
        f"batches of {count} files; baseline: unpatched os.stat of the same files on local disk",
    )


def _cold_stat(stack: FsStack, plan: dict[str, int]) -> dict[str, Any]:
    """``os.stat`` of files the mount has never seen (one agent call each) vs local ``os.stat``."""
    count = plan["micro_paths"]
    pair = Pair()
    for index in range(plan["rounds"]):
        tree = f"cold-stat-{index}"
        names = _small_tree(stack.export_root / tree, count)
        mounted = [str(stack.mount_dir / tree / n) for n in names]
        local = [str(stack.export_root / tree / n) for n in names]
        stat, real_stat = os.stat, _REAL["stat"]
        fluxon_s = _timed(lambda: [stat(path) for path in mounted])  # noqa: B023
        baseline_s = _timed(lambda: [real_stat(path) for path in local])  # noqa: B023
        pair.add(fluxon_s / count, baseline_s / count)
        shutil.rmtree(stack.export_root / tree)
    return _latency_row(
        "os.stat on a mount, metadata cold (1 agent call)",
        pair,
        "median",
        COLD_STAT_TARGET,
        f"<= {COLD_STAT_TARGET:g}x latency",
        f"{count} files the mount has not seen, new directory each round; the target proper is the one "
        "call (tests/test_round_trips.py), this row shows its cost; baseline: unpatched os.stat of the same "
        "files on local disk",
    )


def _listing(stack: FsStack, plan: dict[str, int]) -> dict[str, Any]:
    """``os.listdir`` of a cold directory of 1000 files, then ``os.stat`` of each (1 agent call in all)."""
    pair = Pair()
    for index in range(plan["rounds"]):
        tree = f"listing-{index}"
        _small_tree(stack.export_root / tree, LISTING_ENTRIES)
        mounted, local = str(stack.mount_dir / tree), str(stack.export_root / tree)
        stat, real_stat = os.stat, _REAL["stat"]

        def list_and_stat(directory: str, stat_function: Callable[[str], Any]) -> None:
            names = os.listdir(directory)
            _checked(len(names), LISTING_ENTRIES, directory)
            for name in names:
                stat_function(os.path.join(directory, name))

        fluxon_s = _timed(lambda: list_and_stat(mounted, stat))  # noqa: B023
        baseline_s = _timed(lambda: list_and_stat(local, real_stat))  # noqa: B023
        pair.add(fluxon_s, baseline_s)
        shutil.rmtree(stack.export_root / tree)
    return _latency_row(
        f"listdir + os.stat of {LISTING_ENTRIES} entries, cold (1 agent call)",
        pair,
        "median",
        LISTING_TARGET,
        f"<= {LISTING_TARGET:g}x latency",
        "a new directory each round (the mount has not seen it); us per listing; baseline: the same "
        "directory on local disk, os.listdir then unpatched os.stat of each entry",
    )


def _unmounted(stack: FsStack, plan: dict[str, int]) -> list[dict[str, Any]]:
    count, rounds = plan["micro_paths"], plan["micro_rounds"]
    root = Path(tempfile.mkdtemp(prefix="fxlocal", dir="/tmp"))
    try:
        names = _small_tree(root / "files", count)
        paths = [str(root / "files" / n) for n in names]
        patched_stat, real_stat = os.stat, _REAL["stat"]
        patched_open, real_open = open, _REAL["open"]
        if patched_stat is real_stat or patched_open is real_open:
            raise AssertionError("the patcher is not installed: os.stat / open are the originals")

        def stat_all(function: Callable[[str], Any]) -> Callable[[], None]:
            def batch() -> None:
                for path in paths:
                    function(path)

            return batch

        def open_all(function: Callable[..., Any]) -> Callable[[], None]:
            def batch() -> None:
                for path in paths:
                    function(path, "rb").close()

            return batch

        stats = _micro_pair(stat_all(patched_stat), stat_all(real_stat), rounds, count)
        opens = _micro_pair(open_all(patched_open), open_all(real_open), rounds, count)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    note = (
        f"alternating batches of {count} local files; patcher installed with a mount present "
        "vs the unpatched function (posix.stat / _io.open)"
    )
    target = f"<= {UNMOUNTED_TARGET:g}x latency"
    return [
        _latency_row("os.stat, path not mounted, patcher installed", stats, "best", UNMOUNTED_TARGET, target, note),
        _latency_row("open+close, path not mounted, patcher installed", opens, "best", UNMOUNTED_TARGET, target, note),
    ]


def _write_in_calls(path: Path, data: bytes, opener: Callable[..., Any]) -> None:
    view = memoryview(data)
    with opener(path, "wb") as f:
        for start in range(0, len(view), WRITE_CALL_BYTES):
            f.write(view[start : start + WRITE_CALL_BYTES])


def _write(stack: FsStack, plan: dict[str, int]) -> dict[str, Any]:
    size = plan["big_bytes"]
    data = os.urandom(size)
    pair = Pair()
    for index in range(plan["rounds"]):
        mounted = stack.mount_dir / f"write-{index}.bin"
        local = stack.export_root / f"local-write-{index}.bin"
        fluxon_s = _timed(lambda: _write_in_calls(mounted, data, open))  # noqa: B023
        baseline_s = _timed(lambda: _write_in_calls(local, data, _REAL["open"]))  # noqa: B023
        pair.add(fluxon_s, baseline_s)
        landed = stack.export_root / f"write-{index}.bin"
        _checked(_REAL["stat"](landed).st_size, size, str(landed))
        os.unlink(landed)
        os.unlink(local)
    return _throughput_row(
        f"write {size // MIB} MiB file, 1 MiB write() calls",
        pair,
        size,
        WRITE_TARGET,
        "close included (data at the agent), no fsync on either side; baseline: local file on the same disk",
    )


def _load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


def _sshd(exits: ExitStack) -> SshEndpoint | None:
    """The private sshd, or None (its rows are skipped, said on stderr) when it cannot start here."""
    try:
        return exits.enter_context(local_sshd())
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"bench_mount: SFTP peer unavailable ({exc}); its rows are skipped", file=sys.stderr)
        return None


Scenario = Callable[[FsStack], list[dict[str, Any]]]


def _measure_valid(stack: FsStack, scenario: Scenario) -> list[dict[str, Any]]:
    """Run a scenario; when the client lost the pool meanwhile, run it again on a new client."""
    problem = ""
    for attempt in range(1, SCENARIO_ATTEMPTS + 1):
        rows = scenario(stack)
        problem = stack.pool_problem()
        if not problem:
            if attempt > 1:
                for row in rows:
                    row["note"] += f"; attempt {attempt}: earlier attempts lost the host pool mid-run"
            return rows
        print(f"bench_mount: the client lost the host pool ({problem}); new client, again", file=sys.stderr)
        stack.reconnect()
    for row in rows:
        row["met"] = False
        row["note"] = f"INVALID: the client lost the host pool in every attempt ({problem}); {row['note']}"
    return rows


def run(quick: bool) -> list[dict[str, Any]]:
    """Start the stack (and a private sshd), measure every mount scenario; one row per scenario."""
    plan = _plan(quick)
    load_before = _load()
    rows: list[dict[str, Any]] = []
    with ExitStack() as exits:
        endpoint = _sshd(exits)
        stack = exits.enter_context(fs_stack(pool_bytes=f"{plan['pool']}MiB"))
        scenarios: list[Scenario] = [
            lambda stack: _warm_read(stack, plan),
            lambda stack: [_cold_read(stack, plan)],
            lambda stack: _small_files(stack, plan, endpoint),
            lambda stack: [_cached_stat(stack, plan)],
            lambda stack: [_cold_stat(stack, plan)],
            lambda stack: [_listing(stack, plan)],
            lambda stack: _unmounted(stack, plan),
            lambda stack: [_write(stack, plan)],
        ]
        for scenario in scenarios:
            rows += _measure_valid(stack, scenario)
    load = f"load avg {load_before} before, {_load()} after, {os.cpu_count()} cpus"
    for row in rows:
        row["note"] = f"{row['note']}; {load}"
    return rows


if __name__ == "__main__":
    for result in run(quick="--full" not in sys.argv):
        print(result)
