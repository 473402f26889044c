"""The local API Gateway in-process, with a recording stub in place of the Lambda handler:
event shapes, route selection, route responses, limits, @connections and HTTP edge cases."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
import threading
import time
from contextlib import contextmanager

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from django_aws_api_gateway_websockets.local_gateway import GatewayLimits, LocalApiGateway
from django_aws_api_gateway_websockets.local_gateway.events import select_route


class StubHandler:
    """Answers like the Lambda handler would; records every event."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.connect_status = 200

    def __call__(self, event, context):
        self.events.append(event)
        context_ = event.get("requestContext", {})
        kind = context_.get("eventType")
        if kind == "CONNECT":
            return {"statusCode": self.connect_status, "body": ""}
        if kind == "MESSAGE":
            body = json.loads(event["body"]) if event["body"].startswith("{") else {}
            if body.get("action") == "explode":
                raise RuntimeError("handler bug")
            if body.get("action") == "b64":
                return {
                    "statusCode": 200,
                    "body": base64.b64encode(b"binary-ish").decode(),
                    "isBase64Encoded": True,
                }
            return {"statusCode": 200, "body": json.dumps({"route": context_["routeKey"]})}
        if kind == "DISCONNECT":
            return {"statusCode": 200, "body": ""}
        if event.get("path") == "/cookies":
            return {
                "statusCode": 200,
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                "body": "two cookies",
            }
        if event.get("path") == "/binary":
            return {
                "statusCode": 200,
                "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(b"\x89PNG").decode(),
                "isBase64Encoded": True,
            }
        if event.get("path") == "/broken":
            return None
        if event.get("path") == "/slow":
            time.sleep(0.5)
        return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "site"}

    def of_type(self, event_type):
        return [
            e for e in self.events if e.get("requestContext", {}).get("eventType") == event_type
        ]


@pytest.fixture
def stub():
    return StubHandler()


def running_gateway(stub, **options):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = LocalApiGateway(
        stub,
        port=0,
        route_config=lambda: ("$request.body.action", {"sendmessage"}),
        limits=GatewayLimits(idle_timeout=30, max_connection_duration=1.5),
        **{"stage": "dev", **options},
    )
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(5)
    yield server
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def gateway(stub):
    yield from running_gateway(stub)


@pytest.fixture
def two_host_gateway(stub):
    """As deployed: the site under /dev/ on 127.0.0.1, the socket on localhost."""
    yield from running_gateway(stub, stage="production", socket_host="localhost", site_stage="dev")


def raw_http(gateway, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def wait_for(condition, timeout=5):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_connect_event_has_the_aws_shape(gateway, stub):
    url = f"{gateway.websocket_url}?channel=a&channel=b&x=1"
    with connect(url, additional_headers={"Cookie": "sessionid=s"}) as ws:
        ws.send(json.dumps({"action": "sendmessage"}))
        assert json.loads(ws.recv(timeout=5)) == {"route": "sendmessage"}
    wait_for(lambda: stub.of_type("DISCONNECT"))
    connect_event = stub.of_type("CONNECT")[0]
    context = connect_event["requestContext"]
    assert (context["routeKey"], context["stage"], context["apiId"]) == ("$connect", "dev", "local")
    assert len(context["connectionId"]) == 16 and context["messageDirection"] == "IN"
    assert connect_event["queryStringParameters"] == {"channel": "b", "x": "1"}
    assert connect_event["multiValueQueryStringParameters"]["channel"] == ["a", "b"]
    assert connect_event["headers"]["Cookie"] == "sessionid=s"
    assert connect_event["headers"]["X-Forwarded-Proto"] == "http"
    message = stub.of_type("MESSAGE")[0]
    assert "headers" not in message and message["isBase64Encoded"] is False
    assert message["requestContext"]["connectionId"] == context["connectionId"]
    disconnect = stub.of_type("DISCONNECT")[0]["requestContext"]
    assert disconnect["disconnectStatusCode"] == 1000


@pytest.mark.parametrize(
    ("body", "route"),
    [
        ({"action": "sendmessage"}, "sendmessage"),
        ({"action": "unknown"}, "$default"),
        ({"message": "no action"}, "$default"),
    ],
)
def test_route_selection(gateway, body, route):
    with connect(gateway.websocket_url) as ws:
        ws.send(json.dumps(body))
        assert json.loads(ws.recv(timeout=5))["route"] == route


def test_select_route_expression_forms():
    keys = {"a", "1"}
    assert select_route("$request.body.action", '{"action": "a"}', keys) == "a"
    assert select_route("$request.body.meta.kind", '{"meta": {"kind": "a"}}', keys) == "a"
    assert select_route("$request.body.n", '{"n": 1}', keys) == "1"
    assert select_route("$request.body.n", '{"n": true}', keys) == "$default"
    assert select_route("$request.body.n", '{"n": [1]}', keys) == "$default"
    assert select_route("$request.body.a.b", '{"a": "x"}', keys) == "$default"
    assert select_route("$request.body.action", "not json", keys) == "$default"
    assert select_route("$request.header.x", '{"action": "a"}', keys) == "$default"


def test_handler_error_is_reported_to_the_client(gateway):
    with connect(gateway.websocket_url) as ws:
        ws.send(json.dumps({"action": "explode"}))
        assert json.loads(ws.recv(timeout=5)) == {"message": "Internal server error"}


def test_base64_route_response(gateway):
    with connect(gateway.websocket_url) as ws:
        ws.send(json.dumps({"action": "b64"}))
        assert ws.recv(timeout=5) == "binary-ish"


def test_refused_connect_status_reaches_the_client(gateway, stub):
    stub.connect_status = 429
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.websocket_url)
    assert refused.value.response.status_code == 429
    assert not stub.of_type("DISCONNECT")


def test_wrong_path_is_404(gateway):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{gateway.port}/other")
    assert refused.value.response.status_code == 404


def test_maximum_connection_duration(gateway, stub, caplog):
    """As API Gateway at 2 hours: 1001 "Going away", the same frame as its idle close; only
    the gateway's log line tells the two apart."""
    with caplog.at_level(logging.INFO, logger="django_aws_api_gateway_websockets.local_gateway"):
        with connect(gateway.websocket_url) as ws, pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "Going away")
        wait_for(lambda: stub.of_type("DISCONNECT"))
    context = stub.of_type("DISCONNECT")[0]["requestContext"]
    assert (context["disconnectStatusCode"], context["disconnectReason"]) == (1001, "Going away")
    lines = [r.getMessage() for r in caplog.records if "maximum duration" in r.getMessage()]
    assert lines == [
        f"Connection {context['connectionId']} reached the maximum duration of 1.5 s: closed (1001)"
    ]


def test_post_during_connect_is_gone(gateway, stub):
    import urllib.error
    import urllib.request

    def slow_connect(event, context):
        if event.get("requestContext", {}).get("eventType") == "CONNECT":
            connection_id = event["requestContext"]["connectionId"]
            request = urllib.request.Request(
                f"{gateway.management_url}/@connections/{connection_id}", data=b"{}", method="POST"
            )
            try:
                urllib.request.urlopen(request, timeout=5)
            except urllib.error.HTTPError as error:
                stub.events.append({"early_post": error.code})
        return StubHandler.__call__(stub, event, context)

    gateway.handler = slow_connect
    with connect(gateway.websocket_url):
        pass
    assert {"early_post": 410} in stub.events


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nBadHeader\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"501"),
        (b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", b"400"),
        (b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n", b"413"),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * 300000 + b"\r\n\r\n", b"431"),
    ],
)
def test_malformed_http_is_refused_not_crashed(gateway, request_bytes, status):
    assert raw_http(gateway, request_bytes).split(b" ")[1] == status


def test_site_keep_alive_and_multi_value_headers(gateway):
    two_requests = (
        b"GET /cookies HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /binary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    response = raw_http(gateway, two_requests)
    assert response.count(b"HTTP/1.1 200 OK") == 2
    assert b"Set-Cookie: a=1\r\nSet-Cookie: b=2" in response
    assert response.endswith(b"\x89PNG")


def test_site_bad_handler_result_is_502(gateway):
    response = raw_http(gateway, b"GET /broken HTTP/1.0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 502")


def test_http_event_carries_body_and_query(gateway, stub):
    raw_http(
        gateway,
        b"POST /form?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nb=2",
    )
    event = stub.events[-1]
    assert (event["httpMethod"], event["path"], event["body"]) == ("POST", "/form", "b=2")
    assert event["queryStringParameters"] == {"a": "1"}
    raw_http(
        gateway,
        b"POST /bin HTTP/1.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n\xff\xfe",
    )
    assert stub.events[-1]["isBase64Encoded"] is True


def test_management_api_edge_cases(gateway):
    import urllib.error
    import urllib.request

    with connect(gateway.websocket_url) as ws:
        wait_for(lambda: gateway.connections)
        connection_id = next(iter(gateway.connections))
        url = f"{gateway.management_url}/@connections/{connection_id}"
        for method, data, code in (("PUT", b"", 405), ("POST", b"x" * (128 * 1024 + 1), 413)):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(urllib.request.Request(url, data=data, method=method))
            assert error.value.code == code
        info = json.loads(urllib.request.urlopen(url).read())
        assert set(info) == {"connectedAt", "identity", "lastActiveAt"}
        ws.close()


def test_vanished_client_is_an_abnormal_closure(gateway, stub):
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as conn:
        conn.sendall(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert conn.recv(4096).startswith(b"HTTP/1.1 101")
    wait_for(lambda: stub.of_type("DISCONNECT"))
    assert stub.of_type("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1006


def test_a_client_that_stops_reading_does_not_hold_up_senders(gateway, stub):
    """API Gateway answers a POST at once however slowly the client reads: a handler sending
    to a stuck browser must not wait on it (it would stall every socket the handler serves).
    Past a few MiB unsent, the stuck client is dropped and the POST says 410."""
    import urllib.error
    import urllib.request

    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as stuck:
        stuck.sendall(
            b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert stuck.recv(4096).startswith(b"HTTP/1.1 101")  # and never reads again
        wait_for(lambda: gateway.connections)
        url = f"{gateway.management_url}/@connections/{next(iter(gateway.connections))}"
        codes = []
        for _ in range(400):
            request = urllib.request.Request(url, data=b"x" * (120 * 1024), method="POST")
            try:
                codes.append(urllib.request.urlopen(request, timeout=5).status)
            except urllib.error.HTTPError as error:
                codes.append(error.code)
                break
        assert codes[-1] == 410 and set(codes[:-1]) == {200}
        wait_for(lambda: stub.of_type("DISCONNECT"))
        assert stub.of_type("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1006
        with connect(gateway.websocket_url) as ws:
            wait_for(lambda: gateway.connections)
            other = f"{gateway.management_url}/@connections/{next(iter(gateway.connections))}"
            urllib.request.urlopen(urllib.request.Request(other, data=b"hi", method="POST"))
            assert ws.recv(timeout=5) == "hi"


def test_connect_handler_crash_refuses_the_handshake(gateway, stub):
    def crash(event, context):
        raise RuntimeError("connect bug")

    gateway.handler = crash
    with pytest.raises(InvalidStatus) as refused:
        connect(gateway.websocket_url)
    assert refused.value.response.status_code == 500


def test_a_burst_of_connections_waits_in_the_listen_queue(gateway):
    """A fan-out opens one @connections connection per recipient at once. While the loop is
    busy they must wait in the kernel's accept queue: a dropped SYN costs the sender 1 s."""
    gateway.server.get_loop().call_soon_threadsafe(time.sleep, 1.0)  # accept() stalls
    time.sleep(0.1)
    sockets = []
    try:
        for _ in range(150):  # asyncio's default backlog (100) would drop some of these
            sockets.append(socket.create_connection(("127.0.0.1", gateway.port), timeout=0.5))
    finally:
        for conn in sockets:
            conn.close()
    assert len(sockets) == 150


def test_stop_keeps_answering_the_sends_of_running_handlers(gateway, stub):
    """A $disconnect still running when stop() stops waiting gets its sends answered, not
    refused; new requests other than @connections get 503."""
    import urllib.error
    import urllib.request

    outcomes = []

    def slow_disconnect(event, context):
        context_ = event.get("requestContext", {})
        if context_.get("eventType") == "DISCONNECT":
            time.sleep(0.5)  # longer than the grace period below
            url = f"{gateway.management_url}/@connections/{context_['connectionId']}"
            try:
                urllib.request.urlopen(urllib.request.Request(url, data=b"{}"), timeout=5)
            except urllib.error.HTTPError as error:
                outcomes.append(error.code)
            except urllib.error.URLError as error:
                outcomes.append(str(error.reason))
            try:  # anything but @connections is turned away while stopping
                urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/", timeout=5)
            except urllib.error.HTTPError as error:
                outcomes.append(error.code)
        return StubHandler.__call__(stub, event, context)

    gateway.handler = slow_disconnect
    gateway.disconnect_grace_seconds = 0.1
    with connect(gateway.websocket_url):
        wait_for(lambda: gateway.connections)
        loop = gateway.server.get_loop()
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(30)
    assert outcomes == [410, 503]


def test_two_hosts_and_a_site_stage_as_on_aws(two_host_gateway, stub):
    gateway = two_host_gateway
    assert gateway.site_url == f"http://127.0.0.1:{gateway.port}/dev/"
    assert gateway.websocket_url == f"ws://localhost:{gateway.port}/production"
    site = f"Host: 127.0.0.1:{gateway.port}\r\nConnection: close\r\n\r\n".encode()
    response = raw_http(gateway, b"GET /dev/rooms/general/?a=1 HTTP/1.1\r\n" + site)
    assert response.startswith(b"HTTP/1.1 200")
    event = stub.events[-1]
    # REST API v1 behind a stage: path after the stage, the whole path in the context.
    assert (event["path"], event["requestContext"]["path"]) == (
        "/rooms/general/",
        "/dev/rooms/general/",
    )
    assert event["requestContext"]["stage"] == "dev"
    raw_http(gateway, b"GET /dev HTTP/1.1\r\n" + site)
    assert (stub.events[-1]["path"], stub.events[-1]["requestContext"]["path"]) == ("/", "/dev")
    served = len(stub.events)
    outside = raw_http(gateway, b"GET /rooms/general/ HTTP/1.1\r\n" + site)
    socket_host = f"Host: LOCALHOST:{gateway.port}\r\nConnection: close\r\n\r\n".encode()
    on_socket_host = raw_http(gateway, b"GET /dev/ HTTP/1.1\r\n" + socket_host)
    for response in (outside, on_socket_host):
        assert response.startswith(b"HTTP/1.1 403") and response.endswith(
            b'{"message":"Forbidden"}'
        )
    assert len(stub.events) == served  # neither reached the site
    with connect(gateway.websocket_url, open_timeout=5) as client:
        client.send(json.dumps({"action": "sendmessage"}))
        assert json.loads(client.recv(5)) == {"route": "sendmessage"}
    (connect_event,) = stub.of_type("CONNECT")
    assert connect_event["requestContext"]["domainName"] == f"localhost:{gateway.port}"


@pytest.mark.django_db
def test_pages_are_told_the_socket_host(stub):
    from django_aws_api_gateway_websockets.management.commands.runapigateway import (
        register_local_gateway,
    )
    from django_aws_api_gateway_websockets.mixins import AddWebSocketRouteToContextMixin

    server = LocalApiGateway(stub, port=8001, stage="local", socket_host="localhost")
    record = register_local_gateway(server)
    assert (record.api_endpoint, record.management_endpoint_url) == (
        "ws://localhost:8001",
        "http://127.0.0.1:8001/local",
    )
    assert AddWebSocketRouteToContextMixin().get_websocket_url() == "ws://localhost:8001/local"


@pytest.mark.parametrize("site_stage", ["a b", "dev/x", "local"])
def test_a_site_stage_must_be_a_name_other_than_the_socket_stage(site_stage):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--site-stage"):
        call_command("runapigateway", "--site-stage", site_stage)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def gateway_records():
    """What the gateway logs (its own handler: the Lambda handler's logging may have turned
    propagation off on the library's loggers)."""
    logger = logging.getLogger("django_aws_api_gateway_websockets.local_gateway")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def gateway_log():
    with gateway_records() as records:
        yield records


def raw_socket(gateway) -> socket.socket:
    """A WebSocket opened by hand, so the test decides how it ends."""
    conn = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    conn.sendall(
        b"GET /dev HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert conn.recv(4096).startswith(b"HTTP/1.1 101")
    return conn


def masked_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset, as a killed browser or a dropped network does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def went_away(records):
    return [r for r in records if r.getMessage().startswith("Client went away")]


def test_a_browser_navigating_away_is_not_an_error(gateway, stub, gateway_log):
    """It sends its close frame (1001) and closes the socket without waiting for ours: our
    close frame meets a reset, and half-closing then fails with ENOTCONN."""
    for _ in range(3):
        conn = raw_socket(gateway)
        conn.sendall(masked_frame(0x8, struct.pack("!H", 1001)))
        conn.close()
    wait_for(lambda: len(stub.of_type("DISCONNECT")) == 3)
    codes = [e["requestContext"]["disconnectStatusCode"] for e in stub.of_type("DISCONNECT")]
    assert codes == [1001, 1001, 1001]
    assert [r for r in gateway_log if r.levelno >= logging.WARNING] == []
    assert all(r.levelno == logging.INFO and not r.exc_info for r in went_away(gateway_log))
    assert len(went_away(gateway_log)) <= 3


def test_a_client_that_drops_its_connection_is_one_info_line(gateway, stub, gateway_log):
    conn = raw_socket(gateway)
    conn.sendall(masked_frame(0x1, b'{"action": "sendmessage"}'))
    reset(conn)
    wait_for(lambda: stub.of_type("DISCONNECT"))
    assert stub.of_type("DISCONNECT")[0]["requestContext"]["disconnectStatusCode"] == 1006
    (line,) = went_away(gateway_log)
    assert line.levelno == logging.INFO and not line.exc_info
    assert "Connection reset by peer" in line.getMessage()
    assert [r for r in gateway_log if r.levelno >= logging.WARNING] == []


def test_a_page_request_abandoned_before_its_answer_is_one_info_line(gateway, gateway_log):
    conn = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    conn.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.1)  # the handler is running
    reset(conn)
    wait_for(lambda: went_away(gateway_log))
    time.sleep(0.1)
    (line,) = went_away(gateway_log)
    assert line.levelno == logging.INFO and not line.exc_info
    assert [r for r in gateway_log if r.levelno >= logging.WARNING] == []
