"""End to end: real WebSocket clients and boto3 against ``runapigateway`` in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.e2e_support import ROOT, Browser, GatewayProcess, e2e_database

IDLE_TIMEOUT = 4


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with e2e_database(tmp_path_factory.mktemp("e2e")) as database_url:
        process = GatewayProcess(database_url, "--idle-timeout", str(IDLE_TIMEOUT))
        yield process
        process.stop()


@pytest.fixture(scope="module")
def alice(gateway):
    return Browser(gateway.base_url).login("alice")


@pytest.fixture(scope="module")
def bob(gateway):
    return Browser(gateway.base_url).login("bob")


def open_socket(gateway, browser, channel="general", **query):
    params = {"ws_token": browser.token(), "channel": channel, **query}
    url = gateway.ws_url + "?" + "&".join(f"{k}={v}" for k, v in params.items())
    return connect(url, additional_headers=browser.socket_headers(), open_timeout=10)


def receive(socket, wanted_type, timeout=5):
    """The next message of ``wanted_type`` (presence and acks may arrive in between)."""
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") == wanted_type:
            return message


def connection_id_of(gateway, username):
    rows = gateway.query(
        "SELECT s.connection_id FROM django_aws_api_gateway_websockets_websocketsession s "
        "JOIN auth_user u ON u.id = s.user_id WHERE u.username = %s AND s.connected "
        "ORDER BY s.id DESC",
        username,
    )
    return rows[0][0]


def management_client(gateway):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=gateway.connections_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def test_site_is_served_through_the_handler(gateway, alice):
    page = alice.opener.open(gateway.base_url).read().decode()
    assert "General" in page and "ws://" in page
    script = alice.opener.open(
        gateway.base_url + "static/django_aws_api_gateway_websockets/websocket-client.js"
    )
    assert script.status == 200


def test_two_clients_chat_in_a_room(gateway, alice, bob):
    with open_socket(gateway, alice) as a, open_socket(gateway, bob) as b:
        assert receive(a, "presence")["users"] == ["alice", "bob"]
        a.send(json.dumps({"action": "chat_message", "message": "hello bob"}))
        for socket in (a, b):
            event = receive(socket, "chat_message")
            assert (event["user"], event["message"]) == ("alice", "hello bob")
        assert receive(a, "ack")["delivered"] == 2
    # The room's history is its replay log: a newcomer connecting with since=0 gets it.
    with open_socket(gateway, bob, since=0) as late:
        replay = receive(late, "replay")
        assert [m["message"] for m in replay["messages"]] == ["hello bob"]


def test_rooms_are_separate(gateway, alice, bob):
    with open_socket(gateway, alice, "general") as a, open_socket(gateway, bob, "random") as b:
        b.send(json.dumps({"action": "chat_message", "message": "only random"}))
        receive(b, "chat_message")
    with open_socket(gateway, alice, since=0) as a:
        replay = receive(a, "replay")
        assert replay["channel"] == "general" and replay["done"] is True
        assert [m["room"] for m in replay["messages"]] == ["general"] * len(replay["messages"])
        assert all(m["message"] != "only random" for m in replay["messages"])


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"ws_token": "0" * 64}, 401),
        ({"channel": "staff"}, 403),  # private room, alice is no member
        ({"channel": "bad%20name"}, 400),
    ],
)
def test_refused_connects_fail_the_handshake(gateway, alice, change, status):
    params = {"ws_token": alice.token(), "channel": "general", **change}
    url = gateway.ws_url + "?" + "&".join(f"{k}={v}" for k, v in params.items())
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=alice.socket_headers(), open_timeout=10)
    assert refused.value.response.status_code == status


def test_foreign_origin_is_refused(gateway, alice):
    headers = {**alice.socket_headers(), "Origin": "http://evil.example"}
    url = f"{gateway.ws_url}?ws_token={alice.token()}&channel=general"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=headers, open_timeout=10)
    assert refused.value.response.status_code == 403


def test_boto3_reaches_browsers_and_sees_gone_connections(gateway, alice):
    client = management_client(gateway)
    with open_socket(gateway, alice) as socket:
        connection_id = connection_id_of(gateway, "alice")
        client.post_to_connection(ConnectionId=connection_id, Data=b'{"type": "ping"}')
        assert receive(socket, "ping") == {"type": "ping"}
        info = client.get_connection(ConnectionId=connection_id)
        assert info["Identity"]["SourceIp"] == "127.0.0.1"
        assert info["ConnectedAt"] <= info["LastActiveAt"]
    deadline = time.monotonic() + 5
    while gateway.query(
        "SELECT connected FROM django_aws_api_gateway_websockets_websocketsession "
        "WHERE connection_id = %s",
        connection_id,
    )[0][0]:
        assert time.monotonic() < deadline, "$disconnect did not mark the session"
        time.sleep(0.1)
    with pytest.raises(ClientError) as gone:
        client.post_to_connection(ConnectionId=connection_id, Data=b"{}")
    assert gone.value.response["Error"]["Code"] == "GoneException"


def test_delete_connection_closes_the_socket(gateway, alice):
    client = management_client(gateway)
    with open_socket(gateway, alice) as socket:
        client.delete_connection(ConnectionId=connection_id_of(gateway, "alice"))
        with pytest.raises(ConnectionClosed):
            while True:
                socket.recv(timeout=5)


@pytest.mark.parametrize(
    ("payload", "close_code"),
    [
        ("x" * (32 * 1024 + 1), 1009),  # one frame over 32 KiB
        (b"\x00binary", 1003),
    ],
)
def test_frame_limits(gateway, alice, payload, close_code):
    with open_socket(gateway, alice) as socket:
        socket.send(payload)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=5)
    assert closed.value.rcvd.code == close_code


def test_message_over_128_kib_in_small_frames_is_closed_1009(gateway, alice):
    with open_socket(gateway, alice) as socket:
        chunks = ["y" * (16 * 1024)] * 9  # 144 KiB in 16 KiB frames
        # The close may come while the last frames are still going out: send raises then.
        with pytest.raises(ConnectionClosed) as closed:
            socket.send(iter(chunks))
            while True:
                socket.recv(timeout=5)
    assert closed.value.rcvd.code == 1009


def test_message_under_128_kib_in_frames_is_delivered(gateway, alice):
    with open_socket(gateway, alice) as socket:
        body = json.dumps({"action": "who_is_here", "pad": "z" * (100 * 1024)})
        socket.send(iter([body[i : i + 16384] for i in range(0, len(body), 16384)]))
        assert receive(socket, "here_now")["channel"] == "general"


# Sent from another process, as a worker or a management command would: the library's own
# send path (signed HTTP to runapigateway's @connections, which checks the signatures).
BROADCAST_DOCUMENT = """
from django_aws_api_gateway_websockets.models import WebSocketSession
data = {{"type": "document", "text": {line!r} * {count}}}
report = WebSocketSession.objects.filter(channel_name="general").send_message(data)
print("REPORT", report.delivered, report.gone, report.failed)
"""
# Quotes, a backslash, a newline, non-ASCII and a character outside the BMP: escapes count.
DOCUMENT_LINE = 'Grüße "quoted" \\ back\nslash 漢字 😀 '
DOCUMENT_LINES = 5000


def large_document() -> dict:
    return {"type": "document", "text": DOCUMENT_LINE * DOCUMENT_LINES}


def receive_whole(socket, timeout=10) -> dict:
    """What the JS client does with parts: join each set's slices in index order and parse."""
    deadline = time.monotonic() + timeout
    slices: dict[int, str] = {}
    while True:
        raw = socket.recv(timeout=max(0.1, deadline - time.monotonic()))
        assert len(raw.encode("utf-8")) <= 128 * 1024  # every frame one post within the limit
        message = json.loads(raw)
        if message.get("type") != "part":
            continue
        assert message["index"] == len(slices)  # in order, none missing
        slices[message["index"]] = message["data"]
        if len(slices) == message["count"]:
            return json.loads("".join(slices[i] for i in range(len(slices))))


def test_a_200_kib_broadcast_arrives_as_parts_and_reassembles(gateway, alice, bob):
    data = large_document()
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    assert 200 * 1024 <= size < 256 * 1024
    with open_socket(gateway, alice) as a, open_socket(gateway, bob) as b:
        receive(a, "presence")
        result = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "shell",
                "-c",
                BROADCAST_DOCUMENT.format(line=DOCUMENT_LINE, count=DOCUMENT_LINES),
            ],
            cwd=ROOT,
            env={**gateway.env, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "REPORT 2 0 0" in result.stdout
        assert receive_whole(a) == data
        assert receive_whole(b) == data


def session_connected(gateway, connection_id):
    rows = gateway.query(
        "SELECT connected FROM django_aws_api_gateway_websockets_websocketsession "
        "WHERE connection_id = %s",
        connection_id,
    )
    return rows[0][0] in (True, 1)


def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_idle_connections_are_closed(gateway, alice):
    with open_socket(gateway, alice) as socket:
        connection_id = connection_id_of(gateway, "alice")
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                socket.recv(timeout=IDLE_TIMEOUT + 5)
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "Going away")
    assert IDLE_TIMEOUT - 1 <= time.monotonic() - started <= IDLE_TIMEOUT + 4
    wait_until(lambda: not session_connected(gateway, connection_id))  # its $disconnect ran


def test_a_pinging_connection_outlives_the_idle_timeout(gateway, alice):
    """What the JS client's keepalive does, at a tempo fitted to the short timeout."""
    with open_socket(gateway, alice) as socket:
        connection_id = connection_id_of(gateway, "alice")
        opened = time.monotonic()
        while time.monotonic() - opened < 2.5 * IDLE_TIMEOUT:
            socket.send(json.dumps({"action": "ping"}))
            assert receive(socket, "pong") == {"type": "pong"}
            time.sleep(IDLE_TIMEOUT / 3)
        # Still open well past the timeout: it still carries messages both ways.
        socket.send(json.dumps({"action": "who_is_here"}))
        assert receive(socket, "here_now")["channel"] == "general"
        assert session_connected(gateway, connection_id)
        request_count = gateway.query(
            "SELECT request_count FROM django_aws_api_gateway_websockets_websocketsession "
            "WHERE connection_id = %s",
            connection_id,
        )
        assert request_count == [(1,)]  # the pings were free; who_is_here counted


def test_idle_timeout_from_the_setting(tmp_path, bob):
    """``WEBSOCKETS_LOCAL_GATEWAY_IDLE_TIMEOUT`` (the example project's env pattern) with no
    ``--idle-timeout`` flag."""
    with e2e_database(tmp_path) as database_url:
        process = GatewayProcess(database_url, env={"WEBSOCKETS_LOCAL_GATEWAY_IDLE_TIMEOUT": "1.5"})
        try:
            browser = Browser(process.base_url).login("bob")
            with open_socket(process, browser) as socket:
                started = time.monotonic()
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        socket.recv(timeout=10)
            assert closed.value.rcvd.code == 1001
            assert time.monotonic() - started < 5
        finally:
            process.stop()


def test_ctrl_c_closes_sockets_and_runs_disconnect(tmp_path, bob):
    with e2e_database(tmp_path) as database_url:
        process = GatewayProcess(database_url)
        try:
            browser = Browser(process.base_url).login("bob")
            with open_socket(process, browser) as socket:
                assert process.stop() == 0
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        socket.recv(timeout=5)
            assert closed.value.rcvd.code == 1001
            connected = process.query(
                "SELECT COUNT(*) FROM django_aws_api_gateway_websockets_websocketsession "
                "WHERE connected"
            )
            assert connected == [(0,)]
            assert "Stopped." in process.rest_of_output()
        finally:
            process.stop()


def test_hundreds_of_messages_on_one_socket_are_all_answered(tmp_path):
    """Every event the gateway logs goes to its stdout: a run of a few hundred messages must
    not fill an unread pipe and stall the gateway (it used to stop after about 100)."""
    count = 160
    with e2e_database(tmp_path) as database_url:
        process = GatewayProcess(database_url, env={"WEBSOCKETS_MESSAGE_RATE_LIMIT": "off"})
        try:
            browser = Browser(process.base_url).login("bob")
            with open_socket(process, browser) as socket:
                for number in range(count):
                    message = {"action": "chat_message", "message": f"message {number}"}
                    socket.send(json.dumps(message))
                echoed = [receive(socket, "chat_message")["message"] for _ in range(count)]
            assert echoed == [f"message {number}" for number in range(count)]
            stored = process.query(
                "SELECT COUNT(*) FROM websocket_app_chatmessage WHERE text LIKE %s", "message %"
            )
            assert stored == [(count,)]
        finally:
            process.stop()
