"""Attacks on the panel over real HTTP (uvicorn on a loopback port, driven with httpx).

Each test performs the attack the way it was first found, shows that it fails now, and shows the
legitimate use next to it still working.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.panel_harness import ADMIN, ALICE_PREFIX, PanelClient, PanelWorld
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
