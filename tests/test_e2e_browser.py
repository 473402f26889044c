"""Two real browsers (Chromium via Playwright) chatting in one room through runapigateway,
in the topology of a deployment: the site under a stage prefix on one host
(``http://127.0.0.1:PORT/dev/``, as zappa's REST API), the WebSocket on another host name
(``ws://localhost:PORT/local``, as the WebSocket API), so neither the site's cookies nor its
origin are the socket's, and nothing is configured to bridge them."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
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


@pytest.fixture
def history_gateway(tmp_path_factory):
    """A gateway of its own, as ``gateway``: on PostgreSQL runapigateway stops answering after
    about a hundred rapid messages (known, not this test's subject), and the module's gateway
    is already busy."""
    with e2e_database(tmp_path_factory.mktemp("history")) as database_url:
        process = GatewayProcess(
            database_url,
            "--socket-host",
            "localhost",
            "--site-stage",
            "dev",
            env={
                "WEBSOCKETS_TOKEN_BOUND_TO_SESSION": "",
                "WEBSOCKETS_ALLOWED_ORIGINS": "",
                "DJANGO_CSRF_TRUSTED_ORIGINS": "",
            },
        )
        yield process
        process.stop()


@pytest.fixture(scope="module")
def refusing_gateway(tmp_path_factory):
    """The socket's host left out of ALLOWED_HOSTS: the site works, every $connect is
    refused (the host or origin mismatch a new project meets first)."""
    with e2e_database(tmp_path_factory.mktemp("refusing")) as database_url:
        process = GatewayProcess(
            database_url,
            "--socket-host",
            "localhost",
            env={
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "WEBSOCKETS_TOKEN_BOUND_TO_SESSION": "",
                "WEBSOCKETS_ALLOWED_ORIGINS": "",
                "DJANGO_CSRF_TRUSTED_ORIGINS": "",
            },
        )
        yield process
        process.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        launched = launch_chromium(playwright)
        yield launched
        launched.close()


class Traffic:
    """What the page asked for: request URLs, the WebSocket URLs it opened, and the responses
    that were errors."""

    def __init__(self, page) -> None:
        self.requests: list[str] = []
        self.sockets: list[str] = []
        self.errors: list[tuple[int, str]] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.sockets.append(socket.url))
        page.on(
            "response",
            lambda response: (
                response.status >= 400 and self.errors.append((response.status, response.url))
            ),
        )


def expect_last_message(page, user, text, timeout=10000):
    """The newest message shown is ``text`` from ``user`` (milliseconds to wait for it)."""
    last = page.locator("#messages li").last
    expect(last.locator(".user")).to_have_text(user, timeout=timeout)
    expect(last.locator(".text")).to_have_text(text)


def as_utc(stored) -> datetime:
    """A stored DateTimeField value (datetime on PostgreSQL, text on SQLite), aware."""
    value = stored if isinstance(stored, datetime) else datetime.fromisoformat(stored)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def logged_in_page(browser, gateway, username, socket="open"):
    """A new browser's page in room general, once the socket is in state ``socket``."""
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    page.traffic = Traffic(page)
    # Logged out, the room redirects to the login page, both under the stage prefix.
    room = gateway.base_url + "rooms/general/"
    page.goto(room)
    page.wait_for_url(gateway.base_url + f"login/?next={urlsplit(room).path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", username)
    page.click("button[type=submit]")
    page.wait_for_url(room)
    expect(page.locator("body")).to_have_attribute("data-socket", socket, timeout=15000)
    return page


def test_the_page_uses_the_stage_prefix_and_the_socket_host(browser, gateway):
    page = logged_in_page(browser, gateway, "alice")
    site = gateway.base_url.rstrip("/").removesuffix("/dev")
    requested = page.traffic.requests
    assert f"{site}/dev/static/websocket_app/chat.js" in requested
    assert f"{site}/dev/static/django_aws_api_gateway_websockets/websocket-client.js" in requested
    assert f"{site}/dev/api/ws-token/" in requested
    # The favicon too: the page declares it, so the browser does not ask for /favicon.ico.
    assert f"{site}/dev/static/websocket_app/favicon.svg" in requested
    assert [url for url in requested if not urlsplit(url).path.startswith("/dev/")] == []
    assert page.traffic.errors == []
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
    expect_last_message(bob, "alice", "Hi Bob, this came through API Gateway's twin")
    bob.fill("#message", "Hello Alice!")
    bob.press("#message", "Enter")
    expect_last_message(alice, "bob", "Hello Alice!")
    # Each message says when it was sent: the stored time, shown as the reader's local time.
    ((stored,),) = gateway.query(
        "SELECT created_on FROM websocket_app_chatmessage WHERE text = %s", "Hello Alice!"
    )
    shown = alice.locator("#messages li").last.locator("time")
    sent = datetime.fromisoformat(shown.get_attribute("datetime"))
    assert sent == as_utc(stored)
    expect(shown).to_have_text(re.compile(r"^\d{1,2}:\d{2}( [AP]M)?$"))

    ARTIFACTS.mkdir(exist_ok=True)
    alice.screenshot(path=str(ARTIFACTS / "chat-alice.png"), full_page=True)
    bob.screenshot(path=str(ARTIFACTS / "chat-bob.png"), full_page=True)

    # Room change by reconnect: bob leaves, alice sees presence update; the room's replay
    # (its last messages) on join.
    bob.click("[data-room=random]")
    expect(bob.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    expect(bob.locator("#room-title")).to_have_text("Random")
    expect(alice.locator("#presence li")).to_have_text(["alice"], timeout=10000)
    bob.click("[data-room=general]")
    expect_last_message(bob, "bob", "Hello Alice!")
    alice.context.close()
    bob.context.close()


def shown_texts(page, prefix):
    """The texts of the messages shown that start with ``prefix``, top to bottom."""
    texts = page.locator("#messages li .text").all_text_contents()
    return [text for text in texts if text.startswith(prefix)]


def expect_texts(page, prefix, wanted, timeout=15):
    deadline = time.monotonic() + timeout
    while shown_texts(page, prefix) != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shown_texts(page, prefix) == wanted


def test_the_rooms_history_is_its_replay_once_in_order(browser, history_gateway):
    """The page's history is the room's replay log: a reload shows each message once, in
    order, and what was said while the page's socket was down arrives when it reconnects."""
    gateway = history_gateway
    bob = logged_in_page(browser, gateway, "bob")
    bob.goto(gateway.base_url + "rooms/random/")
    expect(bob.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    for n in (1, 2, 3):
        bob.fill("#message", f"replayed {n}")
        bob.press("#message", "Enter")
        expect_last_message(bob, "bob", f"replayed {n}")

    bob.reload()
    expect(bob.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    expect_texts(bob, "replayed", ["replayed 1", "replayed 2", "replayed 3"])
    assert "since=" in bob.traffic.sockets[-1]

    alice = logged_in_page(browser, gateway, "alice")
    alice.goto(gateway.base_url + "rooms/random/")
    expect(alice.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    # bob's socket is closed by the gateway (as AWS may), and stays down while alice talks:
    # his page cannot get a token until the route is lifted.
    bob.route("**/api/ws-token/", lambda route: route.abort())
    management_client(gateway).delete_connection(ConnectionId=connection_id_of(gateway, "bob"))
    expect(bob.locator("body")).to_have_attribute("data-socket", "reconnecting", timeout=10000)
    for n in (4, 5):
        alice.fill("#message", f"replayed {n}")
        alice.press("#message", "Enter")
        expect_last_message(alice, "alice", f"replayed {n}")
    bob.unroute("**/api/ws-token/")

    expect(bob.locator("body")).to_have_attribute("data-socket", "open", timeout=30000)
    expect_texts(bob, "replayed", [f"replayed {n}" for n in (1, 2, 3, 4, 5)])
    expect(bob.locator("#messages li.gap")).to_have_count(0)
    alice.context.close()
    bob.context.close()


def connection_id_of(gateway, username):
    """The user's newest connected session's connection id."""
    ((connection_id,),) = gateway.query(
        "SELECT s.connection_id FROM django_aws_api_gateway_websockets_websocketsession s"
        " JOIN auth_user u ON u.id = s.user_id WHERE u.username = %s AND s.connected",
        username,
    )
    return connection_id


def management_client(gateway):
    """boto3's @connections client, against runapigateway's."""
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=gateway.connections_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_logging_out_lands_on_the_login_page_under_the_stage_prefix(browser, gateway):
    page = logged_in_page(browser, gateway, "bob")
    page.click("header button")
    page.wait_for_url(gateway.base_url + "login/")
    expect(page.locator(".flash")).to_have_text("You have logged out.")
    expect(page.locator("header")).to_contain_text("Log in")
    page.context.close()


def test_private_room_is_not_offered_to_non_members(browser, gateway):
    page = logged_in_page(browser, gateway, "alice")
    assert page.locator("[data-room=staff]").count() == 0
    response = page.goto(gateway.base_url + "rooms/staff/")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("Page not found")
    page.click("text=Back to the rooms")
    page.wait_for_url(gateway.base_url)


def socket_channels(gateway, username):
    """The channels of the user's connected sessions, as the gateway's database has them."""
    rows = gateway.query(
        "SELECT s.channel_name FROM django_aws_api_gateway_websockets_websocketsession s"
        " JOIN auth_user u ON u.id = s.user_id WHERE u.username = %s AND s.connected",
        username,
    )
    return sorted(channel for (channel,) in rows)


def expect_in_room(page, gateway, slug, title):
    """The URL, the page and demo's socket all in room ``slug``."""
    expect(page).to_have_url(gateway.base_url + f"rooms/{slug}/")
    expect(page.locator("#room-title")).to_have_text(title)
    expect(page).to_have_title(f"{title} · Serverless Django WebSockets")
    expect(page.locator("[aria-current=page]")).to_have_attribute("data-room", slug)
    expect(page.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
    deadline = time.monotonic() + 10
    while socket_channels(gateway, "demo") != [slug] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert socket_channels(gateway, "demo") == [slug]


def test_back_and_forward_switch_rooms_with_the_url(browser, gateway):
    page = logged_in_page(browser, gateway, "demo")  # no other test's page is demo's
    page.fill("#message", "Said in General")
    page.press("#message", "Enter")
    expect_last_message(page, "demo", "Said in General")
    pages_loaded = len([url for url in page.traffic.requests if "/rooms/" in url])

    page.click("[data-room=random]")
    expect_in_room(page, gateway, "random", "Random")
    expect(page.locator("#messages li", has_text="Said in General")).to_have_count(0)

    page.go_back()
    expect_in_room(page, gateway, "general", "General")
    expect_last_message(page, "demo", "Said in General")  # the room's replay, again

    page.go_forward()
    expect_in_room(page, gateway, "random", "Random")
    # Still one page: the switches never reloaded it.
    assert len([url for url in page.traffic.requests if "/rooms/" in url]) == pages_loaded
    page.context.close()


def test_an_expired_login_is_named_and_not_retried(browser, gateway):
    page = logged_in_page(browser, gateway, "alice")
    (session_key,) = [c["value"] for c in page.context.cookies() if c["name"] == "sessionid"]
    token_requests = []  # held until the test lets them through
    page.route("**/api/ws-token/", lambda route: token_requests.append(route))
    sockets_before = len(page.traffic.sockets)
    page.reload()
    while not token_requests:
        page.wait_for_timeout(50)
    # The page was served to a logged-in user; by the time its token request arrives, the
    # session is gone from the server, as when it expires.
    gateway.query("DELETE FROM django_session WHERE session_key = %s", session_key)
    token_requests[0].continue_()
    notice = page.locator("#notice-text")
    expect(notice).to_contain_text("Authentication required", timeout=10000)
    expect(notice).to_contain_text("your login has probably expired")
    relogin = page.locator("#relogin")
    expect(relogin).to_be_visible()
    assert relogin.get_attribute("href") == "/dev/login/?next=%2Fdev%2Frooms%2Fgeneral%2F"
    expect(page.locator("#retry")).to_be_hidden()
    page.wait_for_timeout(2500)  # longer than the first retry delay would be
    assert len(token_requests) == 1
    assert len(page.traffic.sockets) == sockets_before
    page.context.close()


def test_a_refused_connect_names_the_cause_and_is_retried_as_the_page_says(
    browser, refusing_gateway
):
    page = logged_in_page(browser, refusing_gateway, "alice", socket="closed")
    port = urlsplit(refusing_gateway.base_url).port
    notice = page.locator("#notice-text")
    expect(notice).to_contain_text(
        f"The WebSocket server refused the connection or could not be reached"
        f" (localhost:{port}, from this page on 127.0.0.1:{port})."
    )
    expect(notice).to_contain_text("ALLOWED_HOSTS")
    expect(notice).to_contain_text("(attempt 2 of 4)")
    expect(notice).to_contain_text("Stopped after 4 attempts.", timeout=15000)
    expect(page.locator("#retry")).to_be_visible()
    expect(page.locator("#relogin")).to_be_hidden()
    assert len(page.traffic.sockets) == 4
    page.wait_for_timeout(2500)  # longer than the last wait between attempts
    assert len(page.traffic.sockets) == 4, "it stopped, as it said"

    page.click("#retry")
    expect(notice).to_contain_text("(attempt 2 of 4)", timeout=10000)
    assert len(page.traffic.sockets) == 5
    page.context.close()
