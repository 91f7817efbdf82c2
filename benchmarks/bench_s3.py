"""S3 gateway benchmarks: GETs through the gateway side by side with the same reads through a mount, one run.

The stack of :mod:`benchmarks.support.fs_stack` (all on this host) serves the export; this process
has it mounted, and an S3 gateway process attached to the same host pool serves it as a bucket.
The S3 side is boto3 (``get_object(...)["Body"].read()``, SigV4 signed, one HTTP connection
kept alive) — what a user's script does. Both sides read the same pieces from the same pool, so
the ratio is the cost of HTTP, signing and the gateway hop:

* warm 64 MiB object (content in the host pool) and cold 64 MiB object (a new file per side and round);
* 1000 objects of 4 KiB, cold (a new directory per side and round), then the same again warm.

For the small objects a third figure separates client from server: the same GETs as presigned URLs
(signed beforehand) fetched with httpx, in the note. ``python -m benchmarks.bench_s3 [--full]`` prints the rows.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

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
from fluxon_fs.roles import start_s3_gateway_process
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig
from tests.support.fs_cluster import ADMIN, MASTER_KEY

THROUGHPUT_TARGET = 0.25
"""A GET through the gateway moves at least this fraction of the mount's throughput (HTTP on loopback)..."""
LATENCY_TARGET = 10.0
"""...and a small object costs at most this many times the mount's open+read+close."""
REGION = "us-east-1"


def _plan(quick: bool) -> dict[str, int]:
    return {"big_bytes": 64 * MIB, "small_files": 1000, "rounds": 3 if quick else 7, "pool": 1024}


@contextmanager
def _gateway(stack: FsStack) -> Iterator[tuple[Any, str]]:
    """A running S3 gateway on the stack and a boto3 client of the admin's new access key."""
    import boto3
    from botocore.config import Config

    config = {
        "kvclient": stack.kvclient("bench-s3-gateway"),
        "fluxon_fs": {
            "master": {"instance_key": MASTER_KEY},
            "service_secret_file": str(stack.root / "fs_service.secret"),
            "s3_gateway": {"listen_addr": "127.0.0.1:0", "region": REGION},
        },
    }
    proc = start_s3_gateway_process(config, workdir=stack.root / "s3-gateway")
    try:
        url = proc.wait_ready(60).fields["s3"]
        store = SqliteAccessStore(SqliteAccessStoreConfig(path=str(stack.root / "access.db")))
        try:
            key = store.create_access_key(ADMIN[0])
        finally:
            store.close()
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name=REGION,
            aws_access_key_id=key.record.access_key_id,
            aws_secret_access_key=key.secret_access_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        yield client, url
    finally:
        proc.terminate()
        proc.wait(15)


def _get(s3: Any, bucket: str, key: str) -> int:
    return len(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _warm_big(stack: FsStack, s3: Any, plan: dict[str, int]) -> dict[str, Any]:
    size = plan["big_bytes"]
    _write_local(stack.export_root / "warm.bin", os.urandom(size))
    mounted = stack.mount_dir / "warm.bin"
    _checked(_read_all(mounted), size, str(mounted))  # fills the pool
    _checked(_get(s3, stack.export_name, "warm.bin"), size, "s3 warm.bin")
    pair = Pair()
    for _ in range(plan["rounds"]):
        s3_s = _timed(lambda: _checked(_get(s3, stack.export_name, "warm.bin"), size, "warm.bin"))
        mount_s = _timed(lambda: _checked(_read_all(mounted), size, str(mounted)))
        pair.add(s3_s, mount_s)
    os.unlink(stack.export_root / "warm.bin")
    return _throughput_row(
        f"s3 warm GET {size // MIB} MiB object, boto3 vs mount",
        pair,
        size,
        THROUGHPUT_TARGET,
        "content in the host pool; baseline: open().read() of the same file through the mount",
    )


def _cold_big(stack: FsStack, s3: Any, plan: dict[str, int]) -> dict[str, Any]:
    size = plan["big_bytes"]
    data = os.urandom(size)
    pair = Pair()
    for index in range(plan["rounds"]):
        for side in ("s3", "mount"):
            _write_local(stack.export_root / f"cold-{side}-{index}.bin", data)
        mounted = stack.mount_dir / f"cold-mount-{index}.bin"
        s3_s = _timed(lambda: _checked(_get(s3, stack.export_name, f"cold-s3-{index}.bin"), size, "cold"))  # noqa: B023
        mount_s = _timed(lambda: _checked(_read_all(mounted), size, str(mounted)))  # noqa: B023
        pair.add(s3_s, mount_s)
        for side in ("s3", "mount"):
            os.unlink(stack.export_root / f"cold-{side}-{index}.bin")
    return _throughput_row(
        f"s3 cold GET {size // MIB} MiB object, boto3 vs mount",
        pair,
        size,
        THROUGHPUT_TARGET,
        "a new file per side and round (agent over loopback, pieces put into the pool); "
        "baseline: open().read() through the mount",
    )


def _small_files(stack: FsStack, s3: Any, plan: dict[str, int]) -> list[dict[str, Any]]:
    count = plan["small_files"]
    cold, warm = Pair(), Pair()
    presigned_s: list[float] = []
    http = httpx.Client()
    try:
        for index in range(plan["rounds"]):
            trees = {side: f"small-{side}-{index}" for side in ("s3", "mount")}
            names = {side: _small_tree(stack.export_root / tree, count) for side, tree in trees.items()}
            keys = [f"{trees['s3']}/{name}" for name in names["s3"]]
            mounted = [stack.mount_dir / trees["mount"] / name for name in names["mount"]]

            def read_s3(keys: list[str] = keys) -> None:
                for key in keys:
                    _checked(_get(s3, stack.export_name, key), SMALL_FILE_BYTES, key)

            def read_mounted(paths: list[Path] = mounted) -> None:
                for path in paths:
                    _checked(_read_all(path), SMALL_FILE_BYTES, str(path))

            cold.add(_timed(read_s3) / count, _timed(read_mounted) / count)
            warm.add(_timed(read_s3) / count, _timed(read_mounted) / count)
            urls = [
                s3.generate_presigned_url("get_object", Params={"Bucket": stack.export_name, "Key": key}, ExpiresIn=600)
                for key in keys
            ]
            start = time.perf_counter()
            for url in urls:
                _checked(len(http.get(url).content), SMALL_FILE_BYTES, url)
            presigned_s.append((time.perf_counter() - start) / count)
            for tree in trees.values():
                shutil.rmtree(stack.export_root / tree)
    finally:
        http.close()
    presigned = sorted(presigned_s)[len(presigned_s) // 2] * 1e6
    what = f"{count} objects of 4 KiB, each read whole (s3: boto3 get_object; mount: open+read+close)"
    return [
        _latency_row(
            f"s3 cold GET {count} x 4 KiB objects, boto3 vs mount",
            cold,
            "median",
            LATENCY_TARGET,
            f"<= {LATENCY_TARGET:g}x latency",
            f"{what}; a new directory per side and round",
        ),
        _latency_row(
            f"s3 warm GET {count} x 4 KiB objects, boto3 vs mount",
            warm,
            "median",
            LATENCY_TARGET,
            f"<= {LATENCY_TARGET:g}x latency",
            f"{what}; the same objects again (pieces in the pool, metadata cached); the same warm GETs as "
            f"presigned URLs with httpx (no client-side signing): {presigned:.0f} us/op",
        ),
    ]


def run(quick: bool) -> list[dict[str, Any]]:
    """Start the stack and a gateway, measure each scenario; one row per scenario."""
    plan = _plan(quick)
    load_before = _load()
    with fs_stack(pool_bytes=f"{plan['pool']}MiB") as stack, _gateway(stack) as (s3, _url):
        rows = [_warm_big(stack, s3, plan), _cold_big(stack, s3, plan), *_small_files(stack, s3, plan)]
        problem = stack.pool_problem()
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
