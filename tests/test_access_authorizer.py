"""Login and per-request authorization against a real sqlite access store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.records import ScopeMode
from fluxon_core.config import load_config
from fluxon_core.errors import InvalidArgumentError, PermissionDeniedError
from fluxon_fs.auth.identity import SESSION_REVOKED_MESSAGE, Authorizer
from fluxon_fs.auth.scopes import PathAccess
from fluxon_fs.auth.tokens import EXPIRED_TOKEN_MESSAGE, TokenSigner
from fluxon_plugins.sqlite_access.store import SqliteAccessStore, SqliteAccessStoreConfig
from tests.support.poll import wait_until

MODEL = {
    "users": [
        {"username": "admin", "password": "admin-pw", "can_manage_users": True},
        {"username": "alice", "password": "alice-pw"},
    ],
    "scope_access": [
        {"export_name": "demo", "prefix": "data", "mode": "read_only", "usernames": ["alice"]},
        {"export_name": "demo", "prefix": "data/out", "mode": "read_write", "usernames": ["alice"]},
    ],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingStore:
    """Delegates to the real store and counts the reads the authorizer makes."""

    def __init__(self, store: SqliteAccessStore) -> None:
        self.store = store
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str):
        attr = getattr(self.store, name)
        if name in ("auth_epoch", "user_access"):

            def counted(*args, **kwargs):
                self.calls[name] = self.calls.get(name, 0) + 1
                return attr(*args, **kwargs)

            return counted
        return attr


@pytest.fixture
def store(tmp_path: Path):
    store = SqliteAccessStore(SqliteAccessStoreConfig(path=str(tmp_path / "access.db")))
    store.bootstrap(load_config(BootstrapAccessModelConfig, MODEL))
    yield store
    store.close()


def make(store, *, bound_s: float = 0.2, clock=time.monotonic, ttl_s: int = 3600) -> Authorizer:
    return Authorizer(store, TokenSigner(store.token_secret(), ttl_s=ttl_s), revocation_bound_s=bound_s, clock=clock)


def denied(call, fragment: str = "permission denied") -> PermissionDeniedError:
    with pytest.raises(PermissionDeniedError) as info:
        call()
    assert fragment in str(info.value)
    return info.value


def test_login_then_authorize_by_scope(store: SqliteAccessStore) -> None:
    authorizer = make(store)
    token = authorizer.login("alice", "alice-pw")
    assert authorizer.authenticate(token).username == "alice"
    assert not authorizer.authenticate(token).can_manage_users
    authorizer.authorize(token, "demo", "data/a.bin", is_write=False)
    authorizer.authorize(token, "demo", "data/out/new.bin", is_write=True)
    error = denied(lambda: authorizer.authorize(token, "demo", "data/a.bin", is_write=True))
    assert "may not write '/data/a.bin' in export 'demo'" in str(error)
    denied(lambda: authorizer.authorize(token, "demo", "database/x", is_write=False))
    denied(lambda: authorizer.authorize(token, "other", "data/a.bin", is_write=False))
    denied(lambda: authorizer.authorize(token, "demo", "", is_write=False))
    authorizer.authorize_lookup(token, "demo", "")
    denied(lambda: authorizer.authorize_lookup(token, "demo", "secret"))
    assert authorizer.authorize_listing(token, "demo", "").names == frozenset({"data"})
    denied(lambda: authorizer.authorize_listing(token, "demo", "secret"))
    assert authorizer.path_access(token, "demo", "data/out") is PathAccess.READ_WRITE
    denied(lambda: authorizer.authorize(token, "demo", "data/../secret", is_write=False), "'..' component")
    admin = authorizer.login("admin", "admin-pw")
    denied(lambda: authorizer.authorize(admin, "demo", "/etc", is_write=False), "absolute path")
    denied(lambda: authorizer.authorize_listing(admin, "demo", ".."), "'..' component")
    with pytest.raises(InvalidArgumentError):
        authorizer.authorize(admin, "demo", "a\x00b", is_write=False)


def test_managers_reach_exports_registered_later(store: SqliteAccessStore) -> None:
    authorizer = make(store)
    token = authorizer.login("admin", "admin-pw")
    assert authorizer.authenticate(token).can_manage_users
    for export in ("demo", "an-export-created-after-login"):
        authorizer.authorize(token, export, "any/path", is_write=True)
        assert authorizer.authorize_listing(token, export, "").everything
    assert store.list_scopes("an-export-created-after-login") == [], "no synthetic scopes are written"


def test_bad_tokens_are_refused(store: SqliteAccessStore) -> None:
    clock = Clock()
    authorizer = Authorizer(store, TokenSigner(store.token_secret(), ttl_s=10, clock=clock))
    token = authorizer.login("alice", "alice-pw")
    denied(lambda: authorizer.authorize("", "demo", "data", is_write=False))
    denied(lambda: authorizer.authorize(token[:-2] + "xx", "demo", "data", is_write=False))
    clock.now += 10
    denied(lambda: authorizer.authorize(token, "demo", "data", is_write=False), EXPIRED_TOKEN_MESSAGE)


def test_a_busy_session_reads_the_store_once_per_bound(store: SqliteAccessStore) -> None:
    counting = CountingStore(store)
    clock = Clock()
    authorizer = make(counting, bound_s=2.0, clock=clock)
    token = authorizer.login("alice", "alice-pw")
    for _ in range(1000):
        authorizer.authorize(token, "demo", "data/x", is_write=False)
    assert counting.calls == {"auth_epoch": 1, "user_access": 1}
    clock.now += 2.0
    for _ in range(1000):
        authorizer.authorize(token, "demo", "data/x", is_write=False)
    assert counting.calls == {"auth_epoch": 2, "user_access": 1}, "an unchanged epoch keeps the cache"


def test_password_change_ends_sessions_exactly_at_the_bound(store: SqliteAccessStore) -> None:
    clock = Clock()
    authorizer = make(store, bound_s=2.0, clock=clock)
    token = authorizer.login("alice", "alice-pw")
    authorizer.authorize(token, "demo", "data", is_write=False)
    store.set_password("alice", "alice-new-pw")
    clock.now += 1.9
    authorizer.authorize(token, "demo", "data", is_write=False)  # still cached: the cost of cheap checks
    clock.now += 0.1
    denied(lambda: authorizer.authorize(token, "demo", "data", is_write=False), SESSION_REVOKED_MESSAGE)
    denied(lambda: authorizer.login("alice", "alice-pw"), "wrong username or password")
    new_token = authorizer.login("alice", "alice-new-pw")
    authorizer.authorize(new_token, "demo", "data", is_write=False)


@pytest.mark.parametrize(
    "revocation",
    [
        pytest.param(lambda s: s.set_password("alice", "other-pw"), id="password-change"),
        pytest.param(lambda s: s.remove_user("alice"), id="user-removed"),
        pytest.param(lambda s: s.revoke("demo", "data"), id="grant-revoked"),
    ],
)
def test_revocation_takes_effect_within_the_bound(store: SqliteAccessStore, revocation) -> None:
    bound_s = 0.2
    authorizer = make(store, bound_s=bound_s)
    token = authorizer.login("alice", "alice-pw")
    authorizer.authorize(token, "demo", "data/f", is_write=False)
    revocation(store)
    changed_at = time.monotonic()

    def refused() -> bool:
        try:
            authorizer.authorize(token, "demo", "data/f", is_write=False)
        except PermissionDeniedError:
            return True
        return False

    wait_until(refused, timeout_s=5.0, message="revocation to reach the authorizer")
    # Generous slack over the bound: the machine is shared, but minutes would mean no bound at all.
    assert time.monotonic() - changed_at < bound_s + 1.0


def test_new_grants_and_manager_rights_arrive_within_the_bound(store: SqliteAccessStore) -> None:
    authorizer = make(store, bound_s=0.1)
    token = authorizer.login("alice", "alice-pw")
    denied(lambda: authorizer.authorize(token, "fresh", "x", is_write=True))
    store.grant("fresh", "x", ScopeMode.READ_WRITE, ["alice"])
    wait_until(lambda: authorizer.authorize(token, "fresh", "x/y", is_write=True), 5.0, "the new grant")
    store.set_can_manage_users("alice", True)
    wait_until(lambda: authorizer.authenticate(token).can_manage_users, 5.0, "manager rights")
    authorizer.authorize(token, "elsewhere", "", is_write=True)
