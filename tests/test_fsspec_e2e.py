"""``fluxon://`` through fsspec and the data tools on top of it, against a real agent process.

What reaches the agent is counted by the agent itself (``fluxon_fs_ops_total``), so "warm" means
no ``read_chunk`` call: the pieces came from the host pool. The module's mount (same host, same
pool, another KV client) is the other reader of the "mount and fsspec share the cache" tests.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import dask.dataframe as dd
import fsspec
import httpx
import pandas as pd
import pytest

from fluxon_core.config import ConfigError
from tests.support.fs_cluster import ADMIN
from tests.support.fsspec_e2e import fsspec_options
from tests.support.mount_e2e import MountE2E, mount_e2e_fixture
from tests.support.poll import wait_until

MiB = 1024 * 1024
SCOPED = ("scoped", "Sc0ped-pw-4e1a")
"""read_write on ``demo:team`` only."""
USERS = [
    {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
    {"username": SCOPED[0], "password": SCOPED[1]},
]
SCOPES = [{"export_name": "demo", "prefix": "team", "mode": "read_write", "usernames": [SCOPED[0]]}]

e2e = mount_e2e_fixture(users=USERS, scopes=SCOPES)


@pytest.fixture(scope="module")
def options(e2e: MountE2E) -> Iterator[dict[str, Any]]:
    options = fsspec_options(e2e)
    yield options
    fsspec.filesystem("fluxon", **options).close()


@pytest.fixture(scope="module")
def fs(options: dict[str, Any]) -> Any:
    return fsspec.filesystem("fluxon", **options)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def read_through_mount(e2e: MountE2E, relpath: str) -> bytes:
    with open(e2e.path(relpath), "rb") as f:
        return f.read()


def test_bad_storage_options_get_errors_naming_what_is_wrong(e2e: MountE2E, tmp_path: Any) -> None:
    good = fsspec_options(e2e, instance_key="fsspec-bad")
    kvclient = good["config"]["kvclient"]
    cases: list[tuple[type[BaseException], str, dict[str, Any]]] = [
        (PermissionError, "wrong username or password", {**good, "password": "not-the-password"}),
        (ConfigError, "kvclient", {**good, "config": {"fluxon_fs": good["config"]["fluxon_fs"]}}),
        (TypeError, "'config' must be a YAML path", {**good, "config": 42}),
        (FileNotFoundError, str(tmp_path / "missing.yaml"), {**good, "config": str(tmp_path / "missing.yaml")}),
        (ValueError, "need an identity", {"config": good["config"]}),
        (
            ConnectionError,
            "fluxon_fs.master.instance_key",
            {**good, "config": {"kvclient": kvclient, "fluxon_fs": {"master": {"instance_key": "no-such-master"}}}},
        ),
    ]
    for kind, text, options in cases:
        with pytest.raises(kind, match=re.escape(text)):
            fsspec.filesystem("fluxon", skip_instance_cache=True, **options)


# ----- one cache for mounts and fsspec -------------------------------------------------------------


def test_a_file_read_through_the_mount_is_warm_for_fsspec(e2e: MountE2E, fs: Any) -> None:
    name = fresh("mount-first")
    data = os.urandom(3 * MiB + 5)
    e2e.real(name).write_bytes(data)
    assert read_through_mount(e2e, name) == data

    got, calls = e2e.agent_ops_during(lambda: fs.cat_file(f"demo/{name}"))
    assert got == data
    assert calls["read_chunk"] == 0, calls  # four pieces, all from the host pool


def test_a_file_read_through_fsspec_is_warm_for_the_mount(e2e: MountE2E, fs: Any) -> None:
    name = fresh("fsspec-first")
    data = os.urandom(2 * MiB + 17)
    e2e.real(name).write_bytes(data)
    got, calls = e2e.agent_ops_during(lambda: fs.cat_file(f"fluxon://demo/{name}"))
    assert got == data and calls["read_chunk"] == 3, calls  # cold: each piece once

    got, calls = e2e.agent_ops_during(lambda: read_through_mount(e2e, name))
    assert got == data
    assert calls["read_chunk"] == 0, calls


def test_a_ranged_read_fetches_only_the_pieces_it_needs(e2e: MountE2E, fs: Any) -> None:
    name = fresh("ranged")
    data = os.urandom(8 * MiB)
    e2e.real(name).write_bytes(data)
    start, end = 5 * MiB + 100, 5 * MiB + 200
    got, calls = e2e.agent_ops_during(lambda: fs.cat_file(f"demo/{name}", start=start, end=end))
    assert got == data[start:end]
    assert calls["read_chunk"] == 1, calls

    start, end = 2 * MiB - 10, 3 * MiB + 10  # pieces 1, 2 and 3
    got, calls = e2e.agent_ops_during(lambda: fs.cat_file(f"demo/{name}", start=start, end=end))
    assert got == data[start:end]
    assert calls["read_chunk"] == 3, calls

    got, calls = e2e.agent_ops_during(lambda: fs.cat_file(f"demo/{name}", start=-MiB))  # piece 7
    assert got == data[-MiB:] and calls["read_chunk"] == 1, calls

    got, calls = e2e.agent_ops_during(lambda: fs.cat_file(f"demo/{name}", start=5 * MiB, end=5 * MiB + 50))
    assert got == data[5 * MiB : 5 * MiB + 50] and calls["read_chunk"] == 0, calls  # piece 5 is in the pool now


def test_a_write_is_published_when_the_file_closes(e2e: MountE2E, fs: Any) -> None:
    name = fresh("written")
    data = os.urandom(MiB + 3)
    with fs.open(f"demo/out/{name}", "wb") as f:
        f.write(data[:1000])
        f.write(data[1000:])
    assert e2e.real(f"out/{name}").read_bytes() == data
    assert read_through_mount(e2e, f"out/{name}") == data
    with fsspec.open(f"fluxon://demo/out/{name}.txt", "w", **fsspec_options(e2e)) as text:
        text.write("héllo\n")
    assert e2e.real(f"out/{name}.txt").read_text(encoding="utf-8") == "héllo\n"
    with fs.open(f"demo/out/{name}.txt", "ab") as f:
        f.write(b"more\n")
    assert fs.cat_file(f"demo/out/{name}.txt") == "héllo\nmore\n".encode()


def test_cache_figures_of_fsspec_reads_reach_the_panel(e2e: MountE2E) -> None:
    # Export aux: this module's mount reads nothing there, so every figure is this filesystem's.
    name = fresh("counted")
    data = os.urandom(2 * MiB)
    e2e.real(name, "aux").write_bytes(data)
    options = fsspec_options(e2e, instance_key="fsspec-reports")
    options["config"]["fluxon_fs"]["master"]["report_interval_ms"] = 200
    reporting = fsspec.filesystem("fluxon", **options)
    assert e2e.fs.master_ready is not None
    base = e2e.fs.master_ready.fields["panel"]
    login = httpx.post(f"{base}/api/login", json={"username": ADMIN[0], "password": ADMIN[1]}, timeout=15)
    assert login.status_code == 200, login.text

    def figures() -> tuple[int, int]:
        reply = httpx.get(
            f"{base}/api/overview", headers={"Authorization": f"Bearer {login.json()['token']}"}, timeout=15
        )
        assert reply.status_code == 200, reply.text
        aux = next(export for export in reply.json()["exports"] if export["name"] == "aux")
        return aux["cache_hits"], aux["cache_misses"]

    try:
        assert reporting.cat_file(f"aux/{name}") == data  # cold: two pieces from the agent
        wait_until(lambda: figures() == (0, 2), 10, "the misses of a live fluxon:// filesystem")
        assert reporting.cat_file(f"aux/{name}") == data  # warm: two pieces from the pool
        wait_until(lambda: figures() == (2, 2), 10, "the hits of a live fluxon:// filesystem")
    finally:
        reporting.close()


# ----- export operations ---------------------------------------------------------------------------


def test_listing_and_metadata_map_to_the_export(e2e: MountE2E, fs: Any) -> None:
    base = fresh("tree")
    (e2e.real(base) / "sub").mkdir(parents=True)
    e2e.real(f"{base}/a.csv").write_bytes(b"1")
    e2e.real(f"{base}/sub/b.csv").write_bytes(b"22")
    assert {entry["name"] for entry in fs.ls("")} >= {"demo", "aux"}
    assert fs.ls(f"demo/{base}", detail=False) == [f"demo/{base}/a.csv", f"demo/{base}/sub"]
    assert fs.find(f"fluxon://demo/{base}") == [f"demo/{base}/a.csv", f"demo/{base}/sub/b.csv"]
    assert fs.glob(f"demo/{base}/**/*.csv") == [f"demo/{base}/a.csv", f"demo/{base}/sub/b.csv"]
    info = fs.info(f"demo/{base}/sub/b.csv")
    assert info["type"] == "file" and info["size"] == 2
    assert fs.info(f"demo/{base}/sub")["type"] == "directory"
    assert fs.isdir(f"demo/{base}") and fs.isfile(f"demo/{base}/a.csv") and not fs.exists(f"demo/{base}/zz")
    real = e2e.real(f"{base}/a.csv").stat()
    assert fs.modified(f"demo/{base}/a.csv") == datetime.fromtimestamp(real.st_mtime_ns / 1e9, tz=UTC)
    assert fs.created(f"demo/{base}/a.csv").timestamp() == pytest.approx(real.st_ctime_ns / 1e9)


def test_changes_map_to_export_operations(e2e: MountE2E, fs: Any) -> None:
    base = f"demo/{fresh('ops')}"
    fs.makedirs(f"{base}/x/y")
    fs.makedirs(f"{base}/x/y", exist_ok=True)
    fs.mkdir(f"{base}/solo", create_parents=False)
    fs.pipe_file(f"{base}/x/y/f.bin", b"payload")
    fs.cp_file(f"{base}/x/y/f.bin", f"{base}/copy.bin")
    fs.mv(f"{base}/copy.bin", f"{base}/solo")  # into the directory, as mv(1)
    fs.mv(f"{base}/x", f"{base}/moved", recursive=True)  # a rename, not a copy
    root = e2e.real(base.removeprefix("demo/"))
    assert (root / "solo/copy.bin").read_bytes() == b"payload"
    assert (root / "moved/y/f.bin").read_bytes() == b"payload" and not (root / "x").exists()
    fs.rm(f"{base}/solo/copy.bin")
    fs.rmdir(f"{base}/solo")
    fs.touch(f"{base}/empty")
    assert (root / "empty").read_bytes() == b""
    fs.rm(base, recursive=True)
    assert not root.exists()


def test_errors_are_the_ones_fsspec_callers_expect(e2e: MountE2E, fs: Any) -> None:
    base = f"demo/{fresh('errors')}"
    fs.pipe_file(f"{base}/file", b"x")
    cases = [
        (FileNotFoundError, lambda: fs.cat_file(f"{base}/missing"), f"{base}/missing"),
        (FileNotFoundError, lambda: fs.info(f"{base}/missing"), f"{base}/missing"),
        (FileNotFoundError, lambda: fs.ls("nosuchexport/x"), "nosuchexport/x"),
        (FileExistsError, lambda: fs.mkdir(f"{base}/file", create_parents=False), f"{base}/file"),
        (FileExistsError, lambda: fs.makedirs(base), base),
        (FileExistsError, lambda: fs.makedirs(f"{base}/file", exist_ok=True), f"{base}/file"),
        (NotADirectoryError, lambda: fs.makedirs(f"{base}/file/sub", exist_ok=True), f"{base}/file/sub"),
        (FileExistsError, lambda: fs.open(f"{base}/file", "xb"), f"{base}/file"),
        (FileExistsError, lambda: fs.pipe_file(f"{base}/file", b"y", mode="create"), f"{base}/file"),
        (IsADirectoryError, lambda: fs.cat_file(base), base),
        (IsADirectoryError, lambda: fs.open(base, "wb"), base),
        (NotADirectoryError, lambda: fs.ls(f"{base}/file/below"), f"{base}/file/below"),
        (PermissionError, lambda: fs.cat_file("demo/../aux/x"), "demo/../aux/x"),
    ]
    for kind, call, path in cases:
        with pytest.raises(kind) as caught:
            call()
        assert caught.value.filename == f"fluxon://{path}", (kind, path, caught.value)
    with pytest.raises(OSError) as caught:
        fs.rmdir(base)
    assert caught.value.errno == errno.ENOTEMPTY and caught.value.filename == f"fluxon://{base}"
    assert fs.cat_file(f"{base}/file") == b"x"


def test_a_scoped_user_is_refused_outside_its_subtree(e2e: MountE2E) -> None:
    e2e.real("team").mkdir(exist_ok=True)
    e2e.real("secret.txt").write_bytes(b"not for scoped")
    scoped = fsspec.filesystem("fluxon", **fsspec_options(e2e, SCOPED, instance_key="fsspec-scoped"))
    try:
        name = fresh("mine")
        scoped.pipe_file(f"demo/team/{name}", b"inside")
        assert scoped.cat_file(f"demo/team/{name}") == b"inside"
        scoped.pipe_file(f"demo/team/{name}-dir/a/b.txt", b"deep")  # makes the missing directories
        scoped.makedirs(f"demo/team/{name}-dir/c/d")
        assert e2e.real(f"team/{name}-dir/a/b.txt").read_bytes() == b"deep"
        assert e2e.real(f"team/{name}-dir/c/d").is_dir()
        attacks = [
            lambda: scoped.cat_file("demo/secret.txt"),
            lambda: scoped.cat_file("demo/team/../secret.txt"),
            lambda: scoped.cat_file("fluxon://demo//secret.txt", start=0, end=4),
            lambda: scoped.pipe_file("demo/planted.txt", b"evil"),
            lambda: scoped.pipe_file("demo/planted/deep/file.txt", b"evil"),
            lambda: scoped.makedirs("demo/planted/deep"),
            lambda: scoped.mv(f"demo/team/{name}", "demo/escaped"),
            lambda: scoped.rm_file("demo/secret.txt"),
            lambda: scoped.ls("aux"),
            lambda: scoped.cat_file("aux/anything"),
        ]
        for attack in attacks:
            with pytest.raises(PermissionError):
                attack()
        assert e2e.real("secret.txt").read_bytes() == b"not for scoped"
        assert not e2e.real("planted.txt").exists() and not e2e.real("planted").exists()
        assert not e2e.real("escaped").exists()
        assert e2e.real(f"team/{name}").read_bytes() == b"inside"
    finally:
        scoped.close()


def test_symlinks_leaving_the_export_are_refused(e2e: MountE2E, fs: Any) -> None:
    base = fresh("links")
    root = e2e.real(base)
    root.mkdir()
    secret = e2e.base / f"{base}-secret.txt"  # outside every export root
    secret.write_bytes(b"TOP SECRET")
    (root / "inside.txt").write_bytes(b"inside")
    os.symlink("inside.txt", root / "ok-link")
    os.symlink(os.path.relpath(secret, root), root / "climb-link")
    os.symlink(str(secret), root / "abs-link")
    os.symlink("/etc", root / "etc-dir")

    assert fs.cat_file(f"demo/{base}/ok-link") == b"inside"
    for name in ("climb-link", "abs-link"):
        for attack in (
            lambda: fs.cat_file(f"demo/{base}/{name}"),  # noqa: B023
            lambda: fs.cat_file(f"demo/{base}/{name}", start=0, end=3),  # noqa: B023
            lambda: fs.pipe_file(f"demo/{base}/{name}", b"overwritten"),  # noqa: B023
            lambda: fs.open(f"demo/{base}/{name}", "ab"),  # noqa: B023
        ):
            with pytest.raises(PermissionError):
                attack()
    with pytest.raises(PermissionError):
        fs.ls(f"demo/{base}/etc-dir")
    with pytest.raises(PermissionError):
        fs.cat_file(f"demo/{base}/etc-dir/passwd")
    listed = {entry["name"].rsplit("/", 1)[1]: entry for entry in fs.ls(f"demo/{base}")}
    assert listed["ok-link"]["type"] == "file"
    assert listed["climb-link"]["islink"] and listed["climb-link"]["type"] == "other"  # listed, not followed
    assert secret.read_bytes() == b"TOP SECRET"


# ----- data tools ----------------------------------------------------------------------------------


def test_pandas_and_pyarrow_write_and_read_parquet(e2e: MountE2E, options: dict[str, Any]) -> None:
    frame = pd.DataFrame({"id": range(1000), "name": [f"row-{i}" for i in range(1000)]})
    url = f"fluxon://demo/{fresh('parquet')}/table.parquet"
    frame.to_parquet(url, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=options), frame)
    pd.testing.assert_frame_equal(pd.read_parquet(url, storage_options=options, columns=["name"]), frame[["name"]])


NO_PATCHER_READER = """
import builtins, hashlib, io, json, sys
import pandas as pd
from fluxon_fs.patcher.intercept import process_interceptor
url, options = sys.argv[1], json.loads(sys.argv[2])
frame = pd.read_parquet(url, storage_options=options)
frame.to_parquet(url + ".copy.parquet", storage_options=options)
print(json.dumps({"rows": len(frame), "patched": process_interceptor().installed or builtins.open is not io.open}))
"""


def test_a_process_without_a_patcher_reads_and_writes_parquet(e2e: MountE2E, options: dict[str, Any]) -> None:
    frame = pd.DataFrame({"x": range(100)})
    base = fresh("no-patcher")
    url = f"fluxon://demo/{base}/t.parquet"
    frame.to_parquet(url, storage_options=options)
    child_options = fsspec_options(e2e, instance_key="fsspec-child")
    done = subprocess.run(
        [sys.executable, "-c", NO_PATCHER_READER, url, json.dumps(child_options)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"rows": 100, "patched": False}
    pd.testing.assert_frame_equal(pd.read_parquet(e2e.real(f"{base}/t.parquet.copy.parquet")), frame)


@pytest.mark.parametrize("scheduler", ["threads", "processes"])
def test_dask_reads_a_directory_of_csv_files_in_parallel(
    e2e: MountE2E, fs: Any, options: dict[str, Any], scheduler: str
) -> None:
    base = fresh("csv")
    for part in range(4):
        rows = "".join(f"{part * 100 + i},{i % 7}\n" for i in range(100))
        fs.pipe_file(f"demo/{base}/part-{part}.csv", f"key,value\n{rows}".encode())
    frame = dd.read_csv(f"fluxon://demo/{base}/*.csv", storage_options=options)
    assert frame.npartitions == 4
    result = frame.compute(scheduler=scheduler, num_workers=2)
    assert sorted(result["key"]) == list(range(400))
    assert int(result["value"].sum()) == sum(i % 7 for i in range(100)) * 4
