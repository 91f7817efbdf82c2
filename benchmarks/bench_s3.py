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

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from benchmarks.bench_mount import MIB, SMALL_FILE_BYTES, _checked, _load
from benchmarks.support.fs_stack import FsStack, fs_stack
from benchmarks.support.versus_mount import cold_big_row, small_file_rows, warm_big_row, with_conditions
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


def run(quick: bool) -> list[dict[str, Any]]:
    """Start the stack and a gateway, measure each scenario; one row per scenario."""
    plan = _plan(quick)
    load_before = _load()
    presigned_s: list[float] = []
    with fs_stack(pool_bytes=f"{plan['pool']}MiB") as stack, _gateway(stack) as (s3, _url), httpx.Client() as http:

        def read(key: str) -> int:
            return len(s3.get_object(Bucket=stack.export_name, Key=key)["Body"].read())

        def fetch_presigned(keys: list[str]) -> None:
            # The same warm GETs as presigned URLs signed beforehand: the gateway's share without boto3's.
            urls = [
                s3.generate_presigned_url("get_object", Params={"Bucket": stack.export_name, "Key": key}, ExpiresIn=600)
                for key in keys
            ]
            start = time.perf_counter()
            for url in urls:
                _checked(len(http.get(url).content), SMALL_FILE_BYTES, url)
            presigned_s.append((time.perf_counter() - start) / len(urls))

        def presigned_note() -> str:
            median = sorted(presigned_s)[len(presigned_s) // 2] * 1e6
            return f"the same warm GETs as presigned URLs with httpx (no client-side signing): {median:.0f} us/op"

        big = {"size": plan["big_bytes"], "rounds": plan["rounds"], "target": THROUGHPUT_TARGET}
        rows = [
            warm_big_row(stack, read, title="s3 boto3 GET vs mount, read", **big),
            cold_big_row(stack, read, title="s3 boto3 GET vs mount, read", **big),
            *small_file_rows(
                stack,
                read,
                title="s3 boto3 GET vs mount, read",
                count=plan["small_files"],
                rounds=plan["rounds"],
                target=LATENCY_TARGET,
                what="s3: boto3 get_object",
                after_round=fetch_presigned,
                warm_note=presigned_note,
            ),
        ]
        problem = stack.pool_problem()
    return with_conditions(rows, load_before, problem)


if __name__ == "__main__":
    for result in run(quick="--full" not in sys.argv):
        print(result)
