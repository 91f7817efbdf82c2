"""Transfer jobs run with their owner's authority, proven by performing the attacks on real processes.

A kv plane, an fs master and fs agents run as processes; users drive jobs with
:class:`TransferClient` and ``fluxon transfer`` (what the CLI runs) and the panel's HTTP API. The
attacks: copying through a symlink that leaves the user's scope (as the source folder, inside
the source tree after the scan, inside the target prefix), through an export local to the
worker's agent and through a remote one; running a job after its owner's password changed or
the owner was removed, also mid-copy; a job stored before jobs had owners; reading other users'
jobs. Each fails, and the legitimate use next to it works.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_core.errors import PermissionDeniedError
from fluxon_core.rpc import default_transport
from fluxon_fs.auth.delegation import DelegatedSessions, DelegationRefusedError
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.tokens import TokenSigner
from fluxon_fs.export.client import RemoteExportOps
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.records import ExportSnapshotQuery, Login
from fluxon_fs.master_api.transfer_client import TransferClient
from fluxon_fs.transfer.codec import encode
from fluxon_fs.transfer.coordinator import TransferCoordinator
from fluxon_fs.transfer.copier import COPY_CHUNK_BYTES, TEMP_MARKER
from fluxon_fs.transfer.jobs import JobSpec
from fluxon_fs.transfer.records import ENTRY_FILE, ScanEntry
from fluxon_fs.transfer.state_config import open_state_store
from tests.support.fs_cluster import (
    ADMIN,
    MASTER_KEY,
    FsCluster,
    PanelSession,
    fs_cluster,
    paused_batch,
    run_fluxon_transfer,
)
from tests.support.panel_harness import ALICE, open_access_store
from tests.support.poll import wait_until
from tests.support.trees import assert_same_tree

BOB = ("bob", "bob-pw-1")
CAROL = ("carol", "carol-pw-1")
DAVE = ("dave", "dave-pw-1")
EVE = ("eve", "eve-pw-1")
FRANK = ("frank", "frank-pw-1")
MALLORY = ("mallory", "mallory-pw-1")
USERS = [
    {"username": ADMIN[0], "password": ADMIN[1], "can_manage_users": True},
    *({"username": name, "password": password} for name, password in (BOB, CAROL, DAVE, EVE, FRANK, MALLORY)),
]


def grant(export: str, prefix: str, mode: str, *users: tuple[str, str]) -> dict:
    return {"export_name": export, "prefix": prefix, "mode": mode, "usernames": [u[0] for u in users]}


SCOPES = [
    grant("src", "pub", "read_only", BOB, CAROL, DAVE, EVE, FRANK),
    grant("dst", "drop", "read_write", BOB),
    grant("late_local", "drop", "read_write", BOB),
    grant("late_remote", "drop", "read_write", BOB),
    grant("held_a", "eve", "read_write", EVE),
    grant("held_b", "carol", "read_write", CAROL, DAVE),
    grant("slow", "frank", "read_write", FRANK),
    grant("src", "other", "read_only", MALLORY),
    grant("dst", "mallory", "read_write", MALLORY),
]
SECRET = b"TOP SECRET: nobody but the admin may read this\n"
BIG_FILE_BYTES = 2 * COPY_CHUNK_BYTES + 12345
JOB_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def fs() -> Iterator[FsCluster]:
    with fs_cluster() as cluster:
        cluster.start_master(users=USERS, scopes=SCOPES)
        src, dst = cluster.export_dir("src"), cluster.export_dir("dst")
        (src / "secret").mkdir()
        (src / "secret" / "s.txt").write_bytes(SECRET)
        for folder in ("pub/data", "pub/data/sub", "pub/swap_local", "pub/swap_remote", "pub/big", "other"):
            (src / folder).mkdir(parents=True)
        (src / "pub" / "data" / "a.txt").write_text("public a\n")
        (src / "pub" / "data" / "sub" / "b.txt").write_text("public b\n")
        for mode in ("local", "remote"):
            (src / "pub" / f"swap_{mode}" / "f.txt").write_text("harmless at scan time\n")
        (src / "pub" / "big" / "big.bin").write_bytes(os.urandom(BIG_FILE_BYTES))
        (src / "pub" / "link").symlink_to("../secret")
        (dst / "private").mkdir()
        (dst / "drop").mkdir()
        (dst / "drop" / "out").symlink_to("../private")
        cluster.start_agent("agent-1", {"src": str(src), "dst": str(dst)})
        yield cluster


def client(fs: FsCluster, user: tuple[str, str]) -> TransferClient:
    return TransferClient(fs.kv.external(f"cli-{uuid.uuid4().hex[:6]}", fs.host), MASTER_KEY, *user)


def spec(source_dir: str, target_export: str, target_prefix: str, **options: object) -> JobSpec:
    return JobSpec("src", source_dir, target_export, target_prefix, **options)  # type: ignore[arg-type]


def wait_state(tc: TransferClient, job_id: str, state: str) -> dict:
    return wait_until(lambda: (job := tc.show(job_id)["job"])["state"] == state and job, 30, f"{job_id} {state}")


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()} if root.exists() else {}


def test_a_source_folder_that_is_a_symlink_out_of_scope_is_not_copied(fs: FsCluster) -> None:
    bob = client(fs, BOB)
    attack = bob.wait(bob.create_job(spec("pub/link", "dst", "drop")), JOB_TIMEOUT_S)
    assert attack["state"] == "failed", attack
    assert (
        "scan failed: PermissionDeniedError: permission denied: user 'bob' may not list '/secret'"
        in (attack["state_reason"])
    )
    assert not (fs.export_dir("dst") / "drop" / "link").exists()

    legit = bob.wait(bob.create_job(spec("pub/data", "dst", "drop")), JOB_TIMEOUT_S)
    assert legit["state"] == "succeeded" and legit["owner"] == "bob", legit
    assert_same_tree(fs.export_dir("src") / "pub" / "data", fs.export_dir("dst") / "drop" / "data")


def test_a_copy_cannot_write_through_a_symlink_in_the_target(fs: FsCluster) -> None:
    bob = client(fs, BOB)
    attack = bob.wait(bob.create_job(spec("pub/data", "dst", "drop/out", max_attempts=1)), JOB_TIMEOUT_S)
    assert attack["state"] == "failed" and "1 batch(es) failed" in attack["state_reason"], attack
    assert "user 'bob' may not write '/private/data'" in " ".join(attack["recent_errors"])
    assert files_under(fs.export_dir("dst") / "private") == {}


@pytest.mark.parametrize("source", ["local", "remote"])
def test_a_source_file_swapped_for_a_symlink_after_the_scan_is_not_copied(fs: FsCluster, source: str) -> None:
    """The scan saw a regular file; by the time a worker copies it, it is a link to the secret. The worker
    reads the source in its own agent (``local``: the agent's access check in-process) or from another
    agent (``remote``: over RPC); either way with bob's authority."""
    src, target_export = fs.export_dir("src"), f"late_{source}"
    bob = client(fs, BOB)
    # Nobody serves the target yet: the job is scanned and waits with its batches pending.
    job_id = bob.create_job(spec(f"pub/swap_{source}", target_export, "drop", max_attempts=1))
    wait_state(bob, job_id, "running")
    swapped = src / "pub" / f"swap_{source}" / "f.txt"
    swapped.unlink()
    swapped.symlink_to("../../secret/s.txt")
    exports = {target_export: str(fs.export_dir(target_export))}
    if source == "local":
        exports["src"] = str(src)
    fs.start_agent(f"agent-{target_export}", exports)

    attack = bob.wait(job_id, JOB_TIMEOUT_S)
    assert attack["state"] == "failed", attack
    assert "user 'bob' may not read '/secret/s.txt'" in " ".join(attack["recent_errors"]), attack
    assert SECRET not in files_under(fs.export_dir(target_export)).values()

    swapped.unlink()  # the legitimate file again: the same job, retried, copies it
    swapped.write_text("harmless again\n")
    assert bob.action(job_id, "retry_failed")["state"] == "running"
    assert bob.wait(job_id, JOB_TIMEOUT_S)["state"] == "succeeded"
    assert (fs.export_dir(target_export) / "drop" / f"swap_{source}" / "f.txt").read_text() == "harmless again\n"


def test_a_job_stops_when_its_owners_password_changes_or_the_owner_is_removed(fs: FsCluster) -> None:
    eve, carol = client(fs, EVE), client(fs, CAROL)
    # Targets nobody serves yet: both jobs are scanned (as their owners) and wait to be claimed.
    eve_job = eve.create_job(spec("pub/data", "held_a", "eve"))
    carol_job = carol.create_job(spec("pub/data", "held_b", "carol"))
    wait_state(eve, eve_job, "running")
    wait_state(carol, carol_job, "running")
    admin = PanelSession(fs)
    admin.login(*ADMIN)
    assert admin.post_json("/api/users/eve/password", {"password": "eve-pw-2"}).status_code == 200
    assert admin.post_json("/api/users/carol/delete").status_code == 200
    fs.start_agent("agent-held", {name: str(fs.export_dir(name)) for name in ("held_a", "held_b")})

    paused = wait_state(eve := client(fs, ("eve", "eve-pw-2")), eve_job, "paused")
    assert "the password of owner 'eve' changed" in paused["state_reason"]
    admin_view = client(fs, ADMIN)
    removed = wait_state(admin_view, carol_job, "paused")
    assert "owner 'carol' of job" in removed["state_reason"] and "no longer exists" in removed["state_reason"]
    assert files_under(fs.export_dir("held_a")) == files_under(fs.export_dir("held_b")) == {}

    # Eve, logged in with her new password, resumes her job: it runs as her again.
    assert eve.action(eve_job, "resume")["owner"] == "eve"
    assert eve.wait(eve_job, JOB_TIMEOUT_S)["state"] == "succeeded"
    assert_same_tree(fs.export_dir("src") / "pub" / "data", fs.export_dir("held_a") / "eve" / "data")
    # Dave may steer carol's job (he could create it) but not take it over; an admin can.
    with pytest.raises(PermissionDeniedError, match="no longer exists; a user who can manage users may resume it"):
        client(fs, DAVE).action(carol_job, "resume")
    assert admin_view.action(carol_job, "resume")["owner"] == ADMIN[0]
    assert admin_view.wait(carol_job, JOB_TIMEOUT_S)["state"] == "succeeded"


def test_a_password_change_stops_a_copy_in_flight(fs: FsCluster) -> None:
    """Revocation reaches tokens already handed out: the worker mid-file fails within the revocation bound."""
    frank = client(fs, FRANK)
    marker = fs.root / "frank-paused"
    fs.start_agent("agent-slow", {"slow": str(fs.export_dir("slow"))}, pause_marker=marker)
    job_id = frank.create_job(spec("pub/big", "slow", "frank", desired_worker_count=1))
    paused_batch(marker)  # the worker has written 8 MiB of the big file with frank's token

    store = fs.kv.external(f"probe-{uuid.uuid4().hex[:6]}", fs.host)
    link = FsMasterLink(store, MASTER_KEY)
    old_token = link.login(Login(*FRANK)).token
    endpoint = link.export_snapshot(ExportSnapshotQuery()).exports["slow"].agents[0].endpoint
    probe = RemoteExportOps(default_transport().new_client(), endpoint, "slow", auth=old_token, caller="probe")
    probe.stat("frank")
    admin = PanelSession(fs)
    admin.login(*ADMIN)
    assert admin.post_json("/api/users/frank/password", {"password": "frank-pw-2"}).status_code == 200

    def refused() -> bool:
        try:
            probe.stat("frank")
        except PermissionDeniedError as exc:
            return "session no longer valid" in str(exc)
        return False

    wait_until(refused, 10, "the agent refusing frank's old sessions")
    marker.unlink()  # the worker goes on writing with the token it was given before the change

    frank = client(fs, ("frank", "frank-pw-2"))
    paused = wait_state(frank, job_id, "paused")
    assert "the password of owner 'frank' changed" in paused["state_reason"]
    assert "session no longer valid" in " ".join(paused["recent_errors"])
    assert not (fs.export_dir("slow") / "frank" / "big" / "big.bin").exists()

    assert frank.action(job_id, "resume")["state"] == "running"
    assert frank.wait(job_id, JOB_TIMEOUT_S)["state"] == "succeeded"
    assert_same_tree(fs.export_dir("src") / "pub" / "big", fs.export_dir("slow") / "frank" / "big")
    assert [p for p in fs.export_dir("slow").rglob("*") if TEMP_MARKER in p.name] == []


def test_jobs_stored_before_owners_do_not_run_until_an_admin_resumes_them(fs: FsCluster) -> None:
    """A job record without an owner (as stored by the previous version) never runs as the system."""
    state = open_state_store({"kind": "sqlite", "sqlite": {"path": str(fs.root / "fs-master" / "transfer_state.db")}})
    try:
        old = TransferCoordinator(state)
        scanning = old.create_job(spec("pub/data", "dst", "drop/legacy_scan"), job_id="legacy-scanning")
        running = old.create_job(spec("pub/data", "dst", "drop/legacy_run"), job_id="legacy-running")
        old.add_batch(running.job_id, 0, [ScanEntry("a.txt", ENTRY_FILE, 9, 0, 0o644)], 9)
        old.finish_scan(running.job_id)
        for job_id in (scanning.job_id, running.job_id):  # as the old version wrote them: no owner fields
            record = json.loads(encode(old.job(job_id)))
            del record["owner"], record["owner_credential_version"]
            state.put(f"jobs/{job_id}", json.dumps(record).encode())
    finally:
        state.close()

    admin = client(fs, ADMIN)
    for job_id in ("legacy-scanning", "legacy-running"):
        paused = wait_state(admin, job_id, "paused")
        assert "stored before jobs recorded their owner, so it does not run as anybody" in paused["state_reason"]
        assert paused["owner"] == ""
    assert not (fs.export_dir("dst") / "drop" / "legacy_scan").exists()
    assert not (fs.export_dir("dst") / "drop" / "legacy_run").exists()

    with pytest.raises(PermissionDeniedError, match="a user who can manage users may resume it"):
        client(fs, BOB).action("legacy-scanning", "resume")  # bob could create it, but not take it over
    assert admin.action("legacy-scanning", "resume")["owner"] == ADMIN[0]
    assert admin.wait("legacy-scanning", JOB_TIMEOUT_S)["state"] == "succeeded"
    assert_same_tree(fs.export_dir("src") / "pub" / "data", fs.export_dir("dst") / "drop" / "legacy_scan" / "data")


def test_users_see_only_jobs_they_own_or_whose_source_or_target_they_may_use(
    fs: FsCluster, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, mallory = client(fs, BOB), client(fs, MALLORY)
    bobs = bob.create_job(spec("pub/data", "dst", "drop/seen"))
    malloys = mallory.wait(mallory.create_job(spec("other", "dst", "mallory")), JOB_TIMEOUT_S)["job_id"]
    assert bob.wait(bobs, JOB_TIMEOUT_S)["state"] == "succeeded"

    listed = {name: {j["job_id"] for j in client(fs, user).jobs()} for name, user in (("dave", DAVE), ("admin", ADMIN))}
    assert bobs in listed["dave"] and malloys not in listed["dave"]  # dave reads bob's source
    assert {bobs, malloys} <= listed["admin"]

    status, out, _ = run_fluxon_transfer(fs, capsys, monkeypatch, MALLORY, "list")
    assert status == 0 and malloys in out and bobs not in out
    status, _, err = run_fluxon_transfer(fs, capsys, monkeypatch, MALLORY, "show", bobs)
    assert status == 1 and f"user 'mallory' may not see transfer job {bobs}" in err
    status, _, err = run_fluxon_transfer(fs, capsys, monkeypatch, MALLORY, "cancel", bobs)
    assert status == 1 and "PermissionDeniedError" in err
    status, _, err = run_fluxon_transfer(fs, capsys, monkeypatch, DAVE, "retry", bobs)
    assert status == 1 and "user 'dave' may not write '/drop/seen'" in err  # seeing is not steering
    status, out, _ = run_fluxon_transfer(fs, capsys, monkeypatch, BOB, "show", bobs)
    assert status == 0 and "runs as:    bob" in out

    panel = PanelSession(fs)
    panel.login(*MALLORY)
    shown = {j["job_id"] for j in panel.http.get("/api/transfers/jobs").json()["jobs"]}
    assert malloys in shown and bobs not in shown
    assert bobs not in panel.http.get("/ui/transfers/").text
    assert panel.http.get(f"/api/transfers/jobs/{bobs}").status_code == 403
    assert panel.post_json(f"/api/transfers/jobs/{bobs}/retry").status_code == 403


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def test_delegated_tokens_are_reused_for_half_their_life_and_refused_once_the_user_changed(tmp_path: Path) -> None:
    store = open_access_store(tmp_path / "access.db")
    clock = Clock()
    try:
        signer = TokenSigner(store.token_secret(), ttl_s=600, clock=clock)
        authorizer = Authorizer(store, signer, revocation_bound_s=0.0)
        sessions = DelegatedSessions(authorizer, signer, clock=clock)
        version = authorizer.credential_version(ALICE[0])
        assert version is not None
        first = sessions.token(ALICE[0], version)
        assert authorizer.authenticate(first).username == ALICE[0]  # a genuine session of alice
        clock.now += 299
        assert sessions.token(ALICE[0], version) == first
        clock.now += 2
        renewed = sessions.token(ALICE[0], version)
        assert renewed != first and signer.verify(renewed).expires_at == int(clock.now) + 600

        store.set_password(ALICE[0], "another-pw")
        with pytest.raises(DelegationRefusedError, match="password of user 'alice' changed") as changed:
            sessions.token(ALICE[0], version)
        assert not changed.value.user_removed
        store.remove_user(ALICE[0])
        with pytest.raises(DelegationRefusedError, match="user 'alice' no longer exists") as removed:
            sessions.token(ALICE[0], version)
        assert removed.value.user_removed
    finally:
        store.close()
