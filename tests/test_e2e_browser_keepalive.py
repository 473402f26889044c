"""The JS client's keepalive in a real browser (Chromium) against ``runapigateway`` with a short
idle timeout: a client that pings keeps its one socket open past the timeout, while one with
the keepalive off is closed (1001) and has to reconnect."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browsers import launch_chromium
from tests.e2e_support import GatewayProcess, e2e_database

IDLE_TIMEOUT = 3

OPEN_CLIENTS = """
async ({ moduleUrl, wsUrl }) => {
  const { WebSocketClient } = await import(moduleUrl);
  const clients = {};
  for (const [name, keepaliveSeconds] of [["pinging", 1], ["silent", 0]]) {
    const record = { opened: 0, closes: [], pongsSeen: 0 };
    class Counting extends WebSocket {
      constructor(url) {
        super(url);
        record.opened += 1;
        this.addEventListener("close", (event) => record.closes.push(event.code));
      }
    }
    const client = new WebSocketClient({
      url: wsUrl,
      channel: "general",
      WebSocket: Counting,
      keepaliveSeconds,
      logger: { warn() {}, error() {} },
    });
    client.on("*", (message) => { if (message.type === "pong") record.pongsSeen += 1; });
    await client.connect();
    clients[name] = { client, record };
  }
  window.keepaliveClients = clients;
}
"""

REPORT = """
() => Object.fromEntries(Object.entries(window.keepaliveClients).map(
  ([name, { client, record }]) => [name, { state: client.state, ...record }]
))
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with e2e_database(tmp_path_factory.mktemp("keepalive")) as database_url:
        process = GatewayProcess(database_url, "--idle-timeout", str(IDLE_TIMEOUT))
        yield process
        process.stop()


def test_pings_keep_the_socket_open_past_the_idle_timeout(gateway):
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            room = gateway.base_url + "rooms/general/"
            page.goto(room)
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "alice")
            page.click("button[type=submit]")
            page.wait_for_url(room)
            expect(page.locator("body")).to_have_attribute("data-socket", "open", timeout=15000)
            page.evaluate(
                OPEN_CLIENTS,
                {
                    "moduleUrl": gateway.base_url
                    + "static/django_aws_api_gateway_websockets/websocket-client.js",
                    "wsUrl": gateway.ws_url,
                },
            )
            time.sleep(2.5 * IDLE_TIMEOUT)
            report = page.evaluate(REPORT)
        finally:
            browser.close()
    pinging, silent = report["pinging"], report["silent"]
    assert (pinging["state"], pinging["opened"], pinging["closes"]) == ("open", 1, [])
    assert pinging["pongsSeen"] == 0  # answered, and kept from the page's handlers
    # The control: without pings the gateway closes the socket, as API Gateway would.
    assert 1001 in silent["closes"] and silent["opened"] >= 2
