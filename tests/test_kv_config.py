"""FluxonKvClientConfig and KvMasterConfig: strict parsing with errors naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fluxon_core.config import ConfigError, load_yaml_file
from fluxon_core.kv import FluxonKvClientConfig, KvMasterConfig
from fluxon_core.kv.config import load_master_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "configs"


def external(**spec: object) -> dict:
    return {
        "instance_key": "reader-1",
        "fluxonkv_spec": {
            "cluster_name": "demo",
            "shared_memory_path": "/dev/shm/x",
            "shared_file_path": "/tmp/x",
            **spec,
        },
    }


def owner(dram: object = "1GiB", **spec: object) -> dict:
    return {
        "instance_key": "owner-1",
        "contribute_to_cluster_pool_size": {"dram": dram},
        "fluxonkv_spec": {"cluster_name": "demo", "share_mem_path": "/dev/shm/x", "master_address": "h:1", **spec},
    }


def test_external_config_parses_and_is_a_dict():
    cfg = FluxonKvClientConfig(external())
    assert isinstance(cfg, dict)
    settings = cfg.settings()
    assert not settings.is_owner
    assert settings.fluxonkv_spec.pool_root == "/dev/shm/x"
    assert str(settings.fluxonkv_spec.cluster_file_dir) == "/tmp/x/demo"
    assert settings.fluxonkv_spec.attach_timeout_ms == 30_000


def test_sizes_accept_units_1024_based():
    assert FluxonKvClientConfig(owner("1GiB")).settings().contribute_to_cluster_pool_size.dram == 1024**3
    assert FluxonKvClientConfig(owner("512MB")).settings().contribute_to_cluster_pool_size.dram == 512 * 1024**2
    assert FluxonKvClientConfig(owner(4096)).settings().contribute_to_cluster_pool_size.dram == 4096


def test_share_mem_path_is_the_older_spelling_of_both_paths():
    spec = FluxonKvClientConfig(owner()).settings().fluxonkv_spec
    assert spec.pool_root == spec.file_root == "/dev/shm/x"
    with pytest.raises(ConfigError, match=r"fluxonkv_spec\.share_mem_path cannot be combined with shared_memory_path"):
        FluxonKvClientConfig(owner(shared_memory_path="/dev/shm/y"))


@pytest.mark.parametrize("key", ["etcd_addresses", "sub_cluster", "large_file_paths", "master_address"])
def test_owner_only_keys_are_rejected_on_an_external_client_naming_the_key(key):
    value = {"etcd_addresses": ["h:2379"], "sub_cluster": "a", "large_file_paths": ["/data"], "master_address": "h:1"}[
        key
    ]
    with pytest.raises(ConfigError, match=rf"fluxonkv_spec\.{key} is owner-only"):
        FluxonKvClientConfig(external(**{key: value}))


def test_owner_must_know_how_to_find_the_master():
    data = owner()
    del data["fluxonkv_spec"]["master_address"]
    with pytest.raises(ConfigError, match=r"fluxonkv_spec\.master_address is required for an owner"):
        FluxonKvClientConfig(data)
    data["fluxonkv_spec"]["etcd_addresses"] = ["127.0.0.1:2379"]
    assert FluxonKvClientConfig(data).settings().is_owner


@pytest.mark.parametrize(
    ("mutate", "error", "pattern"),
    [
        (lambda d: d.update(surprise=1), ConfigError, r"^surprise is not a known field"),
        (
            lambda d: d["fluxonkv_spec"].update(clustr_name="x"),
            ConfigError,
            r"fluxonkv_spec\.clustr_name is not a known",
        ),
        (lambda d: d["fluxonkv_spec"].pop("cluster_name"), ConfigError, r"fluxonkv_spec\.cluster_name is required"),
        (lambda d: d.update(instance_key=5), TypeError, r"instance_key must be a string"),
        (
            lambda d: d["fluxonkv_spec"].update(shared_file_path="rel"),
            ConfigError,
            r"shared_file_path must be an absolute",
        ),
        (
            lambda d: d.update(contribute_to_cluster_pool_size={"dram": "lots"}),
            ConfigError,
            r"\.dram must be a byte size",
        ),
        (lambda d: d.update(contribute_to_cluster_pool_size={"vram": 1}), ConfigError, r"\.vram must be 0"),
        (lambda d: d["fluxonkv_spec"].update(attach_timeout_ms=0), ConfigError, r"attach_timeout_ms must be > 0"),
    ],
)
def test_bad_values_raise_naming_the_path(mutate, error, pattern):
    data = external()
    mutate(data)
    with pytest.raises(error, match=pattern):
        FluxonKvClientConfig(data)


def test_to_dict_to_yaml_and_from_file_round_trip(tmp_path):
    cfg = FluxonKvClientConfig(owner(sub_cluster="rack-1"))
    assert cfg.to_dict() == owner(sub_cluster="rack-1")
    path = tmp_path / "kv.yaml"
    path.write_text(cfg.to_yaml_str())
    again = FluxonKvClientConfig.from_file(path)
    assert again == cfg and again.settings() == cfg.settings()
    with pytest.raises(ConfigError, match="does not exist"):
        FluxonKvClientConfig.from_file(tmp_path / "missing.yaml")


def test_from_settings_gives_an_equivalent_dict():
    cfg = FluxonKvClientConfig(owner())
    assert FluxonKvClientConfig.from_settings(cfg.settings()).settings() == cfg.settings()


def test_master_config_defaults_and_errors(tmp_path):
    config = load_master_config({"instance_key": "m", "cluster_name": "demo"})
    assert config.port == 0 and config.coordination is None and config.member_lease_ttl_ms == 10_000
    assert config.secret_file() == Path.home() / ".fluxon" / "secrets" / "demo.secret"
    with pytest.raises(ConfigError, match=r"coordination\.kind .*unknown coordinator kind 'zookeeper'"):
        load_master_config({"instance_key": "m", "cluster_name": "demo", "coordination": {"kind": "zookeeper"}})
    with pytest.raises(ConfigError, match=r"port must be a port number"):
        load_master_config({"instance_key": "m", "cluster_name": "demo", "port": 70000})


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("kv_*.yaml")))
def test_example_configs_parse(name):
    path = EXAMPLES / name
    if "master" in name:
        assert isinstance(load_yaml_file(KvMasterConfig, path), KvMasterConfig)
    else:
        FluxonKvClientConfig(yaml.safe_load(path.read_text())).settings()
