"""``fluxon users`` end to end on a temporary access db."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fluxon_core.cli import Command, build_parser
from fluxon_core.errors import PermissionDeniedError
from fluxon_fs.auth.identity import Authorizer
from fluxon_fs.auth.tokens import TokenSigner
from fluxon_fs.cli import users as commands
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig
from tests.support.poll import wait_until

ROOT = Path(__file__).resolve().parents[1]

# Runs the real ``fluxon`` entry point; ``fluxon users`` comes from the fluxon_fs plugin.
FLUXON = "import sys; from fluxon_core.cli import main; sys.exit(main(sys.argv[1:]))"


def fluxon(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FLUXON, *argv], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def run_users(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = build_parser({"users": Command("users", "h", commands.add_arguments, commands.run, "test")})
    args = parser.parse_args(["users", *argv])
    status = args._run(args)
    out, err = capsys.readouterr()
    return status, out, err


def open_store(db: Path) -> SqliteAccessStore:
    return SqliteAccessStore(SqliteAccessStoreConfig(path=str(db)))


def test_users_lifecycle_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "access.db")
    assert run_users(["add", "root", "--db", db, "--can-manage-users", "--password", "root-pw"], capsys)[0] == 0
    assert run_users(["add", "alice", "--db", db, "--password", "alice-pw"], capsys)[0] == 0
    status, out, _ = run_users(
        ["grant", "--db", db, "--export", "demo", "--prefix", "/data/", "--mode", "read_only", "alice"], capsys
    )
    assert (status, out.strip()) == (0, "demo:/data read_only: alice")
    status, out, _ = run_users(["list", "--db", db, "--json"], capsys)
    report = json.loads(out)
    assert [(u["username"], u["can_manage_users"]) for u in report["users"]] == [("alice", False), ("root", True)]
    assert report["scope_access"] == [
        {"export_name": "demo", "prefix": "data", "mode": "read_only", "usernames": ["alice"]}
    ]
    status, out, _ = run_users(["list", "--db", db], capsys)
    assert "root" in out and "demo:/data  read_only  alice" in out

    status, _, err = run_users(["remove", "root", "--db", db], capsys)
    assert status == 1 and "last user who can manage users" in err
    assert run_users(["can-manage", "alice", "yes", "--db", db], capsys)[0] == 0
    assert run_users(["revoke", "--db", db, "--export", "demo", "--prefix", "data"], capsys)[0] == 0
    status, _, err = run_users(["revoke", "--db", db, "--export", "demo", "--prefix", "data"], capsys)
    assert status == 1 and "no matching grant" in err
    assert run_users(["remove", "root", "--db", db], capsys)[0] == 0
    status, _, err = run_users(["passwd", "root", "--db", db, "--password", "x"], capsys)
    assert status == 1 and "user 'root' does not exist" in err

    store = open_store(tmp_path / "access.db")
    try:
        assert [u.username for u in store.list_users()] == ["alice"]
        assert store.list_scopes() == []
    finally:
        store.close()


def test_actions_other_than_add_refuse_a_missing_db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    status, _, err = run_users(["list", "--db", str(missing)], capsys)
    assert status == 2 and "does not exist" in err
    assert not missing.exists()


def test_bad_arguments_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser({"users": Command("users", "h", commands.add_arguments, commands.run, "test")})
    for argv in (["users"], ["users", "grant", "--db", "x", "--export", "e", "--mode", "write", "a"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(argv)
        assert info.value.code == 2
    capsys.readouterr()


def test_fluxon_users_as_a_real_process_with_passwords_on_stdin(tmp_path: Path) -> None:
    # A few interpreter start-ups (~0.5-1 s each): the real entry point, stdin and exit codes.
    db = str(tmp_path / "access.db")
    result = fluxon("users", "add", "root", "--db", db, "--can-manage-users", stdin="root-pw-1\n")
    assert result.returncode == 0, result.stderr
    result = fluxon("users", "grant", "--db", db, "--export", "demo", "--mode", "read_write", "ghost")
    assert result.returncode == 1 and "unknown users: ghost" in result.stderr

    store = open_store(tmp_path / "access.db")
    try:
        assert store.verify_password("root", "root-pw-1"), "the trailing newline is not part of the password"
        authorizer = Authorizer(store, TokenSigner(store.token_secret()), revocation_bound_s=0.1)
        token = authorizer.login("root", "root-pw-1")
        authorizer.authorize(token, "demo", "x", is_write=True)

        result = fluxon("users", "passwd", "root", "--db", db, stdin="root-pw-2\n")
        assert result.returncode == 0, result.stderr

        def session_ended() -> bool:
            try:
                authorizer.authenticate(token)
            except PermissionDeniedError:
                return True
            return False

        wait_until(session_ended, 5.0, "a password change made by another process to end the session")
        assert not store.verify_password("root", "root-pw-1")
        assert store.verify_password("root", "root-pw-2")
    finally:
        store.close()
    result = fluxon("users", "list", "--db", db)
    assert result.returncode == 0 and "root" in result.stdout


def test_access_keys_are_created_listed_and_revoked_from_the_shell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "access.db")
    assert run_users(["add", "alice", "--db", db, "--password", "alice-pw"], capsys)[0] == 0
    status, out, _ = run_users(["create-key", "alice", "--db", db, "--json"], capsys)
    created = json.loads(out)
    assert status == 0 and created["username"] == "alice" and len(created["secret_access_key"]) == 40
    status, out, _ = run_users(["create-key", "alice", "--db", db], capsys)
    assert status == 0 and "shown only now" in out and "aws_secret_access_key" in out
    status, out, _ = run_users(["list-keys", "--db", db, "--json"], capsys)
    listed = json.loads(out)
    assert [k["username"] for k in listed] == ["alice", "alice"] and created["secret_access_key"] not in out
    assert created["access_key_id"] in [k["access_key_id"] for k in listed]
    status, out, _ = run_users(["list-keys", "nobody", "--db", db], capsys)
    assert (status, out.strip()) == (0, "no access keys")
    status, out, _ = run_users(["revoke-key", created["access_key_id"], "--db", db], capsys)
    assert status == 0 and f"revoked access key {created['access_key_id']} of alice" in out
    status, _, err = run_users(["revoke-key", created["access_key_id"], "--db", db], capsys)
    assert status == 1 and "does not exist" in err
    status, _, err = run_users(["create-key", "nobody", "--db", db], capsys)
    assert status == 1 and "user 'nobody' does not exist" in err
    store = open_store(Path(db))
    try:
        assert len(store.list_access_keys("alice")) == 1
    finally:
        store.close()
