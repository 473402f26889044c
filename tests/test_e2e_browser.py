"""Two real browsers (Chromium via Playwright) chatting in one room through runapigateway,
in the topology of a deployment: the site under a stage prefix on one host
(``http://127.0.0.1:PORT/dev/``, as zappa's REST API), the WebSocket on another host name
(``ws://localhost:PORT/local``, as the WebSocket API), so neither the site's cookies nor its
origin are the socket's, and nothing is configured to bridge them."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browsers import launch_chromium
from tests.e2e_support import ROOT, GatewayProcess, e2e_database

ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with e2e_database(tmp_path_factory.mktemp("browser")) as database_url:
        process = GatewayProcess(
            database_url,
            "--socket-host",
            "localhost",
            "--site-stage",
            "dev",
            # The shipped defaults, whatever the developer's environment holds.
            env={
                "WEBSOCKETS_TOKEN_BOUND_TO_SESSION": "",
                "WEBSOCKETS_ALLOWED_ORIGINS": "",
                "DJANGO_CSRF_TRUSTED_ORIGINS": "",
            },
        )
        assert urlsplit(process.base_url).hostname == "127.0.0.1"
        assert process.base_url.endswith("/dev/")
        assert process.ws_url.startswith("ws://localhost:")
        yield process
        process.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


class Traffic:
    """What the page asked for: request URLs and the WebSocket URLs it opened."""

    def __init__(self, page) -> None:
        self.requests: list[str] = []
        self.sockets: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))


def logged_in_page(browser, gateway, username):
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    page.traffic = Traffic(page)
    # Logged out, the room redirects to the login page, both under the stage prefix.
    page.goto(gateway.base_url + "rooms/general/")
    page.wait_for_url(gateway.base_url + "login/?next=/dev/rooms/general/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", username)
    page.click("button[type=submit]")
    page.wait_for_url(gateway.base_url + "rooms/general/")
    expect(page.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    return page


def test_the_page_uses_the_stage_prefix_and_the_socket_host(browser, gateway):
    page = logged_in_page(browser, gateway, "alice")
    site = gateway.base_url.rstrip("/").removesuffix("/dev")
    requested = page.traffic.requests
    assert f"{site}/dev/static/websocket_app/chat.js" in requested
    assert f"{site}/dev/static/django_aws_api_gateway_websockets/websocket-client.js" in requested
    assert f"{site}/dev/api/ws-token/" in requested
    outside = [url for url in requested if not urlsplit(url).path.startswith("/dev/")]
    assert [url for url in outside if not url.endswith("/favicon.ico")] == []
    (socket_url,) = page.traffic.sockets
    assert socket_url.startswith(gateway.ws_url + "?ws_token=")
    # The site's cookies stayed on its host: the socket's host has none.
    socket_origin = "http://" + urlsplit(gateway.ws_url).netloc
    assert page.context.cookies(socket_origin) == []
    assert {c["name"] for c in page.context.cookies(site)} >= {"sessionid", "csrftoken"}
    # The token carried the user, and was bound to the issuing site's origin.
    ((user, origin),) = gateway.query(
        "SELECT u.username, t.origin FROM django_aws_api_gateway_websockets_websockettoken t"
        " JOIN auth_user u ON u.id = t.user_id WHERE t.used"
    )
    assert (user, origin) == ("alice", site)
    page.context.close()


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


def test_logging_out_stays_under_the_stage_prefix(browser, gateway):
    page = logged_in_page(browser, gateway, "bob")
    page.click("header button")
    page.wait_for_url(gateway.base_url)
    expect(page.locator("header")).to_contain_text("Log in")
    page.context.close()


def test_private_room_is_not_offered_to_non_members(browser, gateway):
    page = logged_in_page(browser, gateway, "alice")
    assert page.locator("[data-room=staff]").count() == 0
    response = page.goto(gateway.base_url + "rooms/staff/")
    assert response.status == 404
