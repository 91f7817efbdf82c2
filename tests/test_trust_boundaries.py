"""Trust boundaries, each proven by performing the attack against real processes (docs/security.md).

A scoped user's mounting process reads everything its host offers (``shared.json`` and its cluster
secret included) and tries to act as the system; a KV member tries to take over an export; a panel
user follows a symlink out of their scope. Each attack fails, and the legitimate use beside it works.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_core.errors import ApiError, PermissionDeniedError
from fluxon_fs import FluxonFsPatcher
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import (
    ExportRegistration,
    ExportSnapshotQuery,
    Login,
    MountReport,
    UserAccessQuery,
)
from fluxon_fs.roles import start_fs_agent_process
from tests.support.fs_cluster import ADMIN, MASTER_KEY, MOUNTING_PROCESS_START, FsCluster, PanelSession, fs_cluster
from tests.support.poll import wait_until

ALICE = ("alice", "alice-pw-7")
CAROL = ("carol", "carol-pw-3")
USERS = [
    {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
    {"username": ALICE[0], "password": ALICE[1]},
    {"username": CAROL[0], "password": CAROL[1]},
]
SCOPES = [{"export_name": "demo", "prefix": "team_a", "mode": "read_write", "usernames": [ALICE[0]]}]


@pytest.fixture(scope="module")
def fs() -> Iterator[FsCluster]:
    with fs_cluster() as cluster:
        cluster.start_master(users=USERS, scopes=SCOPES)
        demo = cluster.export_dir("demo")
        (demo / "secret.txt").write_text("the secret\n")
        (demo / "team_a").mkdir()
        (demo / "team_a" / "a.txt").write_text("alice's file\n")
        (demo / "team_a" / "rel_link").symlink_to("../secret.txt")
        (demo / "team_b").mkdir()
        (demo / "team_b" / "x").write_text("bob's file\n")
        cluster.start_agent("agent-1", {"demo": str(demo)})
        yield cluster


ATTACKER = (
    MOUNTING_PROCESS_START
    + """
patcher.mount_remote_dir(local_mount_dir_abs=args["mount"], export_name="demo")
results = {}

def attempt(name, fn):
    try:
        results[name] = ["ok", repr(fn())[:80]]
    except Exception as exc:
        results[name] = [type(exc).__name__, str(exc)[:200]]

attempt("mount: own file", lambda: open(os.path.join(args["mount"], "team_a", "a.txt")).read())
attempt("mount: link out of scope", lambda: open(os.path.join(args["mount"], "team_a", "rel_link")).read())
attempt("mount: secret", lambda: open(os.path.join(args["mount"], "secret.txt")).read())

# The attack: everything this process can read on its host, used to act as the system.
cluster = store.cluster_authenticator()
caller = store.instance_key()
endpoint = FsMasterLink(store, args["master"]).export_snapshot(ExportSnapshotQuery()).exports["demo"].agents[0].endpoint
forged = RemoteExportOps(
    default_transport().new_client(), endpoint, "demo", auth=lambda path: cluster.token(caller, path), caller=caller
)
attempt("forged: read secret", lambda: forged.read_chunk("secret.txt", 0, 100))
attempt("forged: read team_b", lambda: forged.read_chunk("team_b/x", 0, 100))
attempt("forged: list root", lambda: forged.list_dir(""))
attempt("forged: mkdir at root", lambda: forged.mkdir("planted", 0o755))
print(json.dumps(results))
patcher.uninstall()
store.close()
"""
)


def test_a_scoped_mounting_process_cannot_act_as_the_system(fs: FsCluster, tmp_path: Path) -> None:
    args = {
        "kvclient": fs.kvclient("alice-app"),
        "master": MASTER_KEY,
        "identity": list(ALICE),
        "mount": str(tmp_path / "mnt"),
    }
    done = subprocess.run(
        [sys.executable, "-c", ATTACKER, json.dumps(args)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["mount: own file"][0] == "ok", results
    for name in ("mount: link out of scope", "mount: secret"):
        assert results[name][0] == "PermissionError", (name, results[name])
    for name in ("forged: read secret", "forged: read team_b", "forged: list root", "forged: mkdir at root"):
        assert results[name][0] in ("PermissionDeniedError", "PermissionError"), (name, results[name])
    assert not (fs.export_dir("demo") / "planted").exists()


def test_a_kv_member_cannot_take_over_an_export_or_read_grants(fs: FsCluster) -> None:
    member = fs.kv.external("member-1", fs.host)
    link = FsMasterLink(member, MASTER_KEY)  # what any mounting process can build
    before = link.export_snapshot(ExportSnapshotQuery()).exports
    assert before is not None
    real_endpoint = before["demo"].agents[0].endpoint
    with pytest.raises(PermissionDeniedError):
        link.register_export(ExportRegistration("tcp://127.0.0.1:1", {"demo": str(fs.export_dir("demo"))}))
    with pytest.raises(PermissionDeniedError):
        link.user_access(UserAccessQuery(ADMIN[0]))
    after = link.export_snapshot(ExportSnapshotQuery()).exports
    assert after is not None and [agent.endpoint for agent in after["demo"].agents] == [real_endpoint]

    # A mount report names the user of its token; a claimed name without one is not believed.
    link.report_mount(MountReport(str(fs.root / "fake-mount"), "demo", host="h", pid=1))
    panel = PanelSession(fs)
    panel.login(*ADMIN)
    mounts = panel.http.get("/api/overview").json()["mounts"]
    fake = [m for m in mounts if m["local_mount_dir_abs"] == str(fs.root / "fake-mount")]
    assert fake and fake[0]["username"] == ""


def test_panel_downloads_follow_symlinks_only_within_the_users_scope(fs: FsCluster) -> None:
    alice = PanelSession(fs)
    alice.login(*ALICE)
    own = alice.http.get("/api/exports/demo/download", params={"path": "team_a/a.txt"})
    assert own.status_code == 200 and own.text == "alice's file\n"
    escaped = alice.http.get("/api/exports/demo/download", params={"path": "team_a/rel_link"})
    assert escaped.status_code == 403, escaped.text[:300]
    assert "the secret" not in escaped.text
    listing = alice.http.get("/api/exports/demo/list", params={"path": "team_a"})
    assert listing.status_code == 200
    assert "a.txt" in {entry["name"] for entry in listing.json()["entries"]}


def test_the_service_secret_file_is_private_and_never_in_shared_json(fs: FsCluster) -> None:
    assert fs.service_secret_file.stat().st_mode & 0o777 == 0o600
    secret = fs.service_secret_file.read_text().strip()
    for shared in fs.root.rglob("shared.json"):
        assert secret not in shared.read_text()
    assert os.environ.get("FLUXON_FS_SERVICE_SECRET") is None


# ---------------------------------------------------------------- idle write sessions (finding 6)


@pytest.fixture(scope="module")
def short_sessions(fs: FsCluster) -> Iterator[tuple[FsCluster, Path, Path]]:
    """An agent closing write sessions idle for 1 s, its export, and the agent's log."""
    root = fs.export_dir("idle")
    config = fs.agent_config("agent-idle", {"idle": str(root)})
    config["fluxon_fs"]["agent"]["session_idle_timeout_s"] = 1
    proc = start_fs_agent_process(config, workdir=fs.root / "agent-idle")
    fs.agents["agent-idle"] = proc
    proc.wait_ready(60)
    yield fs, root, Path(proc.log_path)


def _wait_for_reap(log_path: Path, relpath: str, seen_before: int) -> None:
    wait_until(
        lambda: _reaped_so_far(log_path) > seen_before,
        timeout_s=30,
        message=f"the agent reaped the session of {relpath}",
    )


def _reaped_so_far(log_path: Path) -> int:
    return log_path.read_text().count("closed abandoned write session") if log_path.exists() else 0


def test_an_idle_write_session_is_reopened_and_nothing_acknowledged_is_lost(short_sessions, tmp_path: Path) -> None:
    fs, root, log_path = short_sessions
    store = fs.kv.external("idle-writer", fs.host)
    patcher = FluxonFsPatcher(store)
    patcher.set_master_config_yaml(json.dumps({"fluxon_fs": {"master": {"instance_key": MASTER_KEY}}}))
    patcher.set_cache_config_yaml(json.dumps({"fluxon_fs": {"cache": {}}}))
    patcher.set_request_identity(*ADMIN)
    mount = tmp_path / "idle-mnt"
    with patcher:
        patcher.mount_remote_dir(str(mount), "idle")
        before = _reaped_so_far(log_path)
        with open(mount / "log.txt", "w") as handle:
            handle.write("first line\n")
            handle.flush()
            _wait_for_reap(log_path, "log.txt", before)  # the file sits idle past the agent's timeout
            handle.write("second line\n")
        assert (root / "log.txt").read_text() == "first line\nsecond line\n"

        # A file replaced while its writer was idle is never written into: the writer fails loudly.
        before = _reaped_so_far(log_path)
        handle = open(mount / "replaced.txt", "w")  # noqa: SIM115 - closed below, where it must fail
        handle.write("old file\n")
        handle.flush()
        _wait_for_reap(log_path, "replaced.txt", before)
        (root / "other.txt").write_text("a different file\n")
        os.replace(root / "other.txt", root / "replaced.txt")
        handle.write("more\n")
        with pytest.raises(OSError) as raised:
            handle.close()
        assert raised.value.errno == errno.EBADF and "replaced" in str(raised.value)
        assert (root / "replaced.txt").read_text() == "a different file\n"


def test_password_guessing_through_the_login_rpc_is_throttled(fs: FsCluster) -> None:
    # Any KV member may call the login RPC (mount clients log in through it): it must be as slow to
    # guess through as the panel's login form.
    link = FsMasterLink(fs.kv.external("guesser", fs.host), MASTER_KEY)
    refusals = []
    for guess in range(12):
        try:
            link.login(Login(CAROL[0], f"guess-{guess}"))
        except ApiError as exc:
            refusals.append(str(exc))
    throttled = [message for message in refusals if "too many failed logins" in message]
    checked = len(refusals) - len(throttled)
    assert len(refusals) == 12 and checked <= 6, refusals  # 5 free failures, then the backoff refuses unchecked
    # The right password works again once the backoff is over (it grows from 1 s).
    wait_until(lambda: _logs_in(link, CAROL), timeout_s=90, message="carol logs in after the backoff")


def _logs_in(link: FsMasterLink, credentials: tuple[str, str]) -> bool:
    try:
        link.login(Login(*credentials))
    except ApiError:
        return False
    return True
