"""The guide's TRANSFER_STATE_STORE_* environment names choose the example stack's transfer state store."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxon_core.config import load_config
from fluxon_fs.config import FsRoleConfig
from fluxon_fs.demo.stack import StackSettings, fs_master_config, transfer_state_store_from_env
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.transfer.jobs import JobSpec
from tests.support.fs_cluster import ADMIN, MASTER_KEY, fs_cluster
from tests.support.trees import assert_same_tree, make_tree


def _panel_block(env: dict[str, str], tmp_path: Path) -> object:
    settings = StackSettings.from_env(tmp_path, env)
    config = load_config(FsRoleConfig, fs_master_config(settings))  # what the fs master will parse
    return config.fluxon_fs.master_panel.transfer_state_store


def test_sqlite_stays_the_embedded_default(tmp_path: Path) -> None:
    assert transfer_state_store_from_env({}) is None
    assert _panel_block({}, tmp_path) is None


def test_pd_endpoints_select_tikv_with_the_guides_prefix(tmp_path: Path) -> None:
    env = {
        "TRANSFER_STATE_STORE_PD_ENDPOINTS": "127.0.0.1:12379, 127.0.0.2:12379",
        "TRANSFER_STATE_STORE_KEY_PREFIX": "/fluxon_fs_transfer/demo-fs-cluster/",
    }
    block = _panel_block(env, tmp_path)
    assert block.kind == "tikv"
    assert block.options.pd_endpoints == ["127.0.0.1:12379", "127.0.0.2:12379"]
    assert block.options.key_prefix == "/fluxon_fs_transfer/demo-fs-cluster/"


def test_etcd_endpoints_select_etcd_with_a_prefix_of_the_cluster(tmp_path: Path) -> None:
    block = _panel_block({"TRANSFER_STATE_STORE_ETCD_ENDPOINTS": "10.0.0.1:2379", "CLUSTER_NAME": "prod"}, tmp_path)
    assert block.kind == "etcd"
    assert block.options.endpoints == ["10.0.0.1:2379"] and block.options.key_prefix == "/fluxon_fs_transfer/prod/"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"TRANSFER_STATE_STORE_PD_ENDPOINTS": "a:1", "TRANSFER_STATE_STORE_ETCD_ENDPOINTS": "b:2"},
            "not both",
        ),
        ({"TRANSFER_STATE_STORE_KEY_PREFIX": "/x/"}, "TRANSFER_STATE_STORE_KEY_PREFIX needs"),
    ],
)
def test_contradictory_settings_are_refused_by_name(env: dict[str, str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        StackSettings.from_env(tmp_path, env)


@pytest.mark.etcd
def test_a_job_runs_on_the_etcd_store_the_environment_names(etcd_server, tmp_path: Path) -> None:
    block = transfer_state_store_from_env(
        {"TRANSFER_STATE_STORE_ETCD_ENDPOINTS": etcd_server.endpoint, "TRANSFER_STATE_STORE_KEY_PREFIX": "/stack-env/"}
    )
    with fs_cluster() as fs:
        fs.start_master(transfer_state_store=block)
        src, dst = fs.export_dir("src"), fs.export_dir("dst")
        make_tree(src / "data", files=12)
        fs.start_agent("agent-1", {"src": str(src), "dst": str(dst)})
        store = fs.kv.external("stack-env-client", fs.host)
        client = TransferClient(store, MASTER_KEY, *ADMIN)
        job_id = client.create_job(
            JobSpec(source_export="src", source_dir="data", target_export="dst", target_prefix="")
        )
        assert client.wait(job_id, timeout_s=120)["state"] == "succeeded"
        assert_same_tree(src / "data", dst / "data")
