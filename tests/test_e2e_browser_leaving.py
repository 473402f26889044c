"""A browser leaving pages that hold a socket (room to room, then away) is routine for
``runapigateway``: no ERROR, no traceback, and every connection gets its ``$disconnect``."""

from __future__ import annotations

import time

from playwright.sync_api import expect, sync_playwright

from tests.browsers import launch_chromium
from tests.e2e_support import GatewayProcess, e2e_database


def test_navigating_away_from_rooms_logs_no_error(tmp_path):
    with e2e_database(tmp_path) as database_url:
        gateway = GatewayProcess(database_url)
        try:
            with sync_playwright() as playwright:
                browser = launch_chromium(playwright)
                page = browser.new_page()
                page.goto(gateway.base_url + "login/")
                page.fill("input[name=username]", "alice")
                page.fill("input[name=password]", "alice")
                page.click("button[type=submit]")
                for room in ("general", "random", "general", "random"):
                    page.goto(f"{gateway.base_url}rooms/{room}/")
                    expect(page.locator("body")).to_have_attribute(
                        "data-socket", "open", timeout=15000
                    )
                page.goto("about:blank")
                browser.close()
            connected = "SELECT COUNT(*) FROM django_aws_api_gateway_websockets_websocketsession"
            # The last $disconnect follows the browser's close; under load it can lag a little.
            deadline = time.monotonic() + 10
            while True:
                sessions = gateway.query(connected)[0][0]
                still_open = gateway.query(connected + " WHERE connected")[0][0]
                if still_open == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        finally:
            gateway.stop()
            output = gateway.rest_of_output()
    assert sessions == 4 and still_open == 0, output
    assert "Traceback" not in output
    assert "Local gateway connection failed" not in output
