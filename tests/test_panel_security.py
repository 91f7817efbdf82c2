"""Attacks on the panel over real HTTP (uvicorn on a loopback port, driven with httpx).

Each test performs the attack the way it was first found, shows that it fails now, and shows the
legitimate use next to it still working.
"""

from __future__ import annotations

import concurrent.futures
import math
import statistics
import time
from pathlib import Path

import httpx
import pytest

from fluxon_fs.config import LoginProtectionConfig
from tests.support.fs_cluster import ADMIN as MASTER_ADMIN
from tests.support.fs_cluster import fs_cluster
from tests.support.panel_harness import ADMIN, ALICE, ALICE_PREFIX, PanelClient, PanelWorld, csrf_from_html
from tests.support.trees import make_tree

NUL_MESSAGE = "must not contain a NUL character"


@pytest.fixture
def world(tmp_path: Path):
    panel_world = PanelWorld(tmp_path / "world")
    make_tree(panel_world.export_roots["src"] / ALICE_PREFIX, files=3, seed=5)
    (panel_world.export_roots["src"] / "data" / "note.txt").write_text("note")
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


# ----- a NUL in a path parameter -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "good_path"),
    [
        ("/api/exports/src/list", "data"),
        ("/ui/exports/src/", "data"),
        ("/api/exports/src/download", "data/note.txt"),
        ("/ui/exports/src/download", "data/note.txt"),
    ],
)
def test_a_nul_in_the_path_of_a_listing_or_download_is_a_400(admin, route, good_path):
    refused = admin.http.get(route, params={"path": good_path + "\x00.txt"})
    assert refused.status_code == 400, refused.text
    assert f"field &#39;path&#39; {NUL_MESSAGE}" in refused.text or f"field 'path' {NUL_MESSAGE}" in refused.text
    assert admin.http.get(route, params={"path": good_path}).status_code == 200


@pytest.mark.parametrize("field", ["source_dir", "target_prefix"])
def test_a_nul_in_a_transfer_folder_is_a_400_naming_the_field(world, admin, field):
    spec = {"source_export": "src", "source_dir": ALICE_PREFIX, "target_export": "dst", "target_prefix": "copy"}
    refused = admin.api("/api/transfers/jobs", {**spec, field: spec[field] + "\x00x"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == {"code": "invalid_argument", "message": f"field {field!r} {NUL_MESSAGE} (\\x00)"}
    form = admin.form("/ui/transfers/jobs", {**spec, field: spec[field] + "\x00x"})
    assert form.status_code == 303  # a page's form comes back with the error as a flash message
    assert f"field &#39;{field}&#39; {NUL_MESSAGE}" in admin.flashes("/ui/transfers/")
    assert world.coordinator.jobs() == []
    created = admin.api("/api/transfers/jobs", spec)
    assert created.status_code == 200, created.text


@pytest.mark.parametrize("route", ["/api/scopes/grant", "/api/scopes/revoke"])
def test_a_nul_in_a_scope_prefix_is_a_400(admin, route):
    grant = {"export_name": "src", "prefix": "data/x", "mode": "read_only", "usernames": ["alice"]}
    refused = admin.api(route, {**grant, "prefix": "data\x00x"})
    assert refused.status_code == 400, refused.text
    assert "prefix" in refused.json()["error"]["message"]
    assert admin.api(route, grant).status_code == 200


# ----- anonymous requests and the session budget -------------------------------------------------


def test_anonymous_requests_cannot_log_anyone_out(tmp_path):
    # The attack: with max_sessions=50, 50 anonymous GET /login each opened a session, and the
    # least-recently-used eviction dropped the admin's.
    world = PanelWorld(tmp_path / "world", max_sessions=50, max_sessions_per_user=10)
    try:
        admin = PanelClient(world.base_url)
        assert admin.login(*ADMIN).status_code == 303
        with httpx.Client(base_url=world.base_url) as anonymous:
            for _ in range(200):
                anonymous.cookies.clear()
                assert anonymous.get("/login").status_code == 200
                anonymous.post("/login", data={"username": "x", "password": "y", "csrf_token": "z"})
                anonymous.get("/ui/")
        assert admin.http.get("/ui/").status_code == 200, "the admin was logged out"

        # One user logging in over and over only replaces their own oldest sessions.
        alice_sessions = [PanelClient(world.base_url) for _ in range(15)]
        for client in alice_sessions:
            assert client.login(*ALICE).status_code == 303
        assert admin.http.get("/ui/").status_code == 200, "the admin was logged out"
        assert alice_sessions[-1].http.get("/ui/").status_code == 200
        assert alice_sessions[0].http.get("/ui/").status_code == 303  # alice's oldest made room

        # A visitor still logs in from the login page after the flood.
        visitor = PanelClient(world.base_url)
        assert visitor.login(*ALICE).status_code == 303
        for client in [admin, visitor, *alice_sessions]:
            client.close()
    finally:
        world.close()


def test_the_login_form_still_refuses_a_forged_or_foreign_token(world, clients):
    victim, attacker = clients(), clients()
    attacker_token = csrf_from_html(attacker.http.get("/login").text)
    victim.http.get("/login")
    forged = victim.http.post("/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": attacker_token})
    assert forged.status_code == 403  # a token issued for another browser's cookie
    no_cookie = httpx.post(
        world.base_url + "/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": attacker_token}
    )
    assert no_cookie.status_code == 403  # a cross-site form: the browser's cookie is not the attacker's
    assert victim.login(*ADMIN).status_code == 303


# ----- login throttling --------------------------------------------------------------------------


def form_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """One login through the form, as a browser does it (page, then post with its token)."""
    token = csrf_from_html(client.get("/login").text)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


def test_password_guessing_is_throttled_per_username_with_backoff(world):
    # The attack: about 25 guesses per second against one user, for as long as the attacker liked.
    with httpx.Client(base_url=world.base_url) as attacker:
        answers = []
        started = time.monotonic()
        while len(answers) < 10 or time.monotonic() - started < 3.0:
            answers.append(form_login(attacker, ADMIN[0], f"guess-{len(answers)}"))
        elapsed = time.monotonic() - started
        statuses = [r.status_code for r in answers]
        assert set(statuses) == {401, 429}
        assert statuses[:7] == [401] * 6 + [429], statuses  # 5 free failures, then a 1 s backoff
        refused = [r for r in answers if r.status_code == 429]
        assert all(int(r.headers["retry-after"]) >= 1 for r in refused)
        assert "Too many failed logins" in refused[0].text
        # Afterwards one guess per backoff (1 s, 2 s, 4 s, ...): about 7 checks in 3 s, not 75.
        assert statuses.count(401) <= 6 + math.log2(elapsed + 1), (elapsed, statuses)

        # While the backoff runs even the right password is refused: it is not even checked.
        during = form_login(attacker, *ADMIN)
        assert during.status_code == 429
        time.sleep(int(during.headers["retry-after"]))
        assert form_login(attacker, *ADMIN).status_code == 303  # after the backoff it works


def test_the_json_login_is_throttled_too(world):
    with httpx.Client(base_url=world.base_url) as attacker:
        statuses = [
            attacker.post("/api/login", json={"username": ALICE[0], "password": f"guess-{n}"}).status_code
            for n in range(8)
        ]
        assert statuses[:6] == [401] * 6 and statuses[6:] == [429, 429], statuses
        refused = attacker.post("/api/login", json={"username": ALICE[0], "password": ALICE[1]})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_attempts"
        time.sleep(int(refused.headers["retry-after"]))
        assert attacker.post("/api/login", json={"username": ALICE[0], "password": ALICE[1]}).status_code == 200


def test_guessing_many_usernames_from_one_address_is_throttled_per_address(world):
    # 127.0.0.2 is another loopback address: the attacker's; the users log in from 127.0.0.1.
    attacker_transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=world.base_url, transport=attacker_transport) as attacker:
        statuses = [form_login(attacker, f"user{n}", "password").status_code for n in range(25)]
        assert statuses[:21] == [401] * 21 and set(statuses[21:]) == {429}, statuses
        assert form_login(attacker, *ADMIN).status_code == 429  # the address waits, whoever it claims to be
    with httpx.Client(base_url=world.base_url) as user:
        assert form_login(user, *ADMIN).status_code == 303  # other addresses are not affected


def test_the_current_password_check_of_a_password_change_is_throttled(world, clients):
    alice = clients()
    assert alice.login(*ALICE).status_code == 303
    change = {"current_password": "guess", "new_password": "new-pw"}
    statuses = [alice.api("/api/account/password", change).status_code for _ in range(7)]
    assert statuses[:6] == [400] * 6 and statuses[6] == 429, statuses
    assert world.access_store.verify_credentials(*ALICE) is not None


# ----- timing tells nothing about which usernames exist -------------------------------------------


def test_a_failed_login_takes_as_long_for_a_known_and_an_unknown_user(tmp_path):
    # The attack: an empty password answered in 0.01 ms for a known user, ~15 ms for an unknown one.
    relaxed = LoginProtectionConfig(free_failures_per_user=10_000, free_failures_per_address=10_000)
    world = PanelWorld(tmp_path / "world", login_protection=relaxed)
    try:
        with httpx.Client(base_url=world.base_url) as client:

            def seconds(username: str, password: str) -> float:
                started = time.perf_counter()
                response = client.post("/api/login", json={"username": username, "password": password})
                elapsed = time.perf_counter() - started
                assert response.status_code == 401
                return elapsed

            for password in ("", "wrong-password"):
                samples: dict[str, list[float]] = {ADMIN[0]: [], "nobody": []}
                for _ in range(15):  # interleaved, so load changes hit both alike
                    for username in samples:
                        samples[username].append(seconds(username, password))
                known, unknown = (statistics.median(samples[name]) for name in (ADMIN[0], "nobody"))
                assert 1 / 3 < known / unknown < 3, (password, known, unknown)
            assert client.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]}).status_code == 200
    finally:
        world.close()


# ----- concurrent password checks and the fs master's memory ---------------------------------------


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_concurrent_bad_logins_keep_the_fs_master_memory_bounded():
    # The attack: 40 concurrent bad logins made the fs master hash 40 passwords at once (argon2id,
    # 19 MiB each): its peak RSS went from 92 to 526 MiB.
    with fs_cluster() as fs:
        relaxed = {"free_failures_per_user": 10_000, "free_failures_per_address": 10_000}
        panel_url = fs.start_master(login_protection=relaxed).fields["panel"]
        assert fs.master is not None
        pid = fs.master.pid
        with httpx.Client(base_url=panel_url, timeout=30) as client:
            assert (
                client.post("/api/login", json={"username": MASTER_ADMIN[0], "password": MASTER_ADMIN[1]}).status_code
                == 200
            )
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak RSS count from now
        before = _peak_rss_mib(pid)

        def bad_login(n: int) -> int:
            with httpx.Client(base_url=panel_url, timeout=30) as flood:
                return flood.post("/api/login", json={"username": MASTER_ADMIN[0], "password": f"bad-{n}"}).status_code

        statuses: list[int] = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            for _ in range(3):
                statuses += pool.map(bad_login, range(40))
        growth = _peak_rss_mib(pid) - before
        assert set(statuses) <= {401, 503}, statuses
        assert statuses.count(401) >= 10, "the waiting room let too few checks through"
        # 2 checks at once (the default) need ~40 MiB; 40 at once needed ~430 MiB more.
        assert growth < 120, f"peak RSS grew by {growth:.0f} MiB"

        with httpx.Client(base_url=panel_url, timeout=30) as client:
            response = client.post("/api/login", json={"username": MASTER_ADMIN[0], "password": MASTER_ADMIN[1]})
            assert response.status_code == 200  # the flood is over: logins work
