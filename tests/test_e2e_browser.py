"""Two real browsers (Chromium via Playwright) chatting in one room through runapigateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e_support import ROOT, GatewayProcess, e2e_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with e2e_database(tmp_path_factory.mktemp("browser")) as database_url:
        process = GatewayProcess(database_url)
        yield process
        process.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see .ci/run)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def logged_in_page(browser, gateway, username):
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    page.goto(gateway.base_url + "login/?next=/rooms/general/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", username)
    page.click("button[type=submit]")
    page.wait_for_url("**/rooms/general/")
    expect(page.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    return page


def test_two_users_chat_live_in_one_room(browser, gateway):
    alice = logged_in_page(browser, gateway, "alice")
    bob = logged_in_page(browser, gateway, "bob")

    expect(alice.locator("#presence li")).to_have_text(["alice", "bob"], timeout=10000)

    alice.fill("#message", "Hi Bob, this came through API Gateway's twin")
    alice.click("#composer button")
    expect(bob.locator("#messages li").last).to_contain_text(
        "alice: Hi Bob, this came through API Gateway's twin", timeout=10000
    )
    bob.fill("#message", "Hello Alice!")
    bob.press("#message", "Enter")
    expect(alice.locator("#messages li").last).to_contain_text("bob: Hello Alice!", timeout=10000)

    ARTIFACTS.mkdir(exist_ok=True)
    alice.screenshot(path=str(ARTIFACTS / "chat-alice.png"), full_page=True)
    bob.screenshot(path=str(ARTIFACTS / "chat-bob.png"), full_page=True)

    # Room change by reconnect: bob leaves, alice sees presence update; history on join.
    bob.click("[data-room=random]")
    expect(bob.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    expect(bob.locator("#room-title")).to_have_text("Random")
    expect(alice.locator("#presence li")).to_have_text(["alice"], timeout=10000)
    bob.click("[data-room=general]")
    expect(bob.locator("#messages li").last).to_contain_text("bob: Hello Alice!", timeout=10000)


def test_private_room_is_not_offered_to_non_members(browser, gateway):
    page = logged_in_page(browser, gateway, "alice")
    assert page.locator("[data-room=staff]").count() == 0
    response = page.goto(gateway.base_url + "rooms/staff/")
    assert response.status == 404
