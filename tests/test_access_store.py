"""The sqlite access store: bootstrap, users, passwords at rest, grants, epochs, schema migrations."""

from __future__ import annotations

import logging
import multiprocessing
import os
import sqlite3
import stat
import statistics
import time
from pathlib import Path

import pytest

from fluxon_core.access.access_keys import MAX_ACCESS_KEYS_PER_USER, is_access_key_id, sigv4_signing_key
from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.passwords import PasswordAlgorithm
from fluxon_core.access.records import ScopeMode
from fluxon_core.config import ConfigError, load_config
from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError, StoreClosedError, StoreInitFailedError
from fluxon_core.plugins import get_backends
from fluxon_core.protocols import AccessStore
from fluxon_fs.auth.identity import LOGIN_FAILED_MESSAGE, login
from fluxon_fs.auth.tokens import TokenSigner
from fluxon_plugins.sqlite_access.migrations import MIGRATIONS, Migration, current_version, run_migrations
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig

ADMIN_PW = "Canary-Admin-pw-81f3"
ALICE_PW = "Canary-Alice-pw-22c9"
MODEL = {
    "users": [
        {"username": "admin", "password": ADMIN_PW, "can_manage_users": True},
        {"username": "alice", "password": ALICE_PW},
    ],
    "scope_access": [{"export_name": "demo", "prefix": "data", "mode": "read_only", "usernames": ["alice"]}],
}


def model(data: dict | None = None) -> BootstrapAccessModelConfig:
    return load_config(BootstrapAccessModelConfig, MODEL if data is None else data, "bootstrap_access_model")


def open_store(path: Path, **options) -> SqliteAccessStore:
    return SqliteAccessStore(SqliteAccessStoreConfig(path=str(path), **options))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "access" / "access.db"


@pytest.fixture
def store(db: Path):
    store = open_store(db)
    yield store
    store.close()


def test_plugin_registers_kind_sqlite_implementing_both_protocols(db: Path) -> None:
    options = load_config(get_backends().entry("access_store", "sqlite").config_type, {"path": str(db)}, "x")
    store = get_backends().create("access_store", "sqlite", options)
    try:
        assert isinstance(store, AccessStore)
        assert isinstance(store, AccessStore)
        assert store.schema_version() == len(MIGRATIONS)
    finally:
        store.close()


def test_bootstrap_applies_only_to_an_empty_db_also_after_reopen(db: Path) -> None:
    store = open_store(db)
    assert store.bootstrap(model()) is True
    assert [u.username for u in store.list_users()] == ["admin", "alice"]
    store.set_password("admin", "changed-by-the-panel")
    store.add_user("bob", "bob-pw")
    assert store.bootstrap(model()) is False
    store.close()

    reopened = open_store(db)
    try:
        assert reopened.bootstrap(model()) is False
        assert [u.username for u in reopened.list_users()] == ["admin", "alice", "bob"]
        assert reopened.verify_password("admin", "changed-by-the-panel")
        assert not reopened.verify_password("admin", ADMIN_PW), "the bootstrap password must stop working"
    finally:
        reopened.close()


def test_bootstrap_does_not_apply_when_users_were_added_by_other_means(store: SqliteAccessStore) -> None:
    store.add_user("ops", "ops-pw", can_manage_users=True)
    assert store.bootstrap(model()) is False
    assert [u.username for u in store.list_users()] == ["ops"]
    assert store.list_scopes() == []


def test_bootstrap_writes_scopes(store: SqliteAccessStore) -> None:
    store.bootstrap(model())
    [scope] = store.list_scopes()
    assert (scope.export_name, scope.prefix, scope.mode, scope.usernames) == (
        "demo",
        "data",
        ScopeMode.READ_ONLY,
        ("alice",),
    )
    assert store.get_user("admin").can_manage_users
    assert not store.get_user("alice").can_manage_users


def _bootstrap_in_child(path: str) -> bool:
    store = open_store(Path(path))
    try:
        return store.bootstrap(model())
    finally:
        store.close()


def test_concurrent_bootstrap_from_several_processes_applies_once(db: Path) -> None:
    # Three spawned interpreters (~1-2 s of imports in total) race to seed the same new database.
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.map(_bootstrap_in_child, [str(db)] * 3)
    assert sorted(results) == [False, False, True]
    store = open_store(db)
    try:
        assert [u.username for u in store.list_users()] == ["admin", "alice"]
        assert len(store.list_scopes()) == 1
    finally:
        store.close()


def test_password_change_makes_the_old_password_fail_and_survives_reopen(db: Path) -> None:
    store = open_store(db)
    store.bootstrap(model())
    before = store.get_user("alice").credential_version
    after = store.set_password("alice", "alice-new-pw").credential_version
    assert after > before
    assert not store.verify_password("alice", ALICE_PW)
    assert store.verify_password("alice", "alice-new-pw")
    store.close()
    reopened = open_store(db)
    try:
        assert not reopened.verify_password("alice", ALICE_PW)
        assert reopened.verify_password("alice", "alice-new-pw")
        assert reopened.get_user("alice").credential_version == after
    finally:
        reopened.close()


def test_wrong_user_and_wrong_password_fail_with_the_same_message(store: SqliteAccessStore) -> None:
    store.bootstrap(model())
    signer = TokenSigner(store.token_secret())
    messages = []
    for username, password in [("alice", "wrong"), ("nobody", ALICE_PW), ("nobody", "wrong"), ("alice", "")]:
        with pytest.raises(PermissionDeniedError) as info:
            login(store, signer, username, password)
        assert isinstance(info.value, PermissionError)
        messages.append(str(info.value))
    assert set(messages) == {f"PermissionDeniedError: {LOGIN_FAILED_MESSAGE}"}
    assert "permission denied" in messages[0]
    assert login(store, signer, "alice", ALICE_PW).startswith("fx1.")


def _median_seconds(call, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def test_a_failed_check_takes_as_long_for_a_known_and_an_unknown_user(store: SqliteAccessStore) -> None:
    # The attack: an empty password was refused before any hashing for a known user (~0.01 ms) but
    # cost a decoy hash for an unknown one (~15 ms), so timing told which usernames exist.
    store.bootstrap(model())
    medians = {}
    for password in ("", "wrong", "x" * 5000, None):
        for username in ("alice", "nobody"):
            medians[username, password] = _median_seconds(
                lambda u=username, p=password: store.verify_credentials(u, p), rounds=9
            )
    for password in ("", "wrong", "x" * 5000, None):
        known, unknown = medians["alice", password], medians["nobody", password]
        assert 1 / 3 < known / unknown < 3, (password, known, unknown)
        assert known > 0.001, "every refusal does real hash work"
    assert store.verify_credentials("alice", ALICE_PW) is not None  # the right password still works


def _files_of(db: Path) -> list[Path]:
    return [p for p in db.parent.iterdir() if p.name.startswith(db.name)]


def test_the_db_files_never_contain_a_plaintext_password(db: Path) -> None:
    store = open_store(db)
    store.bootstrap(model())
    store.add_user("carol", "Canary-Carol-pw-5d0e")
    store.set_password("alice", "Canary-Alice-new-9a41")
    store.verify_password("carol", "Canary-Carol-pw-5d0e")
    canaries = [ADMIN_PW, ALICE_PW, "Canary-Carol-pw-5d0e", "Canary-Alice-new-9a41"]

    def assert_clean() -> None:
        files = _files_of(db)
        assert db in files
        for path in files:
            data = path.read_bytes()
            for canary in canaries:
                for encoded in (canary.encode("utf-8"), canary.encode("utf-16-le"), canary.encode("utf-16-be")):
                    assert encoded not in data, f"{path.name} contains a plaintext password"

    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0, "the check must cover the WAL while it holds the writes"
    assert_clean()
    store.close()
    assert_clean()
    raw = sqlite3.connect(db)
    hashes = [row[0] for row in raw.execute("SELECT password_hash FROM users")]
    raw.close()
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_an_existing_world_readable_access_db_is_tightened_on_open(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The finding: an access db left 0644 (password hashes and the token secret) stayed 0644.
    store = open_store(db)
    store.bootstrap(model())
    store.close()
    wal = db.with_name(db.name + "-wal")
    for path in (db, wal):
        if path.exists():
            path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="fluxon.access"):
        reopened = open_store(db)
    try:
        assert {stat.S_IMODE(p.stat().st_mode) for p in _files_of(db)} == {0o600}
        assert f"{db} was mode 0644; made it owner-only (0600)" in caplog.text
        assert reopened.verify_credentials("alice", ALICE_PW) is not None
    finally:
        reopened.close()


def test_scrypt_hashes_and_mixed_algorithms_verify(db: Path) -> None:
    # One scrypt hash costs ~0.1-0.5 s (128 MiB, OWASP minimum); two are computed here.
    store = open_store(db, password_hash=PasswordAlgorithm.SCRYPT)
    store.add_user("s", "scrypt-pw", can_manage_users=True)
    store.close()
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT password_hash FROM users").fetchone()[0].startswith("$scrypt$ln=17,r=8,p=1$")
    raw.close()
    store = open_store(db)  # argon2id for new hashes; the scrypt one still verifies
    try:
        store.add_user("a", "argon-pw")
        assert store.verify_password("s", "scrypt-pw")
        assert not store.verify_password("s", "scrypt-PW")
        assert store.verify_password("a", "argon-pw")
    finally:
        store.close()


def test_user_management_errors_name_the_problem(store: SqliteAccessStore) -> None:
    store.bootstrap(model())
    cases = [
        (lambda: store.add_user("alice", "x"), "user 'alice' already exists"),
        (lambda: store.add_user("bad name", "x"), "username must be a name"),
        (lambda: store.add_user("dave", ""), "password must not be empty"),
        (lambda: store.remove_user("nobody"), "user 'nobody' does not exist"),
        (lambda: store.set_password("nobody", "x"), "user 'nobody' does not exist"),
        (lambda: store.remove_user("admin"), "last user who can manage users"),
        (lambda: store.set_can_manage_users("admin", False), "last user who can manage users"),
        (lambda: store.grant("demo", "x", ScopeMode.READ_ONLY, ["ghost"]), "unknown users: ghost"),
        (lambda: store.grant("demo", "../etc", ScopeMode.READ_ONLY, ["alice"]), "'..'"),
        (lambda: store.grant("demo", "x", ScopeMode.READ_ONLY, []), "non-empty list"),
        (lambda: store.grant("demo", "x", "write", ["alice"]), "mode must be read_only or read_write, got 'write'"),
        (lambda: store.grant("bad export", "x", "read_only", ["alice"]), "export_name must be a name"),
    ]
    epoch = store.auth_epoch()
    for call, expected in cases:
        with pytest.raises(InvalidArgumentError) as info:
            call()
        assert expected in str(info.value)
    assert store.auth_epoch() == epoch, "refused changes must not bump the epoch"
    store.set_can_manage_users("alice", True)
    store.remove_user("admin")  # fine now: alice can manage users
    assert [u.username for u in store.list_users()] == ["alice"]


def test_grants_revokes_and_listing(store: SqliteAccessStore) -> None:
    store.bootstrap(model())
    store.add_user("bob", "bob-pw")
    scope = store.grant("demo", "/data/", ScopeMode.READ_ONLY, ["bob"])
    assert scope.prefix == "data" and scope.usernames == ("alice", "bob")
    store.grant("demo", "out", ScopeMode.READ_WRITE, ["bob"])
    store.grant("other", "", "read_only", ["alice"])
    assert [(s.export_name, s.prefix, s.mode.value) for s in store.list_scopes()] == [
        ("demo", "data", "read_only"),
        ("demo", "out", "read_write"),
        ("other", "", "read_only"),
    ]
    assert [s.prefix for s in store.list_scopes("demo")] == ["data", "out"]
    access = store.user_access("bob")
    assert [(g.export_name, g.prefix, g.mode) for g in access.grants] == [
        ("demo", "data", ScopeMode.READ_ONLY),
        ("demo", "out", ScopeMode.READ_WRITE),
    ]
    assert store.revoke("demo", "data", usernames=["bob"]) == 1
    assert store.revoke("demo", "data", usernames=["bob"]) == 0
    assert store.revoke("demo", "out", mode=ScopeMode.READ_ONLY) == 0
    assert store.revoke("demo", "out") == 1
    assert [s.prefix for s in store.list_scopes("demo")] == ["data"], "a scope without members is deleted"
    store.remove_user("alice")
    assert store.list_scopes() == [], "removing a user removes its memberships and the emptied scopes"
    assert store.user_access("alice") is None


def test_every_change_bumps_the_epoch_and_recreated_users_get_a_new_credential_version(
    store: SqliteAccessStore,
) -> None:
    store.bootstrap(model())
    epochs = [store.auth_epoch()]
    first = store.add_user("eve", "eve-pw").credential_version
    for change in (
        lambda: store.grant("demo", "e", ScopeMode.READ_WRITE, ["eve"]),
        lambda: store.set_can_manage_users("eve", True),
        lambda: store.revoke("demo", "e"),
        lambda: store.remove_user("eve"),
    ):
        epochs.append(store.auth_epoch())
        change()
    epochs.append(store.auth_epoch())
    assert epochs == sorted(set(epochs)), f"epoch must strictly increase: {epochs}"
    again = store.add_user("eve", "eve-pw").credential_version
    assert again > first, "an old token of a removed user must not match a re-created one"


def test_schema_version_and_idempotent_migration_runner(db: Path) -> None:
    store = open_store(db)
    store.close()
    latest = len(MIGRATIONS)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rows = conn.execute("SELECT version, name FROM schema_version").fetchall()
        assert rows == [(1, "initial schema"), (2, "S3 access keys")]
        assert run_migrations(conn, MIGRATIONS, db_label="t") == []

        def add_column(c: sqlite3.Connection) -> None:
            c.execute("ALTER TABLE users ADD COLUMN note TEXT")

        def broken(c: sqlite3.Connection) -> None:
            c.execute("CREATE TABLE half_done (x)")
            raise RuntimeError("step failed")

        steps = (*MIGRATIONS, Migration(latest + 1, "note column", add_column))
        assert run_migrations(conn, steps, db_label="t") == [latest + 1]
        assert run_migrations(conn, steps, db_label="t") == []
        with pytest.raises(RuntimeError):
            run_migrations(conn, (*steps, Migration(latest + 2, "broken", broken)), db_label="t")
        assert current_version(conn) == latest + 1
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name='half_done'").fetchone() is None
        with pytest.raises(ValueError, match=r"numbered 1\.\.n"):
            run_migrations(conn, (MIGRATIONS[0], Migration(3, "gap", add_column)), db_label="t")
    finally:
        conn.close()
    with pytest.raises(StoreInitFailedError, match=f"schema version {latest + 1}, newer than this Fluxon supports"):
        open_store(db)


def test_a_version_1_db_gains_the_access_key_table_and_keeps_its_users(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    run_migrations(conn, MIGRATIONS[:1], db_label="t")
    conn.execute("INSERT INTO users VALUES ('old', '$scrypt$ln=1,r=1,p=1$AAAA$AAAA', 1, 1, 0, 0)")
    conn.close()
    store = open_store(db)
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert [u.username for u in store.list_users()] == ["old"]
        assert store.create_access_key("old").record.username == "old"
    finally:
        store.close()


def test_closed_store_refuses_calls(store: SqliteAccessStore) -> None:
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.list_users()


def test_token_secret_is_shared_by_every_opener(db: Path) -> None:
    first, second = open_store(db), open_store(db)
    try:
        assert len(first.token_secret()) >= 32
        assert first.token_secret() == second.token_secret()
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"users": []}, "bootstrap_access_model.users must not be empty"),
        (
            {"users": [{"username": "a", "password": "p"}]},
            "bootstrap_access_model.users must contain a user with can_manage_users: true",
        ),
        (
            {"users": [{"username": "a", "password": "p", "can_manage_users": True}] * 2},
            "bootstrap_access_model.users[1].username duplicates username 'a'",
        ),
        (
            {
                "users": [{"username": "a", "password": "p", "can_manage_users": True}],
                "scope_access": [{"export_name": "e", "mode": "read_only", "usernames": ["b"]}],
            },
            "bootstrap_access_model.scope_access[0].usernames[0] names 'b', which is not in users",
        ),
        (
            {
                "users": [{"username": "a", "password": "p", "can_manage_users": True}],
                "scope_access": [{"export_name": "e", "mode": "write", "usernames": ["a"]}],
            },
            "bootstrap_access_model.scope_access[0].mode must be one of 'read_only', 'read_write'",
        ),
        (
            {
                "users": [{"username": "a", "password": "p", "can_manage_users": True}],
                "scope_access": [{"export_name": "e", "prefix": "a/../b", "mode": "read_only", "usernames": ["a"]}],
            },
            "bootstrap_access_model.scope_access[0].prefix must be an export-relative directory",
        ),
        ({"users": [{"username": "a", "password": ""}]}, "bootstrap_access_model.users[0].password must not be empty"),
    ],
)
def test_bootstrap_model_config_errors_name_the_field(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        model(data)
    assert message in str(info.value)


def test_bootstrap_model_repr_hides_passwords() -> None:
    text = repr(model())
    assert ADMIN_PW not in text and ALICE_PW not in text
    assert "admin" in text


def test_store_opens_with_a_relative_path_in_a_new_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(Path("nested/dir/access.db"))
    try:
        assert store.schema_version() == len(MIGRATIONS)
        assert os.path.isfile(tmp_path / "nested/dir/access.db")
    finally:
        store.close()


def test_access_keys_create_list_derive_and_revoke(store: SqliteAccessStore) -> None:
    store.bootstrap(model())
    epoch = store.auth_epoch()
    created = store.create_access_key("alice")
    assert store.auth_epoch() > epoch
    assert is_access_key_id(created.record.access_key_id) and created.record.username == "alice"
    assert created.secret_access_key not in repr(created)
    assert store.list_access_keys("alice") == [created.record]
    assert store.list_access_keys("admin") == []
    grant = store.access_key_signing_key(created.record.access_key_id, "20260105", "us-east-1", "s3")
    assert grant is not None and grant.username == "alice"
    assert grant.signing_key == sigv4_signing_key(created.secret_access_key, "20260105", "us-east-1", "s3")
    assert (
        grant.signing_key
        != store.access_key_signing_key(created.record.access_key_id, "20260106", "us-east-1", "s3").signing_key
    )  # type: ignore[union-attr]
    assert store.access_key_signing_key("FX" + "A" * 18, "20260105", "us-east-1", "s3") is None
    assert store.access_key_signing_key("not-a-key", "20260105", "us-east-1", "s3") is None
    with pytest.raises(InvalidArgumentError, match="signing date must be YYYYMMDD"):
        store.access_key_signing_key(created.record.access_key_id, "2026-01-05", "us-east-1", "s3")
    assert store.revoke_access_key(created.record.access_key_id) == created.record
    assert store.access_key_signing_key(created.record.access_key_id, "20260105", "us-east-1", "s3") is None
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        store.revoke_access_key(created.record.access_key_id)


def test_access_key_errors_limits_and_removal_with_the_user(store: SqliteAccessStore) -> None:
    store.bootstrap(model())
    with pytest.raises(InvalidArgumentError, match="user 'nobody' does not exist"):
        store.create_access_key("nobody")
    with pytest.raises(InvalidArgumentError, match="access key id must be"):
        store.revoke_access_key("../etc")
    keys = [store.create_access_key("alice") for _ in range(MAX_ACCESS_KEYS_PER_USER)]
    with pytest.raises(InvalidArgumentError, match="revoke one first"):
        store.create_access_key("alice")
    assert len({k.record.access_key_id for k in keys}) == MAX_ACCESS_KEYS_PER_USER
    store.remove_user("alice")
    assert store.list_access_keys() == []
    assert store.access_key_signing_key(keys[0].record.access_key_id, "20260105", "us-east-1", "s3") is None


def test_sigv4_signing_key_matches_the_aws_documented_example() -> None:
    # The derivation example of the AWS Signature V4 documentation.
    key = sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam")
    assert key.hex() == "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
