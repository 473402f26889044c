"""The serverless.yml of docs/serverless_framework.md, run for real by serverless-offline.

The Node packages are installed once into a cache outside the repository (the docs' own
``npm install`` line, about a minute); later runs start serverless-offline in a few seconds.
Missing Node or npm, or no registry on the first run, fails the test with the reason: it never
skips.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import websockets

from tests.e2e_support import ROOT, Browser, e2e_database
from tests.lambda_package import _locked

DOC = ROOT / "docs" / "serverless_framework.md"
CACHE = Path.home() / ".cache" / "serverless-django-websockets" / "node-offline"
# What a service directory needs from the project: the handler and what it imports.
PROJECT_ENTRIES = (
    "lambda_handler.py",
    "manage.py",
    "project",
    "websocket_app",
    "django_aws_api_gateway_websockets",
)


def documented_serverless_yml() -> str:
    text = DOC.read_text()
    match = re.search(r"<!-- serverless\.yml: [^>]*-->\n```yaml\n(.*?)```", text, re.S)
    assert match, "docs/serverless_framework.md lost its serverless.yml block"
    return match.group(1)


def documented_npm_install() -> list[str]:
    match = re.search(r"^(npm install [^\n]+)$", DOC.read_text(), re.M)
    assert match, "docs/serverless_framework.md lost its npm install line"
    return match.group(1).split()


def ensure_node_packages() -> Path:
    """The docs' npm install, run in the cache directory unless it already holds exactly that."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: this test runs serverless-offline (Node 20).")
    command = documented_npm_install()
    stamp = CACHE / "installed-with.txt"
    binary = CACHE / "node_modules" / "serverless" / "bin" / "serverless.js"
    # Every xdist worker that runs a test of this module gets here: on a machine without the
    # cache, two concurrent npm installs into one directory fail (ENOTEMPTY). One installs;
    # the others wait for it and find the stamp.
    with _locked(CACHE):
        CACHE.mkdir(exist_ok=True)
        if stamp.exists() and stamp.read_text() == " ".join(command) and binary.exists():
            return CACHE / "node_modules"
        (CACHE / "package.json").write_text('{"name": "node-offline", "private": true}\n')
        result = subprocess.run(
            [*command, "--no-audit", "--no-fund"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.fail(f"{' '.join(command)} failed in {CACHE}:\n{result.stderr[-3000:]}")
        stamp.write_text(" ".join(command))
    return CACHE / "node_modules"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Offline:
    """``serverless offline`` in a service directory made of the project and the docs' file."""

    def __init__(self, service_dir: Path, env: dict[str, str]) -> None:
        self.http_port, self.websocket_port, self.lambda_port = (free_port() for _ in range(3))
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            ["node", "node_modules/serverless/bin/serverless.js", "offline"],
            cwd=service_dir,
            env={
                **env,
                "OFFLINE_HTTP_PORT": str(self.http_port),
                "OFFLINE_WEBSOCKET_PORT": str(self.websocket_port),
                "OFFLINE_LAMBDA_PORT": str(self.lambda_port),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # serverless spawns a shell and Python: stop them all
        )
        threading.Thread(target=self._read, daemon=True).start()
        self._wait_until_ready()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serverless offline exited:\n{self.output}")
            if "Server ready" in self.output:
                return
            time.sleep(0.1)
        raise RuntimeError(f"serverless offline did not start:\n{self.output}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    node_modules = ensure_node_packages()
    service_dir = tmp_path_factory.mktemp("service")
    for name in PROJECT_ENTRIES:
        (service_dir / name).symlink_to(ROOT / name)
    (service_dir / "node_modules").symlink_to(node_modules)
    (service_dir / "serverless.yml").write_text(documented_serverless_yml())
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "DJANGO_SECRET_KEY": "serverless-offline-test-key-" + "x" * 30,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "NO_PROXY": "localhost,127.0.0.1",
        "SLS_TELEMETRY_DISABLED": "1",
        "SLS_NOTIFICATIONS_MODE": "off",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "IS_OFFLINE"):
        env.pop(name, None)
    with e2e_database(service_dir) as database_url:
        env["DATABASE_URL"] = database_url
        manage = [sys.executable, "manage.py"]
        # The docs' steps, in order; the gateway is registered for the port the test picked.
        server = None
        try:
            for command in (["migrate", "-v0"], ["createdemo"]):
                subprocess.run(
                    manage + command, cwd=service_dir, env=env, check=True, capture_output=True
                )
            server = Offline(service_dir, env)
            registered = subprocess.run(
                [
                    *manage,
                    "registerLocalGateway",
                    "--url",
                    f"ws://localhost:{server.websocket_port}",
                ],
                cwd=service_dir,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            server.registered = registered.stdout
            yield server
        finally:
            if server is not None:
                server.stop()


def test_docs_serverless_yml_chats_through_serverless_offline(offline):
    site = f"http://localhost:{offline.http_port}/"
    assert "older gateway" not in offline.registered
    alice, bob = Browser(site).login("alice"), Browser(site).login("bob")
    # The login's redirect and the room page both went through slash-stripped paths.
    room = alice.opener.open(site + "rooms/general/").read().decode()
    assert f"ws://localhost:{offline.websocket_port}/local" in room
    socket_url = f"ws://localhost:{offline.websocket_port}/local"

    async def chat() -> tuple[dict, dict, dict]:
        async with (
            websockets.connect(
                f"{socket_url}?ws_token={alice.token()}&channel=general",
                additional_headers=alice.socket_headers(),
            ) as alice_socket,
            websockets.connect(
                f"{socket_url}?ws_token={bob.token()}&channel=general",
                additional_headers=bob.socket_headers(),
            ) as bob_socket,
        ):
            await alice_socket.send(json.dumps({"handler": "who_is_here"}))
            here = await next_of_type(alice_socket, "here_now")
            await alice_socket.send(json.dumps({"handler": "chat_message", "message": "hi bob"}))
            ack = await next_of_type(alice_socket, "ack")
            received = await next_of_type(bob_socket, "chat_message")
            return here, ack, received

    here, ack, received = asyncio.run(chat())
    assert here["users"] == ["alice", "bob"]
    assert ack == {"type": "ack", "delivered": 2}
    assert (received["user"], received["message"]) == ("alice", "hi bob")


def test_a_non_browser_client_without_origin_connects(offline):
    site = f"http://localhost:{offline.http_port}/"
    carol = Browser(site).login("demo")

    async def connect() -> dict:
        async with websockets.connect(
            f"ws://localhost:{offline.websocket_port}/local?ws_token={carol.token()}",
            additional_headers={"Cookie": carol.cookie_header},
        ) as sock:
            await sock.send(json.dumps({"handler": "who_is_here"}))
            return await next_of_type(sock, "here_now")

    assert asyncio.run(connect())["channel"] == "default"


def test_refused_connect_and_http_cookies_are_clean(offline):
    site = f"http://localhost:{offline.http_port}"
    with urllib.request.urlopen(f"{site}/login/") as response:
        cookies = response.headers.get_all("Set-Cookie")
    assert cookies and cookies[0].startswith("csrftoken=")

    async def refused() -> int:
        try:
            async with websockets.connect(f"ws://localhost:{offline.websocket_port}/local"):
                return 101
        except websockets.InvalidStatus as error:
            return error.response.status_code

    assert asyncio.run(refused()) == 401  # no token


async def next_of_type(sock, kind: str) -> dict:
    while True:
        message = json.loads(await asyncio.wait_for(sock.recv(), 15))
        if message.get("type") == kind:
            return message


def test_two_browsers_chat_on_the_documented_urls(offline):
    """The page's promise: open http://localhost:PORT/, log in, chat (Chromium, as a user)."""
    from playwright.sync_api import expect, sync_playwright

    from tests.browsers import launch_chromium
    from tests.test_e2e_browser import expect_last_message

    site = f"http://localhost:{offline.http_port}/"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            pages = []
            for username in ("alice", "bob"):
                page = browser.new_context().new_page()
                page.goto(site + "login/?next=/rooms/random/")
                page.fill("input[name=username]", username)
                page.fill("input[name=password]", username)
                page.click("button[type=submit]")
                page.wait_for_url("**/rooms/random/")
                expect(page.locator("body")).to_have_attribute("data-socket", "open", timeout=20000)
                pages.append(page)
            alice, bob = pages
            expect(alice.locator("#presence li")).to_have_text(["alice", "bob"], timeout=15000)
            alice.fill("#message", "Hi Bob, through serverless-offline")
            alice.click("#composer button")
            expect_last_message(bob, "alice", "Hi Bob, through serverless-offline", timeout=15000)
        finally:
            browser.close()
