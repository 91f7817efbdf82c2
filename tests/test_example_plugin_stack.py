"""A third-party plugin runs a whole FS stack: the example package's ``memory`` access store and state store.

``examples/plugins/fluxon-memstate`` is installed with a real ``pip install --target`` (never into this
interpreter). Only the fs master opens either store, so only the fs master's process is given the
installed package (``PYTHONPATH``) and ``FLUXON_LOAD_PLUGINS=memstate``; its YAML selects both stores
by ``kind: memory``. The kv master, the owner and the fs agent are ordinary processes, and users
mount the export with :class:`~fluxon_fs.patcher.fs_patcher.FluxonFsPatcher` in this process.

The first test compares the plugin's access store with the sqlite one operation by operation, so the
end-to-end tests below rest on an access store that answers exactly as the default one does.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.runtime import RoleProcess
from fluxon_core.runtime.processes import start_role_process
from fluxon_core.runtime.readiness import RoleStartError
from fluxon_fs.auth.identity import LOGIN_FAILED_MESSAGE
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.roles import FS_MASTER_MODULE
from fluxon_fs.transfer.jobs import JobSpec
from tests.support.access_e2e import AccessDeployment, Credentials, stop, write_tree
from tests.support.fs_cluster import MASTER_KEY, FsCluster, fs_cluster
from tests.support.plugin_packages import install_example_plugin, json_output, run_python, subprocess_env

ADMIN: Credentials = ("admin", "Adm1n-memstate-4d2e")
ALICE: Credentials = ("alice", "Al1ce-memstate-90fa")  # read_write on demo:team_a
BOB: Credentials = ("bob", "B0b-memstate-1c7b")  # read_only on demo:public
USERS = [
    {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
    {"username": ALICE[0], "password": ALICE[1]},
    {"username": BOB[0], "password": BOB[1]},
]
SCOPES = [
    {"export_name": "demo", "prefix": "team_a", "mode": "read_write", "usernames": [ALICE[0]]},
    {"export_name": "demo", "prefix": "public", "mode": "read_only", "usernames": [BOB[0]]},
]
DEMO_TREE = {
    "secret.txt": b"top secret\n",
    "team_a/notes.txt": b"alice's notes\n",
    "team_a/sub/deep.txt": b"deep\n",
    "team_b/x.txt": b"team b data\n",
    "public/readme.txt": b"hello\n",
}

# What this test adds to the fs master's master_panel: both stores come from the example plugin.
PLUGIN_BACKENDS_YAML = """\
access_store:
  kind: memory
  memory:
    password_hash: argon2id
transfer_state_store:
  kind: memory
  memory:
    space: fs_master
    key_prefix: /fluxon_fs_transfer/memstate-e2e/
"""


@pytest.fixture(scope="module")
def example_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A real pip build and install of examples/plugins/fluxon-memstate (~4 s): once for the module.
    return install_example_plugin(tmp_path_factory.mktemp("memstate"))


# ---------------------------------------------------------------- the access store against the sqlite one


DIFFERENTIAL = """
import json, sys
from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.records import ScopeAccessRecord, UserAccess, UserRecord
from fluxon_core.access.access_keys import AccessKeyRecord, NewAccessKey, SigningKeyGrant, is_access_key_id
from fluxon_core.config import load_config
from fluxon_core.plugins import get_backends

MODEL = load_config(BootstrapAccessModelConfig, {
    "users": [
        {"username": "admin", "password": "admin-pw", "can_manage_users": True},
        {"username": "alice", "password": "alice-pw"},
    ],
    "scope_access": [{"export_name": "demo", "prefix": "/data/", "mode": "read_only", "usernames": ["alice"]}],
}, "bootstrap_access_model")

OPS = [
    ("empty epoch", lambda s: s.auth_epoch()),
    ("bootstrap", lambda s: s.bootstrap(MODEL)),
    ("bootstrap again", lambda s: s.bootstrap(MODEL)),
    ("verify right", lambda s: s.verify_credentials("alice", "alice-pw")),
    ("verify wrong", lambda s: s.verify_credentials("alice", "alice-PW")),
    ("verify unknown", lambda s: s.verify_credentials("nobody", "alice-pw")),
    ("verify empty", lambda s: s.verify_credentials("alice", "")),
    ("verify_password", lambda s: s.verify_password("admin", "admin-pw")),
    ("add bob", lambda s: s.add_user("bob", "bob-pw")),
    ("add bob again", lambda s: s.add_user("bob", "x")),
    ("add bad name", lambda s: s.add_user("bad name", "x")),
    ("add empty password", lambda s: s.add_user("carol", "")),
    ("grant", lambda s: s.grant("demo", "data", "read_only", ["bob"])),
    ("grant same", lambda s: s.grant("demo", "/data", "read_only", ["bob"])),
    ("grant rw", lambda s: s.grant("demo", "out/x", "read_write", ["bob", "alice"])),
    ("grant whole export", lambda s: s.grant("other", "", "read_only", ["alice"])),
    ("grant unknown user", lambda s: s.grant("demo", "x", "read_only", ["ghost"])),
    ("grant escaping prefix", lambda s: s.grant("demo", "../etc", "read_only", ["bob"])),
    ("grant no users", lambda s: s.grant("demo", "x", "read_only", [])),
    ("grant one string", lambda s: s.grant("demo", "x", "read_only", "bob")),
    ("grant bad mode", lambda s: s.grant("demo", "x", "write", ["bob"])),
    ("grant bad export", lambda s: s.grant("bad export", "x", "read_only", ["bob"])),
    ("scopes", lambda s: s.list_scopes()),
    ("scopes of demo", lambda s: s.list_scopes("demo")),
    ("access alice", lambda s: s.user_access("alice")),
    ("access bob", lambda s: s.user_access("bob")),
    ("access nobody", lambda s: s.user_access("nobody")),
    ("revoke one member", lambda s: s.revoke("demo", "data", usernames=["bob"])),
    ("revoke it again", lambda s: s.revoke("demo", "data", usernames=["bob"])),
    ("revoke other mode", lambda s: s.revoke("demo", "out/x", mode="read_only")),
    ("revoke no users", lambda s: s.revoke("demo", "out/x", usernames=[])),
    ("revoke one string", lambda s: s.revoke("demo", "out/x", usernames="bob")),
    ("revoke all", lambda s: s.revoke("demo", "/out/x/")),
    ("scopes after revoke", lambda s: s.list_scopes()),
    ("set password", lambda s: s.set_password("alice", "alice-new")),
    ("old password", lambda s: s.verify_password("alice", "alice-pw")),
    ("new password", lambda s: s.verify_credentials("alice", "alice-new")),
    ("set password of nobody", lambda s: s.set_password("nobody", "x")),
    ("demote last manager", lambda s: s.set_can_manage_users("admin", False)),
    ("remove last manager", lambda s: s.remove_user("admin")),
    ("promote bob", lambda s: s.set_can_manage_users("bob", True)),
    ("promote bob again", lambda s: s.set_can_manage_users("bob", True)),
    ("remove admin", lambda s: s.remove_user("admin")),
    ("remove nobody", lambda s: s.remove_user("nobody")),
    ("remove alice", lambda s: s.remove_user("alice")),
    ("scopes after removals", lambda s: s.list_scopes()),
    ("re-create alice", lambda s: s.add_user("alice", "alice-pw")),
    ("users", lambda s: s.list_users()),
    ("get bob", lambda s: s.get_user("bob")),
    ("get nobody", lambda s: s.get_user("nobody")),
    ("key for bob", lambda s: s.create_access_key("bob")),
    ("key for nobody", lambda s: s.create_access_key("nobody")),
    ("keys", lambda s: s.list_access_keys()),
    ("keys of alice", lambda s: s.list_access_keys("alice")),
    ("signing key", lambda s: s.access_key_signing_key(s.list_access_keys("bob")[0].access_key_id, "20260105", "r", "s3")),
    ("signing key bad date", lambda s: s.access_key_signing_key("FX" + "A" * 18, "2026", "r", "s3")),
    ("signing key unknown", lambda s: s.access_key_signing_key("FX" + "A" * 18, "20260105", "r", "s3")),
    ("revoke bad key id", lambda s: s.revoke_access_key("../x")),
    ("revoke unknown key", lambda s: s.revoke_access_key("FX" + "A" * 18)),
    ("revoke bob's key", lambda s: s.revoke_access_key(s.list_access_keys("bob")[0].access_key_id)),
    ("keys after revoke", lambda s: s.list_access_keys()),
    ("schema", lambda s: s.schema_version() >= 1),
    ("secret", lambda s: len(s.token_secret()) >= 32),
]


def plain(value):
    # Timestamps differ between any two runs; everything else must be identical.
    if isinstance(value, UserRecord):
        return ["user", value.username, value.can_manage_users, value.credential_version]
    if isinstance(value, ScopeAccessRecord):
        return ["scope", value.export_name, value.prefix, value.mode.value, list(value.usernames)]
    if isinstance(value, UserAccess):
        grants = [[g.export_name, g.prefix, g.mode.value] for g in value.grants]
        return ["access", value.username, value.can_manage_users, value.credential_version, grants]
    if isinstance(value, NewAccessKey):
        return ["new key", plain(value.record), len(value.secret_access_key)]
    if isinstance(value, AccessKeyRecord):
        return ["key", value.username, is_access_key_id(value.access_key_id)]
    if isinstance(value, SigningKeyGrant):
        return ["signing key", value.username, len(value.signing_key)]
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def run(store):
    rows = []
    for name, op in OPS:
        try:
            result = plain(op(store))
        except Exception as exc:
            result = ["raised", type(exc).__name__, str(exc)]
        rows.append([name, result, store.auth_epoch()])
    store.close()
    return rows


backends = get_backends()
sqlite = backends.create("access_store", "sqlite", {"path": sys.argv[1]})
memory = backends.create("access_store", "memory")
print(json.dumps({"sqlite": run(sqlite), "memory": run(memory)}))
"""


def test_the_memory_access_store_answers_like_the_sqlite_one(example_plugin: Path, tmp_path: Path) -> None:
    # ~60 operations on each store, a few dozen argon2id hashes and verifications (~3 s).
    proc = run_python(
        f"import sys; sys.argv[1:] = [{str(tmp_path / 'access.db')!r}]\n" + DIFFERENTIAL,
        [example_plugin],
        tmp_path,
        load_plugins="memstate",
    )
    result = json_output(proc)
    for sqlite_row, memory_row in zip(result["sqlite"], result["memory"], strict=True):
        assert memory_row == sqlite_row
    refused = [row for row in result["sqlite"] if isinstance(row[1], list) and row[1][:1] == ["raised"]]
    assert len(refused) >= 12 and {row[1][1] for row in refused} == {"InvalidArgumentError"}


# ---------------------------------------------------------------- the whole stack on the plugin's stores


def master_config_file(fs: FsCluster) -> Path:
    """The fs master's YAML: the usual test config with both stores taken from :data:`PLUGIN_BACKENDS_YAML`."""
    config = fs.master_config(users=USERS, scopes=SCOPES)
    panel = config["fluxon_fs"]["master_panel"]
    del panel["access_db_path"]
    panel.update(yaml.safe_load(PLUGIN_BACKENDS_YAML))
    path = fs.root / "fs_master.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def start_master(fs: FsCluster, example_plugin: Path, load_plugins: str, workdir: Path) -> RoleProcess:
    """An fs master process that sees the installed example package, with ``FLUXON_LOAD_PLUGINS`` as given."""
    return start_role_process(
        FS_MASTER_MODULE,
        "fs_master",
        master_config_file(fs),
        workdir=workdir,
        env=subprocess_env([example_plugin], load_plugins),
    )


@pytest.fixture(scope="module")
def stack(example_plugin: Path) -> Iterator[AccessDeployment]:
    # kv master, owner, fs master (plugin stores) and an fs agent: 4 processes, several seconds.
    mounts_root = Path(tempfile.mkdtemp(prefix="fxm", dir="/tmp"))
    with fs_cluster() as fs:
        fs.master = start_master(fs, example_plugin, "memstate", fs.root / "fs-master")
        fs.master_ready = fs.master.wait_ready(60)
        demo = fs.export_dir("demo")
        write_tree(demo, DEMO_TREE)
        fs.start_agent("agent-1", {"demo": str(demo)})
        deployment = AccessDeployment(fs, mounts_root)
        try:
            yield deployment
        finally:
            deployment.close()
            shutil.rmtree(mounts_root, ignore_errors=True)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def write_text(path: str, text: str, mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as handle:
        handle.write(text)


def refused(action: Any) -> PermissionError:
    """Run ``action``, which access control must refuse with EACCES; return the error."""
    with pytest.raises(PermissionError) as caught:
        action()
    assert caught.value.errno == errno.EACCES, repr(caught.value)
    assert "permission denied" in str(caught.value).lower()
    return caught.value


def test_the_fs_master_runs_on_the_plugin_stores(stack: AccessDeployment) -> None:
    master = stack.fs.master
    assert master is not None
    log = master.log_path.read_text(encoding="utf-8", errors="replace")
    assert "access store (kind memory) was empty: bootstrap_access_model applied" in log
    assert "memory access store: bootstrap access model applied (3 users)" in log
    # Neither default sqlite file exists: no access.db, no transfer_state.db anywhere in the deployment.
    assert sorted(stack.fs.root.rglob("*.db")) == []


def test_a_scoped_user_reads_inside_the_grant_and_is_refused_outside(stack: AccessDeployment) -> None:
    with stack.mount(ALICE) as mount:
        assert read_text(mount.at("team_a/notes.txt")) == "alice's notes\n"
        assert sorted(os.listdir(mount.at("team_a"))) == ["notes.txt", "sub"]
        assert os.listdir(mount.at()) == ["team_a"], "a listing above the grant shows only the way to it"
        refused(lambda: read_text(mount.at("secret.txt")))
        refused(lambda: read_text(mount.at("team_b/x.txt")))
        refused(lambda: os.listdir(mount.at("team_b")))
        write_text(mount.at("team_a/written.txt"), "by alice\n")
        assert (stack.fs.export_dir("demo") / "team_a" / "written.txt").read_text() == "by alice\n"
        refused(lambda: write_text(mount.at("public/new.txt"), "x"))
    with stack.mount(BOB) as mount:
        assert read_text(mount.at("public/readme.txt")) == "hello\n"
        refused(lambda: read_text(mount.at("team_a/notes.txt")))
        refused(lambda: write_text(mount.at("public/readme.txt"), "x", "a"))  # read_only grant
    with stack.mount(ADMIN) as mount:
        assert read_text(mount.at("secret.txt")) == "top secret\n"


def test_a_wrong_password_or_an_unknown_user_is_refused(stack: AccessDeployment) -> None:
    messages = []
    for identity in [(ALICE[0], BOB[1]), (ALICE[0], ""), ("mallory", ALICE[1])]:
        with pytest.raises(PermissionDeniedError) as caught:
            stack.patcher(identity)
        assert isinstance(caught.value, PermissionError)
        messages.append(str(caught.value))
    assert len(set(messages)) == 1 and LOGIN_FAILED_MESSAGE in messages[0]
    stack.patcher(ALICE)  # the right password still logs in


def test_transfer_jobs_live_in_the_plugin_state_store(stack: AccessDeployment) -> None:
    client = TransferClient(stack.client("transfers"), MASTER_KEY, *ALICE)
    job_id = client.create_job(JobSpec("demo", "team_a/sub", "demo", "team_a/copy", desired_worker_count=1))
    job = client.wait(job_id, timeout_s=120)
    assert job["state"] == "succeeded", job
    assert job_id in [listed["job_id"] for listed in client.jobs()]
    with stack.mount(ALICE) as mount:
        assert read_text(mount.at("team_a/copy/sub/deep.txt")) == "deep\n"
    with pytest.raises(PermissionError):
        client.create_job(JobSpec("demo", "team_a", "demo", "team_b/stolen"))


def test_without_the_plugin_the_fs_master_refuses_the_config(stack: AccessDeployment, example_plugin: Path) -> None:
    # The same YAML with only Fluxon's default plugins loaded: nothing provides kind memory.
    proc = start_master(stack.fs, example_plugin, "", stack.fs.root / "fs-master-without-plugin")
    try:
        with pytest.raises(RoleStartError):
            proc.wait_ready(60)
    finally:
        stop(proc)
    log = proc.log_path.read_text(encoding="utf-8", errors="replace")
    assert "unknown access_store kind 'memory'" in log, log[-2000:]
