"""The join token: one 0600 file that lets a host join (fluxon_fs.auth.join_token, docs/deploy.md).

The whole flow on three hosts is tests/test_deploy_netns.py; these are the file's rules and how the
example stack reads it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import attrs
import pytest

from fluxon_core.errors import InvalidArgumentError
from fluxon_core.kv.auth import read_secret_file
from fluxon_fs.auth.join_token import (
    JOIN_TOKEN_ENV,
    install_join_secrets,
    join_token_for,
    read_join_token,
    write_join_token,
)
from fluxon_fs.demo.stack import StackSettings, fs_agent_config, owner_config, service_secret_file

CLUSTER_SECRET = secrets.token_bytes(32)
SERVICE_SECRET = secrets.token_bytes(32)


def token_file(tmp_path: Path, **fields: object) -> Path:
    token = join_token_for(
        cluster_name="prod-fs",
        fs_master_instance_key="fs-master-1",
        cluster_secret=CLUSTER_SECRET,
        fs_service_secret=SERVICE_SECRET,
        etcd_endpoints=["192.0.2.10:2379"],
    )
    return write_join_token(tmp_path / "host-a" / "join.token", attrs.evolve(token, **fields))


def test_a_token_round_trips_in_a_0600_file_and_hides_its_secrets_from_repr(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o600
    token = read_join_token(path)
    assert (token.cluster_name, token.fs_master_instance_key, token.etcd_endpoints) == (
        "prod-fs",
        "fs-master-1",
        ("192.0.2.10:2379",),
    )
    assert token.cluster_secret == CLUSTER_SECRET.hex() and token.fs_service_secret == SERVICE_SECRET.hex()
    assert CLUSTER_SECRET.hex() not in repr(token) and SERVICE_SECRET.hex() not in repr(token)
    token.check_usable_here(str(path))


def test_a_readable_or_malformed_token_is_refused(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    path.chmod(0o644)
    with pytest.raises(InvalidArgumentError, match=r"accessible by group/others.*chmod 600"):
        read_join_token(path)
    path.chmod(0o600)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "cluster_secret": "zz"}))
    with pytest.raises(InvalidArgumentError, match="cluster_secret"):
        read_join_token(path)
    path.write_text(json.dumps({**data, "format": "something-else"}))
    with pytest.raises(InvalidArgumentError, match=r"not a fluxon-join-token/1 file"):
        read_join_token(path)
    with pytest.raises(InvalidArgumentError, match="cannot be read"):
        read_join_token(tmp_path / "missing.token")


def test_a_token_naming_loopback_is_refused_on_another_host(tmp_path: Path) -> None:
    path = token_file(tmp_path, etcd_endpoints=(), kv_master_address="tcp://127.0.0.1:31000")
    token = read_join_token(path)
    token.check_usable_here(str(path))  # the host that wrote it
    elsewhere = attrs.evolve(token, written_by_network="another-host")
    with pytest.raises(InvalidArgumentError, match=r"tcp://127\.0\.0\.1:31000.*KV_MASTER_HOST=0\.0\.0\.0"):
        elsewhere.check_usable_here(str(path))


def test_a_joining_stack_takes_the_cluster_from_the_token_and_keeps_secrets_in_files(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    workdir = tmp_path / "host-b"
    env = {JOIN_TOKEN_ENV: str(path), "OWNER_INSTANCE_KEY": "owner-b", "EXPORT_NAME": "bdata"}
    settings = StackSettings.from_env(workdir, env)
    assert (settings.cluster_name, settings.fs_master_instance_key, settings.etcd_endpoints) == (
        "prod-fs",
        "fs-master-1",
        ["192.0.2.10:2379"],
    )
    assert settings.owner_rpc_host == "0.0.0.0"  # a joining host is not alone
    assert settings.export_name == "bdata"
    assert StackSettings.from_env(workdir, {JOIN_TOKEN_ENV: str(path)}).export_name.startswith("demo-")

    install_join_secrets(settings.join_token, Path(settings.secret_file), service_secret_file(settings))  # type: ignore[arg-type]
    assert read_secret_file(settings.secret_file) == CLUSTER_SECRET
    assert read_secret_file(service_secret_file(settings)) == SERVICE_SECRET
    owner = owner_config(settings)["fluxonkv_spec"]
    assert owner["cluster_secret_file"] == settings.secret_file and owner["etcd_addresses"] == ["192.0.2.10:2379"]
    agent = fs_agent_config(settings)
    configs = json.dumps([owner, agent])
    assert CLUSTER_SECRET.hex() not in configs and SERVICE_SECRET.hex() not in configs

    with pytest.raises(InvalidArgumentError, match="contradicts the join token"):
        StackSettings.from_env(workdir, {JOIN_TOKEN_ENV: str(path), "CLUSTER_NAME": "other"})
