"""The fs master panel over real HTTP: a uvicorn server on a loopback port, driven with httpx.

Covers login and sessions, CSRF, every page and the JSON API, admin-only routes, scope-limited
browsing and downloads, user and scope administration, password changes that survive a restart,
transfers (direct and pre-scan import) that copy trees byte for byte, and /metrics.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from fluxon_core.config import load_config
from fluxon_fs.config import MasterPanelConfig
from fluxon_fs.fs_master.panel import PanelServer, PanelSettings, create_panel_app, start_panel
from fluxon_fs.fs_master.panel.server import bind_listen_socket
from fluxon_fs.fs_master.panel.web import COOKIE_NAME
from fluxon_fs.transfer.prescan import transfer_check_local_blocking
from tests.support.panel_harness import (
    ADMIN,
    ALICE,
    ALICE_PREFIX,
    BOOTSTRAP,
    PUBLIC_BASE_URL,
    PanelClient,
    PanelWorld,
    csrf_from_html,
)
from tests.support.poll import wait_until
from tests.support.trees import assert_same_tree, make_tree

BIG_FILE_BYTES = 2 * 1024 * 1024 + 12345  # more than two download chunks


@pytest.fixture
def world(tmp_path: Path):
    panel_world = PanelWorld(tmp_path / "world")
    src = panel_world.export_roots["src"]
    make_tree(src / ALICE_PREFIX, files=25, seed=3)
    make_tree(src / "data" / "other", files=5, seed=4)
    (src / ALICE_PREFIX / "big.bin").write_bytes(os.urandom(BIG_FILE_BYTES))
    (src / "data" / "other" / "secret.txt").write_text("not for alice")
    yield panel_world
    panel_world.close()


@pytest.fixture
def clients(world: PanelWorld):
    made: list[PanelClient] = []

    def new_client() -> PanelClient:
        client = PanelClient(world.base_url)
        made.append(client)
        return client

    yield new_client
    for client in made:
        client.close()


@pytest.fixture
def admin(clients) -> PanelClient:
    client = clients()
    assert client.login(*ADMIN).status_code == 303
    return client


@pytest.fixture
def alice(clients) -> PanelClient:
    client = clients()
    assert client.login(*ALICE).status_code == 303
    return client


def wait_for_job(client: PanelClient, job_id: str, state: str = "succeeded", timeout_s: float = 30.0) -> dict:
    def reached():
        job = client.get_json(f"/api/transfers/jobs/{job_id}")["job"]
        assert job["state"] not in {"failed", "cancelled"} - {state}, job
        return job if job["state"] == state else None

    return wait_until(reached, timeout_s, f"job {job_id} to reach {state}")


# ----- login, sessions, CSRF ---------------------------------------------------------------------


def test_pages_and_api_require_login(clients):
    client = clients()
    for page in ("/ui/", "/ui/transfers/", "/ui/exports/src/?path=data", "/ui/users/"):
        response = client.http.get(page)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login?next=")
    assert client.http.get("/ui/transfers/").headers["location"] == "/login?next=/ui/transfers/"
    for path in ("/api/overview", "/api/users", "/api/exports/src/download?path=data/team-a/big.bin"):
        response = client.http.get(path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "permission_denied"
    assert client.api("/api/users", {"username": "x", "password": "y"}, csrf=False).status_code == 401
    assert client.http.get("/").headers["location"] == "/ui/"


def test_wrong_password_and_unknown_user_get_the_same_answer(clients):
    client = clients()
    wrong_password = client.login(ADMIN[0], "not-the-password")
    unknown_user = client.login("nobody", "whatever")
    for response in (wrong_password, unknown_user):
        assert response.status_code == 401
        assert re.search(r'id="login-error">Wrong username or password\.<', response.text)
        assert "nobody" not in response.text and "not-the-password" not in response.text
    assert client.http.get("/ui/").status_code == 303  # still logged out


def test_login_needs_its_csrf_token_and_refuses_foreign_redirects(clients):
    client = clients()
    client.http.get("/login")
    refused = client.http.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert refused.status_code == 403
    assert client.http.get("/ui/").status_code == 303
    page = client.http.get("/login?next=//evil.example/x")
    response = client.http.post(
        "/login",
        data={
            "username": ADMIN[0],
            "password": ADMIN[1],
            "csrf_token": csrf_from_html(page.text),
            "next": "//evil.example/x",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"


def test_login_opens_a_fresh_session_and_logout_ends_it(clients):
    client = clients()
    client.http.get("/login")
    assert COOKIE_NAME not in client.http.cookies  # the login page opens no session
    planted = "planted-session-id.forged-mac"
    client.http.cookies.set(COOKIE_NAME, planted, domain="127.0.0.1", path="/")
    assert client.login(*ADMIN).status_code == 303
    session_cookie = client.http.cookies[COOKIE_NAME]
    assert session_cookie != planted
    assert client.form("/logout", csrf="wrong").status_code == 403
    assert client.http.get("/ui/").status_code == 200
    response = client.form("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    replay = httpx.Client(base_url=client.http.base_url, cookies={COOKIE_NAME: session_cookie})
    assert replay.get("/ui/").status_code == 303
    replay.close()


def test_session_cookie_flags_and_tampering(world, clients):
    response = clients().http.get("/login")
    form_cookie = response.headers["set-cookie"]
    assert "HttpOnly" in form_cookie and "SameSite=lax" in form_cookie and "Path=/login" in form_cookie
    for header in ("content-security-policy", "x-frame-options", "x-content-type-options"):
        assert header in response.headers

    client = clients()
    logged_in = client.login(*ADMIN)
    cookie = next(c for c in logged_in.headers.get_list("set-cookie") if c.startswith(COOKIE_NAME))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # public_base_url is http
    session_id, _, mac = client.http.cookies[COOKIE_NAME].rpartition(".")
    forged = httpx.Client(base_url=world.base_url, cookies={COOKIE_NAME: f"{session_id}.{mac[::-1]}"})
    assert forged.get("/ui/").status_code == 303
    forged.close()

    secure_settings = PanelSettings(public_base_url="https://panel.example.test")
    server = PanelServer(create_panel_app(world.backend, secure_settings), bind_listen_socket("127.0.0.1:0")).start()
    try:
        secure_cookie = httpx.get(server.url + "/login").headers["set-cookie"]
        assert "Secure" in secure_cookie and "HttpOnly" in secure_cookie
    finally:
        server.stop()


def test_state_changing_posts_need_the_session_csrf_token(world, admin):
    assert admin.form("/ui/users/create", {"username": "mallory", "password": "pw"}, csrf="").status_code == 403
    assert admin.form("/ui/users/create", {"username": "mallory", "password": "pw"}, csrf="forged").status_code == 403
    assert admin.api("/api/users", {"username": "mallory", "password": "pw"}, csrf=False).status_code == 403
    in_body_only = admin.http.post(
        "/api/users", json={"username": "mallory", "password": "pw", "csrf_token": admin.csrf}
    )
    assert in_body_only.status_code == 403  # the API wants the header
    assert world.access_store.get_user("mallory") is None

    created = admin.api("/api/users", {"username": "mallory", "password": "pw"})
    assert created.status_code == 200, created.text
    assert created.json()["user"]["username"] == "mallory"
    response = admin.form("/ui/users/create", {"username": "trent", "password": "pw", "can_manage_users": "1"})
    assert response.status_code == 303
    assert world.access_store.get_user("trent").can_manage_users


# ----- pages and JSON API ------------------------------------------------------------------------


def test_every_page_renders_for_the_admin(admin):
    pages = {
        "/ui/": ["Cluster members", "owner-a", "75.0%", "agent-a", "/mnt/fluxon/src"],
        "/ui/exports/": ["export-list", "src", "dst"],
        "/ui/exports/src/?path=data": ["team-a/", "other/"],
        "/ui/users/": ["create-user", "alice"],
        "/ui/scopes/": ["grant-scope", ALICE_PREFIX],
        "/ui/account/": ["change-password"],
        "/ui/keys/": ["create-key", "key-username"],
        "/ui/transfers/": ["Pre-Scans", "FluxonFS Transfer Jobs", "submit-dialog", "desired_worker_count"],
    }
    for path, expected in pages.items():
        response = admin.http.get(path)
        assert response.status_code == 200, (path, response.text)
        for text in expected:
            assert text in response.text, (path, text)


def test_json_api_mirrors_the_pages(admin):
    overview = admin.get_json("/api/overview")
    assert [m["instance_key"] for m in overview["cluster_members"]] == ["kv-master-1", "owner-a"]
    assert overview["cache_hit_rate"] == pytest.approx(0.75)
    assert [e["name"] for e in overview["exports"]] == ["dst", "src"]
    assert overview["agents"][0]["instance_key"] == "agent-a"
    assert {m["username"] for m in overview["mounts"]} == {"admin", "alice"}
    assert overview["links"]["api"] == PUBLIC_BASE_URL + "/api/overview"

    assert [e["name"] for e in admin.get_json("/api/exports")["exports"]] == ["dst", "src"]
    listing = admin.get_json("/api/exports/src/list?path=/data/")
    assert listing["path"] == "data" and listing["parent"] == ""
    assert [(e["name"], e["kind"]) for e in listing["entries"]] == [("other", "dir"), ("team-a", "dir")]
    assert {u["username"] for u in admin.get_json("/api/users")["users"]} == {"admin", "alice"}
    scopes = admin.get_json("/api/scopes")["scopes"]
    assert scopes == [
        {**scopes[0], "export_name": "src", "prefix": ALICE_PREFIX, "mode": "read_only", "usernames": ["alice"]}
    ]
    assert admin.get_json("/api/account")["can_manage_users"] is True
    assert admin.get_json("/api/transfers/jobs") == {"jobs": [], "quarantined": [], "quarantined_count": 0}
    assert admin.get_json("/api/transfers/prescans") == {"prescans": []}
    assert set(admin.get_json("/api/transfers")) >= {"jobs", "prescans", "export_names"}
    missing = admin.http.get("/api/transfers/jobs/no-such-job")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"
    assert admin.http.get("/api/exports/nope/list").status_code == 404


def test_public_base_url_is_used_for_links_not_for_binding(world, admin):
    assert not world.base_url.startswith(PUBLIC_BASE_URL)
    overview = admin.http.get("/ui/").text
    assert f'href="{PUBLIC_BASE_URL}/metrics"' in overview
    assert admin.get_json("/api/exports/src/list?path=data")["link"] == f"{PUBLIC_BASE_URL}/ui/exports/src/?path=data"


def test_metrics_is_public_by_default(clients):
    response = clients().http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "fluxon_panel_test_metric 1" in response.text


def test_metrics_can_require_login(tmp_path):
    world = PanelWorld(tmp_path / "w", metrics_requires_login=True)
    try:
        assert httpx.get(world.base_url + "/metrics").status_code == 401
        token = httpx.post(world.base_url + "/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        headers = {"Authorization": f"Bearer {token.json()['token']}"}
        assert httpx.get(world.base_url + "/metrics", headers=headers).status_code == 200
    finally:
        world.close()


def test_bearer_tokens_use_the_api_without_cookies_or_csrf(world):
    base = world.base_url
    assert httpx.post(base + "/api/login", json={"username": ADMIN[0], "password": "bad"}).status_code == 401
    login = httpx.post(base + "/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert login.status_code == 200 and login.json()["can_manage_users"] is True
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    assert httpx.get(base + "/api/overview", headers=headers).status_code == 200
    created = httpx.post(base + "/api/users", json={"username": "carol", "password": "pw"}, headers=headers)
    assert created.status_code == 200, created.text
    forged = httpx.get(base + "/api/overview", headers={"Authorization": "Bearer fx1.forged.token"})
    assert forged.status_code == 401


# ----- admin-only routes, scopes, browsing ---------------------------------------------------------


def test_admin_only_routes_refuse_normal_users(world, alice):
    for path in ("/ui/users/", "/ui/scopes/", "/api/users", "/api/scopes"):
        assert alice.http.get(path).status_code == 403, path
    assert alice.form("/ui/users/create", {"username": "eve", "password": "pw"}).status_code == 403
    assert alice.api("/api/users", {"username": "eve", "password": "pw"}).status_code == 403
    grant = {"export_name": "dst", "mode": "read_write", "usernames": "alice"}
    assert alice.api("/api/scopes/grant", grant).status_code == 403
    assert alice.form(f"/ui/users/{ADMIN[0]}/password", {"password": "owned"}).status_code == 403
    assert world.access_store.get_user("eve") is None
    assert world.access_store.verify_credentials(*ADMIN) is not None
    assert 'href="/ui/users/"' not in alice.http.get("/ui/").text


def test_prefix_scoped_user_sees_only_its_scope(world, alice):
    assert [e["name"] for e in alice.get_json("/api/exports")["exports"]] == ["src"]
    assert [e["name"] for e in alice.get_json("/api/exports/src/list?path=")["entries"]] == ["data"]
    assert [e["name"] for e in alice.get_json("/api/exports/src/list?path=data")["entries"]] == ["team-a"]
    inside = alice.get_json(f"/api/exports/src/list?path={ALICE_PREFIX}")["entries"]
    assert "big.bin" in {e["name"] for e in inside}
    for path in (
        "/api/exports/src/list?path=data/other",
        "/api/exports/dst/list?path=",
        f"/api/exports/src/list?path={ALICE_PREFIX}/../../data/other",
    ):
        assert alice.http.get(path).status_code == 403, path
    assert alice.http.get("/api/exports/src/download?path=data/other/secret.txt").status_code == 403
    page = alice.http.get("/ui/exports/src/?path=data").text
    assert "team-a/" in page and "other/" not in page
    overview = alice.get_json("/api/overview")
    assert [e["name"] for e in overview["exports"]] == ["src"]
    assert [m["username"] for m in overview["mounts"]] == ["alice"]

    download = alice.http.get(f"/ui/exports/src/download?path={ALICE_PREFIX}/big.bin")
    assert download.status_code == 200
    assert download.content == (world.export_roots["src"] / ALICE_PREFIX / "big.bin").read_bytes()


def test_download_streams_whole_files_and_reports_bad_paths(world, admin):
    expected = (world.export_roots["src"] / ALICE_PREFIX / "big.bin").read_bytes()
    with admin.http.stream("GET", f"/api/exports/src/download?path={ALICE_PREFIX}/big.bin") as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(BIG_FILE_BYTES)
        assert response.headers["content-disposition"].startswith('attachment; filename="big.bin"')
        chunks = list(response.iter_bytes())
    assert b"".join(chunks) == expected
    assert admin.http.get(f"/api/exports/src/download?path={ALICE_PREFIX}").status_code == 400
    assert admin.http.get("/api/exports/src/download?path=data/missing.bin").status_code == 404


# ----- users and scopes ---------------------------------------------------------------------------


def test_user_lifecycle_through_the_ui(world, admin, clients):
    assert admin.form("/ui/users/create", {"username": "bob", "password": "bob-pw-1"}).status_code == 303
    assert "user &#39;bob&#39; created" in admin.flashes("/ui/users/")
    bob = clients()
    assert bob.login("bob", "bob-pw-1").status_code == 303

    assert admin.form("/ui/users/bob/password", {"password": "bob-pw-2"}).status_code == 303
    assert bob.http.get("/ui/").status_code == 303  # his session ended with the reset
    assert bob.login("bob", "bob-pw-1").status_code == 401
    assert bob.login("bob", "bob-pw-2").status_code == 303

    assert admin.form("/ui/users/bob/manage", {"can_manage_users": "1"}).status_code == 303
    assert world.access_store.get_user("bob").can_manage_users
    assert admin.form("/ui/users/bob/manage", {}).status_code == 303
    assert not world.access_store.get_user("bob").can_manage_users

    assert admin.form("/ui/users/bob/delete").status_code == 303
    assert world.access_store.get_user("bob") is None
    assert bob.http.get("/ui/").status_code == 303
    assert bob.login("bob", "bob-pw-2").status_code == 401

    # Refusals from the store come back as a flash message on the page the form was on.
    response = admin.form("/ui/users/create", {"username": "alice", "password": "x", "next": "/ui/users/"})
    assert response.status_code == 303 and response.headers["location"] == "/ui/users/"
    assert "flash error" in admin.flashes("/ui/users/")


def test_scope_editor_grants_and_revokes(world, admin, clients):
    (world.export_roots["dst"] / "incoming").mkdir()
    (world.export_roots["dst"] / "private").mkdir()
    admin.api("/api/users", {"username": "dave", "password": "dave-pw"})
    grant = {"export_name": "dst", "prefix": "/incoming/", "mode": "read_write", "usernames": "dave"}
    assert admin.form("/ui/scopes/grant", grant).status_code == 303
    scope = [s for s in admin.get_json("/api/scopes")["scopes"] if s["export_name"] == "dst"]
    assert scope[0]["prefix"] == "incoming" and scope[0]["usernames"] == ["dave"]
    dave = clients()
    dave.login("dave", "dave-pw")
    assert [e["name"] for e in dave.get_json("/api/exports/dst/list?path=")["entries"]] == ["incoming"]

    revoke = {"export_name": "dst", "prefix": "incoming", "usernames": "dave"}
    assert admin.api("/api/scopes/revoke", revoke).json()["removed"] == 1
    wait_until(
        lambda: dave.http.get("/api/exports/dst/list?path=").status_code == 403, 5, "revocation to reach dave's session"
    )


def test_admin_password_change_in_the_ui_retires_the_bootstrap_password(world, admin, clients):
    wrong = admin.form(
        "/ui/account/password",
        {"current_password": "nope", "new_password": "n3w", "confirm_new_password": "n3w", "next": "/ui/account/"},
    )
    assert wrong.status_code == 303
    assert "the current password is wrong" in admin.flashes("/ui/account/")
    changed = admin.form(
        "/ui/account/password",
        {"current_password": ADMIN[1], "new_password": "n3w-admin", "confirm_new_password": "n3w-admin"},
    )
    assert changed.status_code == 303
    assert admin.http.get("/ui/").status_code == 200  # this session goes on with the new credentials
    assert clients().login(*ADMIN).status_code == 401
    assert clients().login(ADMIN[0], "n3w-admin").status_code == 303

    world.restart_panel()  # the access db is reopened and the bootstrap model offered again
    assert clients().login(*ADMIN).status_code == 401
    assert clients().login(ADMIN[0], "n3w-admin").status_code == 303


# ----- transfers ----------------------------------------------------------------------------------


def test_transfer_job_from_the_api_copies_the_tree(world, admin):
    response = admin.api(
        "/api/transfers/jobs",
        {
            "source_export": "src",
            "source_dir": ALICE_PREFIX,
            "target_export": "dst",
            "target_prefix": "incoming",
            "desired_worker_count": 2,
            "batch_ready_bytes": "64KiB",
        },
    )
    assert response.status_code == 200, response.text
    job_id = response.json()["job"]["job_id"]
    job = wait_for_job(admin, job_id)
    assert job["counters"]["files_copied"] == job["counters"]["files_total"] == 26
    assert job["bytes_fraction"] == 1.0
    assert_same_tree(world.export_roots["src"] / ALICE_PREFIX, world.export_roots["dst"] / "incoming" / "team-a")
    detail = admin.get_json(f"/api/transfers/jobs/{job_id}")
    assert detail["batch_count"] > 1 and {b["state"] for b in detail["batches"]} == {"done"}
    assert detail["link"] == f"{PUBLIC_BASE_URL}/ui/transfers/jobs/{job_id}"
    page = admin.http.get(f"/ui/transfers/jobs/{job_id}").text
    assert 'data-state="succeeded"' in page
    assert job_id in admin.http.get("/ui/transfers/").text


def test_transfer_needs_read_on_source_and_write_on_target(world, admin, alice):
    spec = {"source_export": "src", "source_dir": ALICE_PREFIX, "target_export": "dst", "target_prefix": "alice-in"}
    refused = alice.api("/api/transfers/jobs", spec)
    assert refused.status_code == 403 and "may not write" in refused.json()["error"]["message"]
    admin.api(
        "/api/scopes/grant", {"export_name": "dst", "prefix": "alice-in", "mode": "read_write", "usernames": ["alice"]}
    )
    outside = alice.api("/api/transfers/jobs", {**spec, "source_dir": "data/other"})
    assert outside.status_code == 403
    accepted = wait_until(lambda: (r := alice.api("/api/transfers/jobs", spec)).status_code == 200 and r, 5, "grant")
    alice_job = accepted.json()["job"]["job_id"]
    admin_job = admin.api("/api/transfers/jobs", {**spec, "source_dir": "data/other", "target_prefix": "x"}).json()
    admin_job_id = admin_job["job"]["job_id"]
    wait_for_job(admin, alice_job)
    wait_for_job(admin, admin_job_id)
    assert [j["job_id"] for j in alice.get_json("/api/transfers/jobs")["jobs"]] == [alice_job]
    assert alice.http.get(f"/api/transfers/jobs/{admin_job_id}").status_code == 403
    assert alice.api(f"/api/transfers/jobs/{admin_job_id}/retry").status_code == 403
    assert_same_tree(world.export_roots["src"] / ALICE_PREFIX, world.export_roots["dst"] / "alice-in" / "team-a")


def test_job_actions_pause_resume_cancel(world, admin):
    from fluxon_fs.transfer.jobs import JobSpec

    # A job nobody scans stays put, so each action's effect is observable.
    job = world.coordinator.create_job(JobSpec("src", "data", "dst", "held"))
    assert admin.api(f"/api/transfers/jobs/{job.job_id}/pause").json()["job"]["state"] == "paused"
    assert world.coordinator.job(job.job_id).state == "paused"
    assert admin.form(f"/ui/transfers/jobs/{job.job_id}/resume").status_code == 303
    assert "resume done, now scanning" in admin.flashes()  # paused before its scan ended: scans again
    assert world.coordinator.job(job.job_id).state == "scanning"
    assert admin.api(f"/api/transfers/jobs/{job.job_id}/cancel").json()["job"]["state"] == "cancelled"
    refused = admin.api(f"/api/transfers/jobs/{job.job_id}/pause")
    assert refused.status_code == 400 and "cannot change it to paused" in refused.json()["error"]["message"]
    assert admin.api(f"/api/transfers/jobs/{job.job_id}/explode").status_code == 400


def test_prescan_import_from_the_api(world, admin):
    summary = transfer_check_local_blocking(
        src_root_dir=str(world.export_roots["src"] / ALICE_PREFIX),
        transfer_state_store=world.state_store_config,
        batch_ready_bytes=64 * 1024,
    )
    prescans = admin.get_json("/api/transfers/prescans")["prescans"]
    assert [(p["job_id"], p["batch_count"]) for p in prescans] == [(summary.job_id, summary.batch_count)]
    assert prescans[0]["sources"] == [{"export_name": "src", "source_dir": ALICE_PREFIX}]
    form = admin.http.get(prescans[0]["import_url"])
    assert form.status_code == 200 and "import-form" in form.text

    wrong_export = admin.api(
        f"/api/transfers/prescans/{summary.job_id}/import", {"source_export": "dst", "target_export": "dst"}
    )
    assert wrong_export.status_code == 400
    response = admin.api(
        f"/api/transfers/prescans/{summary.job_id}/import",
        {"source_export": "src", "target_export": "dst", "target_prefix": "imported", "desired_worker_count": 2},
    )
    assert response.status_code == 200, response.text
    job = wait_for_job(admin, response.json()["job"]["job_id"])
    assert job["spec"]["prescan_job_id"] == summary.job_id
    assert_same_tree(world.export_roots["src"] / ALICE_PREFIX, world.export_roots["dst"] / "imported" / "team-a")


# ----- serving --------------------------------------------------------------------------------------


def test_start_panel_from_the_master_panel_config_and_stop(world):
    config = load_config(
        MasterPanelConfig,
        {
            "listen_addr": "127.0.0.1:0",
            "access_db_path": str(world.access_db_path),
            "bootstrap_access_model": BOOTSTRAP,
            "auto_refresh_interval_secs": 7,
        },
    )
    server = start_panel(world.backend, config)
    try:
        page = httpx.get(server.url + "/login")
        assert page.status_code == 200 and 'data-refresh-secs="7"' in page.text
    finally:
        server.stop()
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/login")


def test_access_keys_page_creates_shows_the_secret_once_and_revokes(world, admin, alice, clients):
    assert "create-key" in alice.http.get("/ui/keys/").text
    created = alice.form("/ui/keys/create", {})
    assert created.status_code == 303 and created.headers["location"] == "/ui/keys/"
    [key] = world.access_store.list_access_keys("alice")
    page = alice.http.get("/ui/keys/").text
    secret = re.search(r"shown only now: ([A-Za-z0-9_\-]{40})", page)
    assert secret is not None and key.access_key_id in page
    assert secret.group(1) not in alice.http.get("/ui/keys/").text, "the secret is shown once"
    grant = world.access_store.access_key_signing_key(key.access_key_id, "20260105", "us-east-1", "s3")
    from fluxon_core.access.access_keys import sigv4_signing_key

    assert grant.signing_key == sigv4_signing_key(secret.group(1), "20260105", "us-east-1", "s3")
    assert secret.group(1) not in str(alice.get_json("/api/keys"))

    # Through the API the secret is in the answer; the CSRF header is required like on every POST.
    assert alice.api("/api/keys", {}, csrf=False).status_code == 403
    answer = alice.api("/api/keys", {})
    assert answer.status_code == 200 and len(answer.json()["secret_access_key"]) == 40
    second = answer.json()["key"]["access_key_id"]
    # alice cannot make keys for others, nor see or revoke them; the admin can do both.
    assert alice.api("/api/keys", {"username": "admin"}).status_code == 403
    admins = admin.api("/api/keys", {"username": "admin"}).json()["key"]["access_key_id"]
    assert admins not in str(alice.get_json("/api/keys"))
    assert alice.api(f"/api/keys/{admins}/revoke", {}).status_code == 403
    assert {k["access_key_id"] for k in admin.get_json("/api/keys")["keys"]} == {key.access_key_id, second, admins}
    assert alice.form(f"/ui/keys/{key.access_key_id}/revoke", {}, csrf="forged").status_code == 403
    assert alice.form(f"/ui/keys/{key.access_key_id}/revoke", {}).status_code == 303
    assert admin.api(f"/api/keys/{second}/revoke", {}).status_code == 200
    assert [k.access_key_id for k in world.access_store.list_access_keys()] == [admins]
    logged_out = clients()
    assert logged_out.http.get("/api/keys").status_code == 401
