"""Local cache rules through the public patcher on a real KV plane: publish on close (not on flush),
``os.open``/``os.close`` too, reads served from KV while the cached version matches the file."""

from __future__ import annotations

import os

import pytest

from fluxon_fs.patcher.fs_patcher import FluxonFsPatcher
from tests.support.kv_cluster import kv_cluster

PREFIX = "/rules_test/"


@pytest.fixture(scope="module")
def kv():
    with kv_cluster() as cluster:
        cluster.start_master()
        cluster.start_owner("owner-h1", "h1")
        yield cluster


@pytest.fixture
def rules(kv, tmp_path):
    store = kv.external(f"rules-{tmp_path.name[-12:]}", "h1")
    cached = tmp_path / "cached"
    cached.mkdir()
    patcher = FluxonFsPatcher(store)
    patcher.set_master_config_yaml("fluxon_fs: {master: {instance_key: fs-master}}")
    patcher.set_cache_config_yaml(
        "fluxon_fs: {master: {instance_key: fs-master}, cache: {rules: "
        f"[{{dir_abs: '{cached}', kv_key_prefix: '{PREFIX}{tmp_path.name}/'}}]}}}}"
    )
    patcher.install()
    yield store, cached, f"{PREFIX}{tmp_path.name}/"
    patcher.uninstall()


def read(path, mode="r"):
    with open(path, mode) as handle:
        return handle.read()


def kv_bytes(store, key):
    result = store.get_blocking(key)
    return None if result.is_err() else bytes(result.unwrap().access()["data"])


def test_open_publishes_on_close_not_on_flush(rules):
    store, cached, prefix = rules
    with open(cached / "a.txt", "w") as handle:
        handle.write("hello")
        handle.flush()
        assert kv_bytes(store, prefix + "a.txt") is None
    assert kv_bytes(store, prefix + "a.txt") == b"hello"


def test_os_open_publishes_at_os_close(rules):
    store, cached, prefix = rules
    fd = os.open(cached / "b.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"raw bytes")
    assert kv_bytes(store, prefix + "b.bin") is None
    os.close(fd)
    assert kv_bytes(store, prefix + "b.bin") == b"raw bytes"


def test_reads_come_from_kv_while_the_version_matches(rules):
    store, cached, prefix = rules
    path = cached / "c.txt"
    path.write_text("disk!")
    st = path.stat()
    # a value of the same version but different bytes can only be seen if the read came from KV
    store.put_blocking(prefix + "c.txt", {"data": b"kv-v1", "size": st.st_size, "mtime_ns": st.st_mtime_ns}).unwrap()
    assert read(path) == "kv-v1"
    assert read(path, "rb") == b"kv-v1"
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert read(path) == "disk!"  # changed version: read from disk, then cached
    assert kv_bytes(store, prefix + "c.txt") == b"disk!"


def test_paths_outside_rules_are_untouched(rules, tmp_path):
    store, _cached, prefix = rules
    other = tmp_path / "plain.txt"
    with open(other, "w") as handle:
        handle.write("local")
    assert read(other) == "local"
    assert kv_bytes(store, prefix + "plain.txt") is None
