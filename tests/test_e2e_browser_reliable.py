"""Nothing lost, in a real browser (Chromium) against a real ``runapigateway`` process.

A page's library client (``since: 0``) records every message it is handed while messages are
published from another process with ``WebSocketSession.objects.broadcast()``, posting to the
gateway's @connections with SigV4 as a deployed project does. The connection is then cut for
real: the gateway process is killed and restarted on the same port while publishing goes on,
the server drops the socket with @connections DELETE, the gateway's maximum connection duration
closes sockets every few seconds, and a proxy between the browser and the gateway stalls the
connection without closing it. Each time the page must end with every seq once, in order.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from playwright.sync_api import sync_playwright

from tests.browsers import launch_chromium
from tests.e2e_support import ROOT, GatewayProcess, e2e_database

CHANNEL = "reliable"  # no room of the example chat: only this test publishes to it

PUBLISHER = """
import sys
from django_aws_api_gateway_websockets.models import WebSocketSession
for line in sys.stdin:
    report = WebSocketSession.objects.broadcast(
        {channel!r}, {{"type": "note", "text": line.rstrip("\\n")}}
    )
    print("SEQ", report.seq, report.delivered, report.failed, report.gone, flush=True)
"""

OPEN_CLIENT = """
async ({ moduleUrl, wsUrl, channel, options }) => {
  const { WebSocketClient } = await import(moduleUrl);
  const record = { notes: [], states: [], opened: 0, closes: [], gaps: 0 };
  class Counting extends WebSocket {
    constructor(url) {
      super(url);
      record.opened += 1;
      this.addEventListener("close", (event) => record.closes.push(event.code));
    }
  }
  const client = new WebSocketClient({
    url: wsUrl,
    channel,
    since: 0,
    WebSocket: Counting,
    maxDelay: 1000,
    logger: { warn() {}, error() {} },
    ...options,
  });
  client.on("note", (message) => record.notes.push([message.seq, message.text]));
  client.on("gap", () => { record.gaps += 1; });
  client.onState((state) => record.states.push(state));
  await client.connect();
  window.reliable = { client, record };
}
"""

REPORT = "() => ({ state: window.reliable.client.state, ...window.reliable.record })"


class Publisher:
    """One ``manage.py shell`` with the gateway's settings that broadcasts a note per line:
    a project's own code publishing, in its own process."""

    def __init__(self, gateway: GatewayProcess, log_path) -> None:
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "shell", "-c", PUBLISHER.format(channel=CHANNEL)],
            cwd=ROOT,
            env={**gateway.env, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.lock = threading.Lock()

    def publish(self, text: str) -> tuple[int, int, int, int]:
        """(seq, delivered, failed, gone) of one broadcast."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(text + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            while line and not line.startswith("SEQ "):  # the shell's own banner
                line = self.process.stdout.readline()
        assert line, "the publisher exited: see its log"
        seq, delivered, failed, gone = map(int, line.split()[1:])
        return seq, delivered, failed, gone

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.log.close()


class StallingProxy:
    """A TCP proxy between the browser and the gateway whose ``stall()`` stops forwarding, both
    ways, on the connections it holds, without closing them: a dead network path (a NAT that
    forgot the mapping, a suspended laptop's Wi-Fi) that neither end is told about. Connections
    made afterwards are forwarded as usual."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            stalled = threading.Event()
            self.connections.append((client, upstream, stalled))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, sink, stalled), daemon=True
                ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, stalled: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if not stalled.is_set():  # stalled: read, and never passed on
                    sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)

    def stall(self) -> None:
        for _, _, stalled in self.connections:
            stalled.set()

    def close(self) -> None:
        self.listener.close()
        for client, upstream, _ in self.connections:
            client.close()
            upstream.close()


@pytest.fixture
def database_url(tmp_path) -> Iterator[str]:
    with e2e_database(tmp_path) as url:
        yield url


@contextlib.contextmanager
def running(gateway: GatewayProcess) -> Iterator[GatewayProcess]:
    """Kill the gateway at the end (it may already be dead); no traceback in its log."""
    try:
        yield gateway
    finally:
        gateway.stop(signal.SIGKILL)
    output = gateway.rest_of_output()
    assert "Traceback" not in output, output[-5000:]


@contextlib.contextmanager
def page_client(gateway: GatewayProcess, ws_url: str | None = None, **options):
    """A logged-in page whose library client (``since: 0``) records every note."""
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(gateway.base_url + "login/")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "alice")
            page.click("button[type=submit]")
            page.wait_for_url(gateway.base_url)
            page.evaluate(
                OPEN_CLIENT,
                {
                    "moduleUrl": gateway.base_url
                    + "static/django_aws_api_gateway_websockets/websocket-client.js",
                    "wsUrl": ws_url or gateway.ws_url,
                    "channel": CHANNEL,
                    "options": options,
                },
            )
            yield page
        finally:
            browser.close()


def wait_for_notes(page, count: int, timeout: float = 15) -> dict:
    """The page's record once it holds ``count`` notes (or what it has at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        report = page.evaluate(REPORT)
        if len(report["notes"]) >= count or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def connected_ids(gateway: GatewayProcess) -> list[str]:
    rows = gateway.query(
        "SELECT connection_id FROM django_aws_api_gateway_websockets_websocketsession "
        "WHERE channel_name = %s AND connected ORDER BY id",
        CHANNEL,
    )
    return [row[0] for row in rows]


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def assert_every_note_once_in_order(report: dict, texts: list[str]) -> None:
    assert report["notes"] == [[seq, text] for seq, text in enumerate(texts, start=1)]
    assert report["gaps"] == 0


def test_a_killed_and_restarted_gateway_loses_nothing(database_url, tmp_path):
    gateway = GatewayProcess(database_url)
    texts = [f"message {n}" for n in range(1, 31)]
    with running(gateway), page_client(gateway) as page:
        publisher = Publisher(gateway, tmp_path / "publisher.log")
        try:
            wait_until(lambda: len(connected_ids(gateway)) == 1)
            for text in texts[:10]:
                publisher.publish(text)
            assert len(wait_for_notes(page, 10)["notes"]) == 10

            gateway.stop(signal.SIGKILL)  # the connection is cut: no close frame, no $disconnect
            while_down = [publisher.publish(text) for text in texts[10:20]]
            assert [delivered for _, delivered, _, _ in while_down] == [0] * 10
            assert all(failed == 1 for _, _, failed, _ in while_down)  # stored, not sent
            time.sleep(2)

            restarted = GatewayProcess(database_url, port=gateway.port)
            with running(restarted):
                assert restarted.ws_url == gateway.ws_url
                report = wait_for_notes(page, 20)
                assert len(report["notes"]) == 20, report
                for text in texts[20:]:
                    publisher.publish(text)
                report = wait_for_notes(page, 30)
        finally:
            publisher.close()
    assert_every_note_once_in_order(report, texts)
    assert report["state"] == "open"
    assert "reconnecting" in report["states"]  # the cut was real
    assert report["opened"] >= 2


def test_a_socket_dropped_by_the_server_while_publishing_loses_nothing(database_url, tmp_path):
    gateway = GatewayProcess(database_url)
    texts = [f"message {n}" for n in range(1, 41)]
    with running(gateway), page_client(gateway) as page:
        publisher = Publisher(gateway, tmp_path / "publisher.log")
        try:
            wait_until(lambda: len(connected_ids(gateway)) == 1)
            (first,) = connected_ids(gateway)
            published = threading.Event()
            progress: list[int] = []

            def publish_all() -> None:
                for text in texts:
                    progress.append(publisher.publish(text)[0])
                    time.sleep(0.05)
                published.set()

            thread = threading.Thread(target=publish_all)
            thread.start()
            wait_until(lambda: len(page.evaluate(REPORT)["notes"]) >= 5)
            management = boto3.client(
                "apigatewaymanagementapi",
                endpoint_url=gateway.connections_url,
                region_name="us-east-1",
                aws_access_key_id="local",
                aws_secret_access_key="local",
            )
            management.delete_connection(ConnectionId=first)
            assert len(progress) < len(texts)  # dropped while publishing went on
            thread.join(timeout=60)
            assert published.is_set()
            report = wait_for_notes(page, len(texts))
        finally:
            publisher.close()
    assert_every_note_once_in_order(report, texts)
    assert report["state"] == "open"
    assert report["opened"] >= 2 and report["closes"]  # the first socket was really closed
    assert "reconnecting" in report["states"]


MAX_DURATION = 3


def test_sockets_replaced_before_the_maximum_duration_lose_nothing(database_url, tmp_path):
    gateway = GatewayProcess(database_url, "--max-duration", str(MAX_DURATION))
    texts: list[str] = []
    with running(gateway), page_client(gateway, maxConnectionSeconds=2) as page:
        publisher = Publisher(gateway, tmp_path / "publisher.log")
        try:
            wait_until(lambda: len(connected_ids(gateway)) == 1)
            deadline = time.monotonic() + 7
            while time.monotonic() < deadline:
                texts.append(f"message {len(texts) + 1}")
                publisher.publish(texts[-1])
                time.sleep(0.05)
            report = wait_for_notes(page, len(texts))
        finally:
            publisher.close()
    assert len(texts) >= 35
    assert_every_note_once_in_order(report, texts)
    assert report["states"] == ["connecting", "open"]  # never "reconnecting"
    assert report["opened"] >= 3  # a new socket every 2 s
    assert 1001 not in report["closes"]  # replaced before the gateway's maximum closed it


def test_a_stalled_connection_is_given_up_and_replayed(database_url, tmp_path):
    gateway = GatewayProcess(database_url)
    proxy = StallingProxy(gateway.port)
    ws_url = gateway.ws_url.replace(f":{gateway.port}/", f":{proxy.port}/")
    texts = [f"message {n}" for n in range(1, 31)]
    try:
        with (
            running(gateway),
            page_client(gateway, ws_url, keepaliveSeconds=1, pongTimeoutSeconds=1) as page,
        ):
            publisher = Publisher(gateway, tmp_path / "publisher.log")
            try:
                wait_until(lambda: len(connected_ids(gateway)) == 1)
                (first,) = connected_ids(gateway)
                for text in texts[:10]:
                    publisher.publish(text)
                assert len(wait_for_notes(page, 10)["notes"]) == 10
                time.sleep(1.5)  # a ping answered: the client knows this socket answers pings

                proxy.stall()
                for text in texts[10:20]:
                    publisher.publish(text)  # posted to the gateway, swallowed on the way
                wait_until(lambda: len(connected_ids(gateway)) == 2)  # the client gave up ...
                assert first in connected_ids(gateway)  # ... a socket that was never closed
                report = wait_for_notes(page, 20)
                assert len(report["notes"]) == 20, report
                for text in texts[20:]:
                    publisher.publish(text)
                report = wait_for_notes(page, 30)
            finally:
                publisher.close()
    finally:
        proxy.close()
    assert_every_note_once_in_order(report, texts)
    assert report["state"] == "open"
    assert "reconnecting" in report["states"]
    assert report["opened"] == 2
