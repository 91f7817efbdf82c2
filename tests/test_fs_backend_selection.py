"""FS roles and the mount client take their backends from YAML: the access store by ``kind:`` in the fs
master, metrics sinks from a client YAML's ``monitoring`` block; unknown kinds are refused by name."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fluxon_core.errors import ApiError
from fluxon_core.kv import KvClient, new_store
from fluxon_fs import FluxonFsPatcher, install_patcher_from_master
from fluxon_fs.roles import start_fs_master_process
from tests.support.fs_cluster import ADMIN, MASTER_KEY, FsCluster, fs_cluster
from tests.support.mount_e2e import cache_config

EXPORT = "demo"


@pytest.fixture(scope="module")
def fs() -> Iterator[FsCluster]:
    with fs_cluster() as cluster:
        cluster.start_master()
        root = cluster.export_dir(EXPORT)
        (root / "hello.txt").write_text("hello from the agent\n")
        cluster.start_agent("agent-1", {EXPORT: str(root)})
        yield cluster


@pytest.fixture
def client(fs: FsCluster) -> Iterator[KvClient]:
    store = new_store(fs.kvclient(f"client-{os.getpid()}-{id(object())}")).unwrap("new_store")
    yield store
    store.close()


def _cache_yaml(fs: FsCluster, **extra: object) -> str:
    return json.dumps({"fluxon_fs": cache_config({EXPORT: str(fs.export_dir(EXPORT))}, 1000, 5000), **extra})


def test_fs_master_opens_the_access_store_kind_and_options_from_yaml(tmp_path: Path) -> None:
    with fs_cluster() as cluster:
        chosen = tmp_path / "chosen" / "users.db"
        config = cluster.master_config()
        panel = config["fluxon_fs"]["master_panel"]
        del panel["access_db_path"]
        panel["access_store"] = {"kind": "sqlite", "sqlite": {"path": str(chosen), "password_hash": "scrypt"}}
        cluster.master = start_fs_master_process(config, workdir=cluster.root / "fs-master")
        cluster.master.wait_ready(60)

        # The bootstrap admin landed in the chosen file, hashed with the chosen option.
        with sqlite3.connect(chosen) as db:
            hashes = dict(db.execute("SELECT username, password_hash FROM users"))
        assert hashes[ADMIN[0]].startswith("$scrypt$")
        assert not (cluster.root / "access.db").exists()

        store = new_store(cluster.kvclient("client-access")).unwrap("new_store")
        try:
            patcher = FluxonFsPatcher(store)
            patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": {"instance_key": MASTER_KEY}}}))
            patcher.set_request_identity(*ADMIN)  # logs in against the chosen store
            with pytest.raises(ApiError):
                patcher.set_request_identity(ADMIN[0], "wrong-password")
        finally:
            store.close()


def _fluxon_start(role: str, config: dict, workdir: Path) -> subprocess.CompletedProcess[str]:
    config_file = workdir / f"{role}.yaml"
    workdir.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config))
    fluxon = Path(sys.executable).with_name("fluxon")
    return subprocess.run(
        [str(fluxon), "start", role, "-c", str(config_file), "-w", str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fs_master_refuses_an_unknown_access_store_kind_naming_the_field_and_the_installed_kinds(
    fs: FsCluster, tmp_path: Path
) -> None:
    config = fs.master_config()
    panel = config["fluxon_fs"]["master_panel"]
    del panel["access_db_path"]
    panel["access_store"] = {"kind": "ldap", "ldap": {"url": "ldap://nowhere"}}
    done = _fluxon_start("fs-master", config, tmp_path / "bad-master")
    assert done.returncode != 0
    assert "fluxon_fs.master_panel.access_store.kind" in done.stderr
    assert "'ldap'" in done.stderr and "sqlite" in done.stderr, done.stderr


def test_fs_master_refuses_two_access_stores(fs: FsCluster, tmp_path: Path) -> None:
    config = fs.master_config()
    config["fluxon_fs"]["master_panel"]["access_store"] = {"kind": "sqlite", "sqlite": {"path": str(tmp_path / "x")}}
    done = _fluxon_start("fs-master", config, tmp_path / "two-stores")
    assert done.returncode != 0
    assert "fluxon_fs.master_panel.access_store conflicts with access_db_path" in done.stderr


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_a_client_yaml_monitoring_block_starts_the_patchers_sinks(fs: FsCluster, client: KvClient) -> None:
    patcher = FluxonFsPatcher(client)
    patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": {"instance_key": MASTER_KEY}}}))
    patcher.set_cache_config_yaml(_cache_yaml(fs, monitoring={"prometheus": {"listen_addr": "127.0.0.1:0"}}))
    patcher.set_request_identity(*ADMIN)
    assert patcher.monitoring is not None and patcher.monitoring.prometheus_url
    url = patcher.monitoring.prometheus_url
    mount = fs.root / "mnt-monitored"
    with patcher:
        patcher.mount_remote_dir(str(mount), EXPORT)
        assert (mount / "hello.txt").read_text() == "hello from the agent\n"
        text = _scrape(url)
        assert 'fluxon_rpc_latency_seconds_count{path="/fluxon_fs/demo/' in text, text[:2000]
    # The last uninstall stops the sinks with the mounts.
    assert patcher.monitoring is None
    with pytest.raises(OSError):
        _scrape(url)


def test_without_a_monitoring_block_a_mount_client_starts_no_sink(fs: FsCluster, client: KvClient) -> None:
    patcher = FluxonFsPatcher(client)
    patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": {"instance_key": MASTER_KEY}}}))
    patcher.set_cache_config_yaml(_cache_yaml(fs))
    assert patcher.monitoring is None


def test_install_patcher_from_master_reads_the_monitoring_block_of_its_file(
    fs: FsCluster, client: KvClient, tmp_path: Path
) -> None:
    config_file = tmp_path / "reader.yaml"
    config_file.write_text(
        yaml.safe_dump(
            {
                "fluxon_fs": {"master": {"instance_key": MASTER_KEY}},
                "monitoring": {"prometheus": {"listen_addr": "127.0.0.1:0"}},
            }
        )
    )
    patcher = install_patcher_from_master(kv_store=client, config_path=str(config_file))
    try:
        assert patcher.monitoring is not None
        assert patcher.monitoring.prometheus_url is not None
        assert "# TYPE" in _scrape(patcher.monitoring.prometheus_url)
    finally:
        patcher.uninstall()
    assert patcher.monitoring is None


def test_a_client_yaml_naming_an_unknown_metrics_sink_kind_is_refused(fs: FsCluster, client: KvClient) -> None:
    patcher = FluxonFsPatcher(client)
    with pytest.raises(Exception, match=r"monitoring\.sinks\[0\]\.kind") as raised:
        patcher.set_cache_config_yaml(_cache_yaml(fs, monitoring={"sinks": [{"kind": "statsd"}]}))
    assert "prometheus" in str(raised.value) and "greptime" in str(raised.value)
    assert patcher.monitoring is None
