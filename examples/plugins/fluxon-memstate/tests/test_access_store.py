"""The ``memory`` access store, tested the way a plugin author tests an access backend.

Run with the package installed: ``FLUXON_LOAD_PLUGINS=memstate python -m pytest tests``.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs
import pytest
from fluxon_memstate import access_store as module

from fluxon_core.access.access_keys import sigv4_signing_key
from fluxon_core.access.bootstrap import BootstrapAccessModelConfig
from fluxon_core.access.records import ScopeMode
from fluxon_core.config import BackendConfig, config_field, load_config, load_yaml_text
from fluxon_core.errors import InvalidArgumentError, StoreClosedError
from fluxon_core.plugins import FluxonPluginManager, get_plugin_manager, reset_plugin_manager_for_tests
from fluxon_core.protocols import AccessStore

ADMIN_PW = "Canary-admin-pw-3e1a"
ALICE_PW = "Canary-alice-pw-77d0"
MODEL = {
    "users": [
        {"username": "admin", "password": ADMIN_PW, "can_manage_users": True},
        {"username": "alice", "password": ALICE_PW},
    ],
    "scope_access": [{"export_name": "demo", "prefix": "team_a", "mode": "read_write", "usernames": ["alice"]}],
}


@attrs.frozen
class PanelConfig:
    """A host config with one access-store block, as the fs master's ``master_panel`` declares it."""

    access_store: BackendConfig = config_field(doc="users and grants.", backend="access_store")


@pytest.fixture
def manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[FluxonPluginManager]:
    monkeypatch.setenv("FLUXON_LOAD_PLUGINS", "memstate")
    reset_plugin_manager_for_tests()
    yield get_plugin_manager()
    reset_plugin_manager_for_tests()


@pytest.fixture
def store(manager: FluxonPluginManager) -> Iterator[AccessStore]:
    created = manager.backends().create("access_store", "memory")
    assert created.bootstrap(load_config(BootstrapAccessModelConfig, MODEL, "bootstrap_access_model"))
    yield created
    created.close()


def test_selected_from_yaml_and_implements_the_access_contract(manager: FluxonPluginManager) -> None:
    assert manager.backends().entry("access_store", "memory").plugin == "memstate"
    config = load_yaml_text(PanelConfig, "access_store: {kind: memory, memory: {password_hash: argon2id}}")
    store = config.access_store.create("access_store")
    assert isinstance(store, AccessStore) and isinstance(store, AccessStore)
    assert store.list_users() == [] and store.auth_epoch() == 0


def test_bootstrap_applies_once_and_passwords_verify(store: AccessStore) -> None:
    model = load_config(BootstrapAccessModelConfig, MODEL, "bootstrap_access_model")
    assert store.bootstrap(model) is False, "a store with users is never re-seeded"
    alice = store.verify_credentials("alice", ALICE_PW)
    assert alice is not None and (alice.username, alice.can_manage_users) == ("alice", False)
    assert store.verify_credentials("alice", ADMIN_PW) is None
    assert store.verify_credentials("alice", "") is None
    assert store.verify_password("admin", ADMIN_PW) and not store.verify_password("nobody", ADMIN_PW)


def test_unknown_users_cost_a_verification_like_known_ones(store: AccessStore, monkeypatch: pytest.MonkeyPatch) -> None:
    spent: list[object] = []
    real = module.spend_verify_time
    monkeypatch.setattr(
        module, "spend_verify_time", lambda algorithm, pw: spent.append(algorithm) or real(algorithm, pw)
    )
    assert store.verify_credentials("nobody", "guess") is None
    assert store.verify_credentials(None, None) is None  # type: ignore[arg-type]
    assert store.verify_credentials("alice", "guess") is None  # a known user verifies its own hash
    assert spent == [module.PasswordAlgorithm.ARGON2ID] * 2


def test_only_salted_hashes_are_kept(store: AccessStore) -> None:
    store.set_password("alice", "Canary-alice-new-5b9c")
    hashes = [stored.password_hash for stored in store._users.values()]  # type: ignore[attr-defined]
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert len(set(hashes)) == len(hashes)
    for text in (repr(store._users), *hashes):  # type: ignore[attr-defined]
        assert ADMIN_PW not in text and "Canary-alice-new-5b9c" not in text


def test_every_change_bumps_the_epoch_and_refused_changes_do_not(store: AccessStore) -> None:
    epochs = [store.auth_epoch()]
    first = store.add_user("eve", "eve-pw").credential_version
    for change in (
        lambda: store.grant("demo", "e", ScopeMode.READ_WRITE, ["eve"]),
        lambda: store.set_can_manage_users("eve", True),
        lambda: store.set_password("eve", "eve-pw-2"),
        lambda: store.revoke("demo", "e"),
        lambda: store.remove_user("eve"),
    ):
        epochs.append(store.auth_epoch())
        change()
    epochs.append(store.auth_epoch())
    assert epochs == sorted(set(epochs)), f"epoch must strictly increase: {epochs}"
    assert store.add_user("eve", "eve-pw").credential_version > first
    before = store.auth_epoch()
    for refused in (
        lambda: store.add_user("eve", "x"),
        lambda: store.remove_user("admin"),
        lambda: store.grant("demo", "../up", "read_only", ["eve"]),
        lambda: store.grant("demo", "x", "read_only", ["ghost"]),
    ):
        with pytest.raises(InvalidArgumentError):
            refused()
    store.set_can_manage_users("eve", False)  # already so: no change
    assert store.revoke("demo", "nothing-here") == 0
    assert store.auth_epoch() == before


def test_user_access_is_one_snapshot_of_grants(store: AccessStore) -> None:
    store.grant("demo", "/shared/", "read_only", ["alice"])
    store.grant("other", "", ScopeMode.READ_ONLY, ["alice"])
    access = store.user_access("alice")
    assert access is not None and not access.can_manage_users
    assert [(g.export_name, g.prefix, g.mode.value) for g in access.grants] == [
        ("demo", "shared", "read_only"),
        ("demo", "team_a", "read_write"),
        ("other", "", "read_only"),
    ]
    assert store.user_access("nobody") is None
    store.remove_user("alice")
    assert store.list_scopes() == [], "removing a user drops its memberships and the emptied scopes"


def test_token_secret_is_random_per_store(manager: FluxonPluginManager) -> None:
    first = manager.backends().create("access_store", "memory")
    second = manager.backends().create("access_store", "memory")
    assert len(first.token_secret()) >= 32 and first.token_secret() == first.token_secret()
    assert first.token_secret() != second.token_secret()


def test_a_closed_store_refuses_calls(store: AccessStore) -> None:
    store.close()
    store.close()
    for call in (store.list_users, store.auth_epoch, lambda: store.verify_credentials("alice", ALICE_PW)):
        with pytest.raises(StoreClosedError):
            call()


def test_access_keys_are_shown_once_derive_signing_keys_and_go_with_their_user(store: AccessStore) -> None:
    epoch = store.auth_epoch()
    created = store.create_access_key("alice")
    assert store.auth_epoch() > epoch
    assert created.secret_access_key not in repr(created) and created.secret_access_key not in repr(store._keys)  # type: ignore[attr-defined]
    assert store.list_access_keys() == [created.record] and store.list_access_keys("admin") == []
    grant = store.access_key_signing_key(created.record.access_key_id, "20260105", "us-east-1", "s3")
    assert grant is not None and grant.username == "alice"
    assert grant.signing_key == sigv4_signing_key(created.secret_access_key, "20260105", "us-east-1", "s3")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        store.create_access_key("nobody")
    store.revoke_access_key(created.record.access_key_id)
    assert store.access_key_signing_key(created.record.access_key_id, "20260105", "us-east-1", "s3") is None
    kept = store.create_access_key("alice")
    store.remove_user("alice")
    assert store.list_access_keys() == []
    assert store.access_key_signing_key(kept.record.access_key_id, "20260105", "us-east-1", "s3") is None
