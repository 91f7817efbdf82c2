"""The panel in headless Debian chromium, driven by Playwright: what a person does with it.

One browser for the whole module and one panel world; each test uses a fresh browser context
(its own cookies). Transfers run on the in-process test runner of tests/support/panel_harness.py.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxon_fs.transfer.prescan import transfer_check_local_blocking
from tests.support.panel_harness import ADMIN, ALICE_PREFIX, PanelWorld
from tests.support.trees import assert_same_tree, make_tree

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PanelWorld]:
    panel_world = PanelWorld(tmp_path_factory.mktemp("panel-browser"))
    src = panel_world.export_roots["src"]
    make_tree(src / ALICE_PREFIX, files=30, seed=11)
    (src / ALICE_PREFIX / "readme.txt").write_text("team a data")
    make_tree(src / "data" / "other", files=12, seed=12)
    (src / "data" / "other" / "only-admins.txt").write_text("hidden from scoped users")
    (panel_world.export_roots["dst"] / "landing").mkdir()
    yield panel_world
    panel_world.close()


@pytest.fixture
def page(browser, world):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()


def log_in(page, world: PanelWorld, username: str, password: str) -> None:
    page.goto(world.base_url + "/ui/")
    expect(page).to_have_url(world.base_url + "/login?next=/ui/")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    expect(page.locator("#current-user")).to_have_text(username)


def log_out(page, world: PanelWorld) -> None:
    page.click("#logout")
    expect(page).to_have_url(world.base_url + "/login")


def test_admin_creates_a_scoped_user_who_sees_only_its_scope(page, world):
    log_in(page, world, *ADMIN)
    expect(page.locator("#members")).to_contain_text("owner-a")
    expect(page.locator("#cache-hit-rate")).to_have_text("75.0%")
    expect(page.locator("#exports")).to_contain_text("src")
    expect(page.locator("#agents")).to_contain_text("agent-a")
    # The overview refreshes itself: a mount reported now appears without reloading.
    world.mount_registry.report("client-9", "/mnt/late", "src", username=ADMIN[0], host="late-host", pid=9)
    expect(page.locator("#mounts")).to_contain_text("/mnt/late")

    page.click("text=Exports")
    page.click("a.export-link:text-is('src')")
    page.click("a.entry:text-is('data/')")
    expect(page.locator("#listing")).to_contain_text("other/")
    page.click("a.entry:text-is('team-a/')")
    expect(page.locator("#listing")).to_contain_text("readme.txt")

    page.click("nav >> text=Users")
    page.fill("#new-username", "erin")
    page.fill("#new-password", "erin-pw")
    page.click("#create-user-submit")
    expect(page.locator(".flash.info")).to_contain_text("user 'erin' created")
    expect(page.locator("#users")).to_contain_text("erin")

    page.click("nav >> text=Scopes")
    page.fill("#grant-export", "src")
    page.fill("#grant-prefix", ALICE_PREFIX)
    page.select_option("#grant-mode", "read_only")
    page.fill("#grant-usernames", "erin")
    page.click("#grant-submit")
    expect(page.locator(".flash.info")).to_contain_text("granted read_only")
    expect(page.locator("#scopes")).to_contain_text("erin")
    log_out(page, world)

    log_in(page, world, "erin", "erin-pw")
    expect(page.locator("nav >> text=Users")).to_have_count(0)
    page.click("text=Exports")
    expect(page.locator("#export-list a.export-link")).to_have_text(["src"])
    page.click("a.export-link:text-is('src')")
    expect(page.locator("#listing a.entry")).to_have_text(["data/"])
    page.click("a.entry:text-is('data/')")
    expect(page.locator("#listing a.entry")).to_have_text(["team-a/"])
    page.goto(world.base_url + "/ui/exports/src/?path=data/other")
    expect(page.locator("#error-message")).to_contain_text("permission denied")
    page.goto(world.base_url + "/ui/users/")
    expect(page.locator("h1")).to_have_text("Error 403")
    log_out(page, world)
    page.goto(world.base_url + "/ui/")
    expect(page).to_have_url(world.base_url + "/login?next=/ui/")


def test_a_user_creates_an_access_key_sees_its_secret_once_and_revokes_it(page, world):
    world.access_store.add_user("kim", "kim-pw")
    log_in(page, world, "kim", "kim-pw")
    page.click("nav >> text=Access keys")
    expect(page.locator("#keys")).to_contain_text("No access keys.")
    expect(page.locator("#key-username")).to_have_count(0)  # only managers create keys for others
    page.click("#create-key-submit")
    expect(page.locator(".flash.info")).to_contain_text("shown only now")
    [key] = world.access_store.list_access_keys("kim")
    expect(page.locator("#keys")).to_contain_text(key.access_key_id)
    page.reload()
    expect(page.locator(".flash.info")).to_have_count(0)
    page.click(f"tr[data-key='{key.access_key_id}'] >> text=Revoke")
    expect(page.locator(".flash.info")).to_contain_text(f"access key {key.access_key_id} of kim revoked")
    expect(page.locator("#keys")).to_contain_text("No access keys.")
    assert world.access_store.list_access_keys("kim") == []
    log_out(page, world)


def test_a_form_post_without_the_csrf_token_is_refused(page, world):
    log_in(page, world, *ADMIN)
    page.goto(world.base_url + "/ui/users/")
    page.eval_on_selector("#create-user input[name=csrf_token]", "input => input.remove()")
    page.fill("#new-username", "forged")
    page.fill("#new-password", "forged-pw")
    page.click("#create-user-submit")
    expect(page.locator("h1")).to_have_text("Error 403")
    expect(page.locator("#error-message")).to_contain_text("CSRF")
    status = page.evaluate(
        """() => fetch('/api/users', {method: 'POST', headers: {'Content-Type': 'application/json'},
                 body: JSON.stringify({username: 'forged', password: 'x'})}).then(r => r.status)"""
    )
    assert status == 403
    assert world.access_store.get_user("forged") is None
    ok = page.evaluate(
        """() => window.fluxonPanel.fetchJson('/api/users', {method: 'POST',
                 body: {username: 'with-token', password: 'x'}}).then(r => r.status)"""
    )
    assert ok == 200
    assert world.access_store.get_user("with-token") is not None


def test_dragging_a_folder_across_panes_submits_a_transfer(page, world):
    log_in(page, world, *ADMIN)
    page.goto(world.base_url + "/ui/transfers/")
    page.select_option("#src-export", "src")
    page.select_option("#dst-export", "dst")
    page.click("#src-list a.name:text-is('data/')")
    source_row = page.locator('#src-list li[data-path="data/team-a"]')
    target_row = page.locator('#dst-list li[data-path="landing"]')
    expect(source_row).to_be_visible()
    expect(target_row).to_be_visible()

    source_row.drag_to(target_row)
    expect(page.locator("#submit-dialog")).to_be_visible()
    expect(page.locator("#f-source-export")).to_have_value("src")
    expect(page.locator("#f-source-dir")).to_have_value("data/team-a")
    expect(page.locator("#f-target-export")).to_have_value("dst")
    expect(page.locator("#f-target-prefix")).to_have_value("landing")
    page.fill("#f-workers", "3")
    page.fill("#f-batch-bytes", "64KiB")
    page.click("#submit-transfer")

    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded")  # the page refreshes itself
    expect(page.locator("#batches")).to_contain_text("done")
    assert_same_tree(world.export_roots["src"] / ALICE_PREFIX, world.export_roots["dst"] / "landing" / "team-a")
    page.click("text=All transfers")
    expect(page.locator("#jobs tr[data-state=succeeded]")).to_have_count(1)


def test_importing_a_prescan_from_the_prescans_table(page, world, tmp_path: Path):
    source = world.export_roots["src"] / "data" / "other"
    summary = transfer_check_local_blocking(
        src_root_dir=str(source), transfer_state_store=world.state_store_config, batch_ready_bytes=32 * 1024
    )
    log_in(page, world, *ADMIN)
    page.goto(world.base_url + "/ui/transfers/")
    row = page.locator(f'#prescans tr[data-prescan="{summary.job_id}"]')
    expect(row).to_contain_text(str(source))
    expect(row).to_contain_text(str(summary.batch_count))
    row.locator("a.import").click()

    page.select_option("#i-source-export", "src")
    page.select_option("#i-target-export", "dst")
    page.fill("#i-target-prefix", "from-prescan")
    page.fill("#i-workers", "2")
    page.click("#import-submit")
    expect(page.locator("#job-state")).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#job-body")).to_contain_text(f"pre-scan {summary.job_id}")
    assert_same_tree(source, world.export_roots["dst"] / "from-prescan" / "other")
    shutil.rmtree(world.export_roots["dst"] / "from-prescan")
