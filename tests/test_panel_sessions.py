"""Panel sessions and the signed session cookie, with an injected clock."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from starlette.routing import Route

from fluxon_core.errors import InvalidArgumentError
from fluxon_fs.auth.login_limits import LoginThrottle, TooManyAttemptsError
from fluxon_fs.config import LoginProtectionConfig
from fluxon_fs.fs_master.panel import PanelBackend, create_panel_app
from fluxon_fs.fs_master.panel.login_sessions import CookieSigner, LoginFormTokens, SessionStore
from fluxon_fs.fs_master.panel.settings import PanelSettings
from fluxon_fs.fs_master.panel.web import is_local_path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cookie_signature_rejects_any_change():
    signer = CookieSigner(b"k" * 32)
    value = signer.sign("session-id_1")
    assert signer.unsign(value) == "session-id_1"
    session_id, _, mac = value.rpartition(".")
    assert signer.unsign(f"{session_id}x.{mac}") is None
    assert signer.unsign(f"{session_id}.{mac[:-1]}A") is None
    assert signer.unsign(session_id) is None
    assert signer.unsign("") is None
    assert CookieSigner(b"j" * 32).unsign(value) is None
    with pytest.raises(ValueError, match="at least 32 bytes"):
        CookieSigner(b"short")


def test_sessions_expire_when_idle():
    clock = Clock()
    store = SessionStore(idle_timeout_s=100, clock=clock)
    user = store.open("alice", "token")
    assert user.username == "alice" and user.access_token == "token"
    clock.now += 99
    assert store.get(user.session_id) is user  # restarts its idle timer
    clock.now += 99
    assert store.get(user.session_id) is user
    clock.now += 100
    assert store.get(user.session_id) is None


def test_every_login_gets_a_fresh_session_and_drop_user_keeps_one():
    store = SessionStore(idle_timeout_s=100, clock=Clock())
    first = store.open("bob", "t1")
    second = store.open("bob", "t2")
    assert first.session_id != second.session_id and first.csrf_token != second.csrf_token
    assert store.drop_user("bob", keep=second.session_id) == 1
    assert store.get(first.session_id) is None and store.get(second.session_id) is second


def test_session_count_is_bounded_least_recently_used_first():
    clock = Clock()
    store = SessionStore(idle_timeout_s=100, max_sessions=3, clock=clock)
    sessions = []
    for name in ("a", "b", "c"):
        sessions.append(store.open(name, "t"))
        clock.now += 1
    store.get(sessions[0].session_id)
    store.open("d", "t")
    assert len(store) == 3
    assert store.get(sessions[1].session_id) is None
    assert store.get(sessions[0].session_id) is sessions[0]


def test_one_user_cannot_push_other_users_sessions_out():
    clock = Clock()
    store = SessionStore(idle_timeout_s=100, max_sessions=4, max_sessions_per_user=2, clock=clock)
    admin = store.open("admin", "t")
    for _ in range(10):
        clock.now += 1
        store.open("mallory", "t")
    assert store.get(admin.session_id) is admin
    assert len(store) == 3  # admin and mallory's two most recent


def test_login_form_tokens_are_bound_to_their_nonce_and_expire():
    clock = Clock()
    forms = LoginFormTokens(b"k" * 32, ttl_s=60, clock=clock)
    nonce = forms.new_nonce()
    token = forms.issue(nonce)
    assert forms.valid(nonce, token)
    assert not forms.valid(forms.new_nonce(), token)  # another browser's cookie
    assert not forms.valid(None, token) and not forms.valid(nonce, None) and not forms.valid(nonce, "")
    issued, _, mac = token.partition(".")
    assert not forms.valid(nonce, f"{int(issued) + 1}.{mac}")
    assert not LoginFormTokens(b"j" * 32, ttl_s=60, clock=clock).valid(nonce, token)
    clock.now += 61
    assert not forms.valid(nonce, token)


def test_flashes_are_taken_once():
    session = SessionStore(idle_timeout_s=1).open("alice", "t")
    session.flash("info", "saved")
    assert session.take_flashes() == [("info", "saved")]
    assert session.take_flashes() == []


@pytest.mark.parametrize(
    ("target", "local"),
    [("/ui/", True), ("/ui/x?y=1", True), ("//evil.example", False), ("/\\evil", False), ("https://x", False)],
)
def test_only_local_redirect_targets_are_followed(target, local):
    assert is_local_path(target) is local


def test_settings_check_the_public_url_and_derive_cookie_security():
    assert PanelSettings(public_base_url="https://panel.example/").cookie_secure
    assert PanelSettings(public_base_url="https://panel.example/").absolute("/ui/") == "https://panel.example/ui/"
    assert not PanelSettings(public_base_url="http://127.0.0.1:8080").cookie_secure
    with pytest.raises(InvalidArgumentError, match="public_base_url"):
        PanelSettings(public_base_url="panel.example")


def test_docs_list_every_route():
    docs = (Path(__file__).resolve().parents[1] / "docs" / "panel.md").read_text(encoding="utf-8")
    app = create_panel_app(cast(PanelBackend, None), PanelSettings(public_base_url="http://127.0.0.1:1"))
    undocumented = [
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, Route)
        for method in sorted((route.methods or set()) - {"HEAD"})
        if f"`{method} {route.path}`" not in docs
    ]
    assert not undocumented, f"docs/panel.md does not mention: {undocumented}"


def test_login_throttle_backs_off_exponentially_and_forgets():
    clock = Clock()
    config = LoginProtectionConfig(
        free_failures_per_user=2,
        free_failures_per_address=100,
        backoff_initial_s=1,
        backoff_max_s=4,
        forget_failures_after_s=60,
    )
    throttle = LoginThrottle(config, clock=clock)

    def fail() -> None:
        throttle.begin("bob", "10.0.0.1")  # counted as failed unless settled otherwise

    def wait_s() -> float:
        with pytest.raises(TooManyAttemptsError) as refused:
            throttle.begin("bob", "10.0.0.1")
        return refused.value.retry_after_s

    fail()
    fail()
    fail()  # the first failure beyond the free ones
    assert wait_s() == pytest.approx(1)
    for expected in (2, 4, 4):  # doubling, capped at backoff_max_s
        clock.now += wait_s()
        fail()
        assert wait_s() == pytest.approx(expected)
    throttle.begin("alice", "10.0.0.2").succeeded()  # other users and addresses are not affected
    clock.now += 60 + 4
    throttle.begin("bob", "10.0.0.1").succeeded()  # forgotten after a quiet minute; success resets
    fail()
    fail()
    throttle.begin("bob", "10.0.0.1").not_made()  # a check that never ran does not count
    fail()
    assert wait_s() == pytest.approx(1)
