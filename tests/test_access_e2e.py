"""Access control end to end: users mount an export served by a separate agent process and are refused
exactly what the access model forbids (FS.md §8-§9, docs/access-control.md).

One deployment (kv master, owner, fs master, agent serving ``demo``; see tests/support/access_e2e.py)
serves the whole module; each test uses its own users or paths and puts back what it changed, so
the order does not matter, except that the last test scans the access db after all the others ran.
Mounts use :class:`~fluxon_fs.patcher.fs_patcher.FluxonFsPatcher` on an external KV client in this process.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxon_core.access.records import ScopeMode
from fluxon_core.cli import Command, build_parser
from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.identity import LOGIN_FAILED_MESSAGE
from fluxon_fs.auth.service import read_service_credential
from fluxon_fs.auth.tokens import EXPIRED_TOKEN_MESSAGE, INVALID_TOKEN_MESSAGE, TokenSigner
from fluxon_fs.cli import users as commands
from fluxon_fs.export.wire import op_path
from fluxon_fs.master_api.link import FsMasterLink
from fluxon_fs.master_api.paths import AUTH_LOGIN_PATH, CONFIG_PATH
from tests.support.access_e2e import (
    ADMIN,
    ALICE,
    CAROL,
    DAVE,
    DEMO_TREE,
    READER,
    USERS,
    AccessDeployment,
    Credentials,
    access_deployment,
    stop,
    write_tree,
)
from tests.support.fs_cluster import MASTER_KEY
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[1]
FLUXON = "import sys; from fluxon_core.cli import main; sys.exit(main(sys.argv[1:]))"

# Slack on top of the revocation bound for the change to travel (sqlite read, two RPC hops) on a
# loaded 2-core machine. Reads of a file read moments ago may also reuse its version for the
# client's stale window (FS.md §5) before the agent is asked again.
SLACK_S = 1.0
STALE_WINDOW_S = 1.0

# Every password these tests set; none may ever appear in the access db files or role logs.
PASSWORDS_USED = {str(u["password"]) for u in USERS}


@pytest.fixture(scope="module")
def dep() -> Iterator[AccessDeployment]:
    # Starting the deployment (5 processes) takes several seconds on a loaded machine: shared by the module.
    with access_deployment() as deployment:
        yield deployment


def assert_denied(exc: BaseException) -> None:
    """A refusal as FS.md §9 promises it: PermissionError, EACCES, "permission denied"."""
    assert isinstance(exc, PermissionError), repr(exc)
    assert exc.errno == errno.EACCES, repr(exc)
    assert "permission denied" in str(exc).lower(), str(exc)


def denied(action: Callable[[], Any]) -> PermissionError:
    """Run ``action``, which must be refused by access control; return the error."""
    with pytest.raises(PermissionError) as caught:
        action()
    assert_denied(caught.value)
    return caught.value


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def write_text(path: str, text: str, mode: str = "w") -> None:
    with open(path, mode, encoding="utf-8") as handle:
        handle.write(text)


def refused_within(action: Callable[[], Any], timeout_s: float, what: str) -> PermissionError:
    """Repeat ``action`` until access control refuses it; fail when that takes longer than ``timeout_s``."""

    def refusal() -> PermissionError | None:
        try:
            action()
        except PermissionError as exc:
            return exc
        return None

    exc = wait_until(refusal, timeout_s, what)
    assert_denied(exc)
    return exc


def run_users(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``fluxon users ...`` in this process; must succeed; returns its stdout."""
    parser = build_parser({"users": Command("users", "h", commands.add_arguments, commands.run, "test")})
    args = parser.parse_args(["users", *argv])
    status = args._run(args)
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def login_message(dep: AccessDeployment, identity: Credentials) -> str:
    """The error ``set_request_identity`` raises for ``identity`` (which must be refused)."""
    with pytest.raises(PermissionError) as caught:
        dep.patcher(identity)
    assert isinstance(caught.value, PermissionDeniedError)
    assert "permission denied" in str(caught.value)
    return str(caught.value)


def logs_in(
    dep: AccessDeployment, identity: Credentials, master_key: str = MASTER_KEY, client_key: str = "app"
) -> bool:
    """Whether ``set_request_identity`` accepts ``identity`` (refusals must be the login failure)."""
    try:
        dep.patcher(identity, master_key=master_key, client_key=client_key)
    except PermissionDeniedError as exc:
        assert LOGIN_FAILED_MESSAGE in str(exc)
        return False
    return True


# ----- 1. every refusal --------------------------------------------------------------------------


def test_a_mount_without_identity_refuses_every_operation(dep: AccessDeployment) -> None:
    with dep.mount(None) as mount:
        denied(lambda: os.listdir(mount.at()))
        denied(lambda: os.stat(mount.at("public/readme.txt")))
        denied(lambda: read_text(mount.at("public/readme.txt")))
        denied(lambda: write_text(mount.at("public/new.txt"), "x"))
        denied(lambda: os.mkdir(mount.at("public/newdir")))
        denied(lambda: os.unlink(mount.at("public/readme.txt")))
        assert not os.path.exists(mount.at("public/readme.txt"))  # exists() swallows the refusal
    assert sorted(p.name for p in (dep.fs.export_dir("demo") / "public").iterdir()) == ["readme.txt"]


def test_clear_request_identity_ends_access_on_open_mounts_and_forgets_cached_answers(dep: AccessDeployment) -> None:
    with dep.mount(READER) as mount:
        assert read_text(mount.at("public/readme.txt")) == "hello\n"
        assert "secret.txt" in os.listdir(mount.at())
        os.stat(mount.at("public/readme.txt"))
        mount.patcher.clear_request_identity()
        # Answers cached for the reader a moment ago must not be served without an identity.
        denied(lambda: os.listdir(mount.at()))
        denied(lambda: os.stat(mount.at("public/readme.txt")))
        denied(lambda: read_text(mount.at("public/readme.txt")))
        # A new identity applies to the mount that is already open.
        mount.patcher.set_request_identity(*READER)
        assert read_text(mount.at("public/readme.txt")) == "hello\n"


def test_wrong_password_and_unknown_user_are_refused_alike(dep: AccessDeployment) -> None:
    wrong_password = login_message(dep, (ALICE[0], "not-" + ALICE[1]))
    unknown_user = login_message(dep, ("nobody", "not-" + ALICE[1]))
    assert wrong_password == unknown_user
    assert LOGIN_FAILED_MESSAGE in wrong_password
    assert ALICE[1] not in wrong_password


def test_a_refused_set_request_identity_leaves_no_identity_bound(dep: AccessDeployment) -> None:
    with dep.mount(READER) as mount:
        assert read_text(mount.at("public/readme.txt")) == "hello\n"
        with pytest.raises(PermissionDeniedError):
            mount.patcher.set_request_identity(ADMIN[0], "not-" + ADMIN[1])
        denied(lambda: read_text(mount.at("public/readme.txt")))
        denied(lambda: write_text(mount.at("public/by-nobody.txt"), "x"))


def test_paths_outside_the_users_scopes_are_refused(dep: AccessDeployment) -> None:
    demo = dep.fs.export_dir("demo")
    with dep.mount(ALICE) as mount:
        denied(lambda: read_text(mount.at("secret.txt")))
        denied(lambda: read_text(mount.at("team_b/x")))
        denied(lambda: os.stat(mount.at("team_b/x")))
        denied(lambda: os.listdir(mount.at("team_b")))
        denied(lambda: write_text(mount.at("team_b/x"), "overwritten"))
        denied(lambda: write_text(mount.at("public/alice.txt"), "x"))
        denied(lambda: os.mkdir(mount.at("team_b/alice")))
        denied(lambda: os.unlink(mount.at("secret.txt")))
        # Moving a file out of (or into) the grant needs read_write on both sides.
        write_text(mount.at("team_a/move-me.txt"), "mine")
        denied(lambda: os.rename(mount.at("team_a/move-me.txt"), mount.at("team_b/stolen.txt")))
        denied(lambda: os.rename(mount.at("team_b/x"), mount.at("team_a/x")))
        # Inside the grant everything works.
        os.mkdir(mount.at("team_a/made"))
        os.rename(mount.at("team_a/move-me.txt"), mount.at("team_a/made/moved.txt"))
        assert read_text(mount.at("team_a/made/moved.txt")) == "mine"
        os.unlink(mount.at("team_a/made/moved.txt"))
        os.rmdir(mount.at("team_a/made"))
    assert (demo / "team_b" / "x").read_bytes() == DEMO_TREE["team_b/x"]
    assert (demo / "secret.txt").read_bytes() == DEMO_TREE["secret.txt"]
    assert not (demo / "team_b" / "stolen.txt").exists() and not (demo / "public" / "alice.txt").exists()


def test_a_read_only_scope_allows_reads_and_refuses_every_write(dep: AccessDeployment) -> None:
    demo = dep.fs.export_dir("demo")
    before = {p: p.stat().st_mode for p in demo.rglob("*")}
    with dep.mount(READER) as mount:
        assert read_text(mount.at("secret.txt")) == "top secret\n"
        assert sorted(os.listdir(mount.at())) == sorted({k.split("/")[0] for k in DEMO_TREE} | {"shared"})
        assert os.path.getsize(mount.at("team_b/x")) == len(DEMO_TREE["team_b/x"])
        denied(lambda: write_text(mount.at("secret.txt"), "changed"))
        denied(lambda: write_text(mount.at("secret.txt"), "more", "a"))
        denied(lambda: write_text(mount.at("public/new.txt"), "new"))
        denied(lambda: os.mkdir(mount.at("public/newdir")))
        denied(lambda: os.unlink(mount.at("secret.txt")))
        denied(lambda: os.rename(mount.at("secret.txt"), mount.at("public/secret.txt")))
        denied(lambda: os.chmod(mount.at("secret.txt"), 0o600))
        denied(lambda: os.rmdir(mount.at("team_b")))
        denied(lambda: os.utime(mount.at("secret.txt"), (0, 0)))
        assert read_text(mount.at("secret.txt")) == "top secret\n"
    assert (demo / "secret.txt").read_bytes() == DEMO_TREE["secret.txt"]
    assert {p: p.stat().st_mode for p in demo.rglob("*")} == before


def test_mount_refusals_carry_the_agents_reason(dep: AccessDeployment) -> None:
    with dep.mount(ALICE) as mount:
        exc = denied(lambda: read_text(mount.at("team_b/x")))
    assert "permission denied: user 'alice' may not read '/team_b/x' in export 'demo'" in str(exc)
    assert exc.filename == mount.at("team_b/x")


# ----- 2. a prefix scope cannot see its siblings -----------------------------------------------


def test_a_prefix_scope_sees_only_its_prefix(dep: AccessDeployment) -> None:
    with dep.mount(ALICE) as mount:
        assert os.listdir(mount.at()) == ["team_a"]
        assert [entry.name for entry in os.scandir(mount.at())] == ["team_a"]
        assert os.path.isdir(mount.at())  # stat of the root works
        assert os.stat(mount.at()).st_mode & 0o040000
        assert not os.path.exists(mount.at("team_b"))
        assert not os.path.exists(mount.at("secret.txt"))
        denied(lambda: read_text(mount.at("team_b/x")))
        walked = sorted(os.path.relpath(os.path.join(d, f), mount.at()) for d, _, fs in os.walk(mount.at()) for f in fs)
        assert all(path.startswith("team_a/") for path in walked) and "team_a/notes.txt" in walked


# ----- 3. users who manage users reach exports registered later ---------------------------------


def test_a_user_manager_reaches_an_export_registered_after_login(dep: AccessDeployment) -> None:
    admin = dep.patcher(ADMIN)
    admin.install()
    late_root = dep.fs.export_dir("late")
    write_tree(late_root, {"data/a.txt": b"late data\n"})
    try:
        dep.fs.start_agent("agent-2", {"late": str(late_root)})
        wait_until(
            lambda: "late" in FsMasterLink(dep.client("probe"), MASTER_KEY).call(CONFIG_PATH, {})["exports"],
            10,
            "export 'late' in the snapshot",
        )
        mount_dir = dep.fs.root / "admin-late"
        admin.mount_remote_dir(local_mount_dir_abs=str(mount_dir), export_name="late")
        assert os.listdir(mount_dir) == ["data"]
        assert read_text(str(mount_dir / "data/a.txt")) == "late data\n"
        write_text(str(mount_dir / "data/b.txt"), "by admin")
        assert (late_root / "data" / "b.txt").read_text() == "by admin"
    finally:
        admin.uninstall()
    with dep.access_store() as store:  # reached without any scope row for the new export
        assert store.list_scopes("late") == []
    with dep.mount(ALICE, "late") as mount:  # no grant on the new export: nothing in it
        denied(lambda: os.listdir(mount.at()))
        denied(lambda: read_text(mount.at("data/a.txt")))


# ----- 4. revocation and password change reach open mounts within the bound ---------------------


def test_a_password_changed_with_the_cli_ends_open_sessions_and_the_new_one_works(dep: AccessDeployment) -> None:
    new_password = "Al1ce-new-plain-3d7e"
    PASSWORDS_USED.add(new_password)
    with dep.mount(ALICE) as mount:
        count = iter(range(1_000_000))

        def write_new_file() -> None:
            write_text(mount.at(f"team_a/pw-{next(count)}.txt"), "x")

        write_new_file()
        changed = subprocess.run(
            [sys.executable, "-c", FLUXON, "users", "passwd", ALICE[0], "--db", str(dep.access_db)],
            input=new_password + "\n",
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert changed.returncode == 0, changed.stderr
        refused_within(write_new_file, dep.revocation_bound_s + SLACK_S, "writes refused after the password change")
        denied(lambda: read_text(mount.at("team_a/notes.txt")))
        assert not logs_in(dep, ALICE)
        mount.patcher.set_request_identity(ALICE[0], new_password)
        write_new_file()
        assert read_text(mount.at("team_a/notes.txt")) == "alice's notes\n"
    with dep.access_store() as store:  # give alice her bootstrap password back for other tests
        store.set_password(ALICE[0], ALICE[1])


def test_a_grant_revoked_with_the_cli_ends_access_of_open_mounts(
    dep: AccessDeployment, capsys: pytest.CaptureFixture[str]
) -> None:
    with dep.mount(CAROL) as carol, dep.mount(DAVE) as dave:
        assert read_text(carol.at("shared/common.txt")) == "shared content\n"
        assert read_text(dave.at("shared/common.txt")) == "shared content\n"
        out = run_users(
            capsys,
            "revoke",
            "--db",
            str(dep.access_db),
            "--export",
            "demo",
            "--prefix",
            "shared",
            "--mode",
            "read_write",
            CAROL[0],
        )
        assert "revoked 1 grant" in out
        refused_within(
            lambda: read_text(carol.at("shared/common.txt")),
            dep.revocation_bound_s + STALE_WINDOW_S + SLACK_S,
            "carol's reads refused after the revoke",
        )
        denied(lambda: write_text(carol.at("shared/carol.txt"), "x"))
        assert logs_in(dep, CAROL)  # the user still exists, only the grant is gone
        assert read_text(dave.at("shared/common.txt")) == "shared content\n"  # other grants untouched


def test_grants_changed_through_the_store_reach_open_mounts_within_the_bound(dep: AccessDeployment) -> None:
    # The agent re-reads the access epoch once per bound, so right after a change became visible the
    # next one takes a whole bound: this measures the bound the agent really runs with.
    with dep.mount(CAROL) as mount:
        count = iter(range(1_000_000))

        def write_new_file() -> None:
            write_text(mount.at(f"team_b/carol-{next(count)}.txt"), "x")

        denied(write_new_file)
        with dep.access_store() as store:
            store.grant("demo", "team_b", ScopeMode.READ_WRITE, [CAROL[0]])
        try:
            wait_until(
                lambda: write_new_file() or True, dep.revocation_bound_s + SLACK_S, "carol writes after the grant"
            )
        finally:
            with dep.access_store() as store:
                store.revoke("demo", "team_b", mode=ScopeMode.READ_WRITE, usernames=[CAROL[0]])
        refused_within(write_new_file, dep.revocation_bound_s + SLACK_S, "carol's writes refused after the revoke")


def test_a_user_removed_with_the_cli_is_refused_on_open_mounts_and_at_login(
    dep: AccessDeployment, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = ("erin", "Er1n-plain-77c2")
    PASSWORDS_USED.add(victim[1])
    run_users(capsys, "add", victim[0], "--db", str(dep.access_db), "--password", victim[1])
    run_users(capsys, "grant", "--db", str(dep.access_db), "--export", "demo", "--mode", "read_only", victim[0])
    with dep.mount(victim) as mount:
        assert read_text(mount.at("public/readme.txt")) == "hello\n"
        run_users(capsys, "remove", victim[0], "--db", str(dep.access_db))
        refused_within(
            lambda: os.listdir(mount.at(f"team_b/{time.monotonic_ns()}")),  # an uncached path every time
            dep.revocation_bound_s + SLACK_S,
            "a removed user's requests refused",
        )
    assert login_message(dep, victim) == login_message(dep, ("nobody", victim[1]))


# ----- 5. bootstrap seeds an empty database only ----------------------------------------------


def test_bootstrap_never_overwrites_a_populated_database(dep: AccessDeployment) -> None:
    # A second fs master with its own access db, on the same KV plane, started twice (~10 s when loaded).
    key, db = "fs-master-b", dep.fs.root / "b" / "access.db"
    boss_first, ann = ("boss", "B0ss-first-plain-41"), ("ann", "Ann-first-plain-9c")
    boss_second, ben = ("boss", "B0ss-second-plain-e5"), ("ben", "Ben-second-plain-08")
    boss_changed = ("boss", "B0ss-changed-plain-6a")
    PASSWORDS_USED.update(pw for _, pw in (boss_first, ann, boss_second, ben, boss_changed))

    def users(admin: Credentials, other: Credentials) -> list[dict]:
        return [
            {"username": admin[0], "password": admin[1], "can_manage_users": True},
            {"username": other[0], "password": other[1]},
        ]

    def grant(user: str) -> list[dict]:
        return [{"export_name": "demo", "prefix": "public", "mode": "read_only", "usernames": [user]}]

    first = dep.start_master(key, db, users(boss_first, ann), grant(ann[0]))
    assert logs_in(dep, boss_first, key) and logs_in(dep, ann, key)
    with dep.access_store(db) as store:  # the admin changes their password (as the panel does)
        store.set_password(boss_changed[0], boss_changed[1])
    assert logs_in(dep, boss_changed, key) and not logs_in(dep, boss_first, key)
    stop(first)

    dep.start_master(key, db, users(boss_second, ben), grant(ben[0]))
    # A fresh client: one that knew the first master's endpoint waits out its RPC timeout once (KV bug).
    client = "app-b2"
    assert logs_in(dep, ann, key, client) and logs_in(dep, boss_changed, key, client)
    assert not logs_in(dep, boss_first, key, client)  # the bootstrap password the admin replaced
    assert not logs_in(dep, boss_second, key, client)  # the new bootstrap's password
    assert not logs_in(dep, ben, key, client)  # the new bootstrap's user
    with dep.access_store(db) as store:
        assert [u.username for u in store.list_users()] == ["ann", "boss"]
        assert [(s.prefix, s.usernames) for s in store.list_scopes("demo")] == [("public", ("ann",))]


# ----- 6. tokens and secrets --------------------------------------------------------------------


def login_token(dep: AccessDeployment, identity: Credentials) -> str:
    return str(
        FsMasterLink(dep.client("probe"), MASTER_KEY).call(
            AUTH_LOGIN_PATH, {"username": identity[0], "password": identity[1]}
        )["token"]
    )


def flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1 :]


def test_the_agent_refuses_tampered_and_expired_tokens(dep: AccessDeployment) -> None:
    token = login_token(dep, READER)
    assert dep.agent_ops("demo", token).stat("secret.txt").size == len(DEMO_TREE["secret.txt"])
    header, payload, _ = token.split(".")
    tampered = [
        flip(token, len(header) + 1 + len(payload) // 2),  # inside the claims
        flip(token, len(token) - 3),  # inside the MAC
        f"{header}.{payload}.",  # no MAC
        f"{header}.{payload}",  # no MAC part at all
    ]
    denied(lambda: dep.agent_ops("demo", "fy1" + token[3:]).stat("secret.txt"))  # judged as a cluster token
    for bad in tampered:
        exc = denied(lambda bad=bad: dep.agent_ops("demo", bad).stat("secret.txt"))
        assert INVALID_TOKEN_MESSAGE in str(exc), bad

    with dep.access_store() as store:
        secret = store.token_secret()
        reader = store.get_user(READER[0])
    assert reader is not None
    expired = TokenSigner(secret, ttl_s=60, clock=lambda: time.time() - 3600).issue(
        READER[0], reader.credential_version
    )
    exc = denied(lambda: dep.agent_ops("demo", expired).read_chunk("secret.txt", 0, 100))
    assert EXPIRED_TOKEN_MESSAGE in str(exc)
    forged = TokenSigner(os.urandom(32)).issue(ADMIN[0], 1)  # well-formed, wrong secret
    exc = denied(lambda: dep.agent_ops("demo", forged).list_dir(""))
    assert INVALID_TOKEN_MESSAGE in str(exc)
    # The same secret but a token from before the password's credential version changed (stale cv).
    stale = TokenSigner(secret).issue(READER[0], reader.credential_version - 1)
    denied(lambda: dep.agent_ops("demo", stale).stat("secret.txt"))


def test_a_cluster_member_token_grants_nothing_at_an_agent(dep: AccessDeployment) -> None:
    # Every process attached to the KV plane holds the cluster secret; it must not act as the system.
    store = dep.client("member")
    cluster = store.cluster_authenticator()
    caller = store.instance_key()
    member = dep.agent_ops("demo", lambda path: cluster.token(caller, path), caller=caller)
    denied(lambda: member.stat("secret.txt"))
    denied(lambda: member.list_dir(""))
    denied(lambda: member.read_chunk("secret.txt", 0, 100))
    denied(lambda: member.mkdir("made-by-a-member", 0o755))
    assert not (dep.fs.export_dir("demo") / "made-by-a-member").exists()


def test_a_service_token_is_valid_only_for_its_own_path_and_caller(dep: AccessDeployment) -> None:
    service = read_service_credential(dep.fs.service_secret_file)
    caller = "transfer-worker"
    stat_path = op_path("demo", "stat")

    def stat_token(_path: str) -> str:
        return service.authenticator.token(caller, stat_path)

    worker = dep.agent_ops("demo", stat_token, caller=caller)
    assert worker.stat("secret.txt").size == len(DEMO_TREE["secret.txt"])  # its own path: allowed
    denied(lambda: worker.list_dir(""))
    denied(lambda: worker.read_chunk("secret.txt", 0, 100))
    denied(lambda: worker.unlink("secret.txt"))
    impostor = dep.agent_ops("demo", stat_token, caller="someone-else")
    denied(lambda: impostor.stat("secret.txt"))
    assert (dep.fs.export_dir("demo") / "secret.txt").exists()


def test_no_plaintext_password_in_the_access_db_or_role_logs(dep: AccessDeployment) -> None:
    # Run last in this module (file order) so it sees every flow above; it adds one change of its own.
    extra = "Read3r-rotated-plain-f1e0"
    PASSWORDS_USED.add(extra)
    with dep.access_store() as store:
        store.set_password(READER[0], extra)
    assert logs_in(dep, (READER[0], extra))
    with dep.access_store() as store:
        store.set_password(READER[0], READER[1])
    db_files = [
        p
        for db in (dep.access_db, dep.fs.root / "b" / "access.db")
        for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
        if p.exists()
    ]
    assert dep.access_db in db_files and Path(f"{dep.access_db}-wal") in db_files
    for path in [*db_files, *dep.role_logs()]:
        content = path.read_bytes()
        leaked = [pw for pw in PASSWORDS_USED if pw.encode() in content or pw.encode("utf-16-le") in content]
        assert not leaked, f"{path} holds plaintext passwords {leaked}"
    for db in (dep.access_db, dep.fs.root / "b" / "access.db"):
        if db.exists():
            assert db.stat().st_mode & 0o777 == 0o600, db
