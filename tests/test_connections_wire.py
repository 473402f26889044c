"""Exactly once on the wire: the signed-HTTP fan-out against real HTTP/1.1 servers that drop,
close, answer HTTP/1.0, frame bodies every legal way, throttle and fail.

Every test counts what the server received per connection id: a request is never written
twice (``requests``), so nothing is delivered twice (``handled``), and the report's figures
equal what the server answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from unittest.mock import patch

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from django_aws_api_gateway_websockets import connections_http
from django_aws_api_gateway_websockets.connections_http import (
    FanOut,
    Signer,
    Target,
    address_for,
    connection_path,
    shared_transport,
    target_for,
)
from django_aws_api_gateway_websockets.send_policy import Outcome
from tests.wire_servers import Behaviour, WireServer, chunked, response

PAYLOAD = b'{"type":"chat","text":"hi"}'
LOGGER = "django_aws_api_gateway_websockets.connections_http"


@pytest.fixture
def servers():
    started: list[WireServer] = []

    def start(behaviour: Behaviour | None = None, **kwargs) -> WireServer:
        server = WireServer(behaviour, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def target_of(server: WireServer, *, scheme: str = "http", host: str = "127.0.0.1", **kw):
    fields = {
        "scheme": scheme,
        "host": host,
        "port": server.port if server else 9,
        "base_path": "/prod",
        "region": "us-east-1",
        "ca_bundle": "",
        "access_key": "AKIDTEST",
        "secret_key": "secret",
        "token": None,
    }
    fields.update(kw)
    return Target(**fields)


def broadcast(target: Target, ids: list[str], *, max_retries: int = 3, concurrency: int = 8):
    """Outcome per connection id of one fan-out of ``PAYLOAD``."""
    outcomes: dict[str, str] = {}
    lock = threading.Lock()

    def record(connection_id: str, outcome: str) -> None:
        with lock:
            assert connection_id not in outcomes, "one outcome per connection"
            outcomes[connection_id] = outcome

    fan_out = FanOut(
        concurrency=concurrency, max_retries=max_retries, base_delay=0.001, on_result=record
    )
    signer = Signer(target, PAYLOAD)
    for connection_id in ids:
        fan_out.submit(target, signer, PAYLOAD, connection_id)
    fan_out.close()
    assert set(outcomes) == set(ids)
    return outcomes


def ids_of(count: int, prefix: str = "c") -> list[str]:
    return [f"{prefix}{n}=" for n in range(count)]


def failure_lines(caplog) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and record.levelno >= logging.WARNING
    ]


# --------------------------------------------------------------------------- keep-alive


def test_keep_alive_connections_are_reused_across_broadcasts(servers):
    server = servers()
    target = target_of(server)
    ids = ids_of(50)

    for _ in range(3):
        assert set(broadcast(target, ids).values()) == {Outcome.DELIVERED}

    assert server.requests == Counter({cid: 3 for cid in ids})
    # The pool outlives each broadcast: no more sockets than requests in flight at once.
    assert server.connections <= 8


# --------------------------------------------------------------------------- (a) drops


def test_a_request_the_server_read_but_never_answered_is_not_resent(servers, caplog):
    """The issue's case: every 4th request on a socket is handled, then the socket dropped."""
    server = servers(Behaviour(drop_every=4))
    target = target_of(server)
    ids = ids_of(200)

    reports = []
    for round_number in (1, 2):
        outcomes = Counter(broadcast(target, ids).values())
        reports.append(outcomes)
        # Written once per broadcast, so handled at most once per broadcast.
        assert server.requests == Counter({cid: round_number for cid in ids})
        assert max(server.handled.values()) <= round_number

    answered = sum(server.answered.values())
    assert sum(report[Outcome.DELIVERED] for report in reports) == answered
    failed = sum(report[Outcome.FAILED] for report in reports)
    assert failed == 400 - answered and failed > 0
    # Honest: failures are counted and logged once per kind, not once per connection.
    lines = failure_lines(caplog)
    assert len(lines) == 2  # one per broadcast
    assert all("not resent" in line and "closed without a response" in line for line in lines)


# --------------------------------------------------------------------------- (b) idle close


def test_connections_the_server_closed_while_idle_are_retired_before_reuse(servers, caplog):
    server = servers(Behaviour(idle_timeout=0.2))
    target = target_of(server)
    ids = ids_of(30)

    assert set(broadcast(target, ids).values()) == {Outcome.DELIVERED}
    opened = server.connections
    time.sleep(0.6)  # the server closes every idle socket meanwhile
    assert set(broadcast(target, ids).values()) == {Outcome.DELIVERED}

    assert server.requests == Counter({cid: 2 for cid in ids})
    assert server.connections > opened  # fresh sockets replaced the dead ones
    assert failure_lines(caplog) == []


def test_a_server_that_closes_after_every_answer_never_gets_a_request_twice(servers):
    server = servers(Behaviour(close_after_reply=True))
    target = target_of(server)
    ids = ids_of(60)

    outcomes = broadcast(target, ids, concurrency=4)

    # Most answers' FIN is seen before reuse; a request that still raced the close is lost
    # honestly (a failure), never written again.
    assert max(server.requests.values()) == 1
    assert set(outcomes.values()) <= {Outcome.DELIVERED, Outcome.FAILED}
    delivered = {cid for cid, outcome in outcomes.items() if outcome == Outcome.DELIVERED}
    assert delivered == set(server.answered)
    assert sum(server.handled.values()) == len(delivered)
    assert len(delivered) >= 30


def test_idle_connections_are_retired_after_max_idle(servers, monkeypatch):
    monkeypatch.setattr(connections_http, "MAX_IDLE_SECONDS", 0.05)
    server = servers()
    target = target_of(server)
    ids = ids_of(8)

    broadcast(target, ids)
    first = server.connections
    time.sleep(0.15)
    broadcast(target, ids)

    assert server.requests == Counter({cid: 2 for cid in ids})
    assert server.connections == 2 * first  # none of the old ones was reused


def test_idle_connections_are_closed_on_time_even_if_their_endpoint_is_never_used_again(
    servers, monkeypatch
):
    """A container that broadcast once to each of several gateways must not keep their
    sockets (up to ``http_concurrency`` each, in CLOSE_WAIT once the server gives up) until
    each endpoint is posted to again: a timer on the loop retires them when they expire."""
    monkeypatch.setattr(connections_http, "MAX_IDLE_SECONDS", 0.1)
    connections_http.close_shared_transport()  # count this test's connections only
    used = [servers() for _ in range(3)]
    for server in used:
        assert set(broadcast(target_of(server), ids_of(16)).values()) == {Outcome.DELIVERED}
    opened = sum(server.connections for server in used)

    # Nothing is posted again: only the sweep can close them.
    wait_for(lambda: sum(server.closed_by_client for server in used) == opened)
    assert shared_transport().connection_counts() == {
        "opened": opened,
        "retired": opened,
        "idle": 0,
    }


# --------------------------------------------------------------------------- (c) framing


def test_http_1_0_answers_are_read_and_their_connections_not_reused(servers):
    server = servers(Behaviour(reply=lambda *_: response(version="HTTP/1.0")))
    ids = ids_of(20)

    assert set(broadcast(target_of(server), ids).values()) == {Outcome.DELIVERED}

    assert server.requests == Counter({cid: 1 for cid in ids})
    assert server.connections == 20


def test_http_1_0_keep_alive_answers_keep_the_connection(servers):
    server = servers(
        Behaviour(
            reply=lambda *_: response(version="HTTP/1.0", headers=("Connection: keep-alive",))
        )
    )
    ids = ids_of(40)

    assert set(broadcast(target_of(server), ids, concurrency=4).values()) == {Outcome.DELIVERED}
    assert server.connections <= 4


@pytest.mark.parametrize(
    ("raw", "outcome"),
    [
        (response(body=b'{"ok":true}', length=False), Outcome.DELIVERED),
        (
            response(
                "410 Gone",
                headers=("x-amzn-ErrorType: GoneException",),
                body=b'{"message":"Gone"}',
                length=False,
            ),
            Outcome.GONE,
        ),
        (response(version="HTTP/1.0", body=b"done", length=False), Outcome.DELIVERED),
    ],
    ids=["200", "410", "http-1.0"],
)
def test_bodies_delimited_by_the_connection_closing(servers, raw, outcome):
    server = servers(Behaviour(reply=lambda *_: raw))
    ids = ids_of(12)

    assert set(broadcast(target_of(server), ids).values()) == {outcome}
    assert server.requests == Counter({cid: 1 for cid in ids})
    assert server.connections == 12  # a close-delimited body ends its connection


def test_chunked_bodies_with_trailers_keep_the_connection_in_step(servers):
    def reply(server, connection_id, number):
        if connection_id.startswith("gone"):
            return chunked("410 Gone", b'{"__type":"GoneException","message":"Gone"}')
        return chunked("200 OK", b'{"status":"accepted","padding":"xxxxxxxx"}')

    server = servers(Behaviour(reply=reply))
    ids = ids_of(30) + ids_of(10, "gone")

    outcomes = broadcast(target_of(server), ids, concurrency=4)

    assert Counter(outcomes.values()) == Counter({Outcome.DELIVERED: 30, Outcome.GONE: 10})
    assert all(outcomes[cid] == Outcome.GONE for cid in ids_of(10, "gone"))
    # Trailers were consumed: every socket carried many requests without getting out of step.
    assert server.connections <= 4


def test_interim_100_continue_is_skipped(servers):
    server = servers(Behaviour(reply=lambda *_: b"HTTP/1.1 100 Continue\r\n\r\n" + response()))
    assert set(broadcast(target_of(server), ids_of(10)).values()) == {Outcome.DELIVERED}
    assert server.connections <= 8


# --------------------------------------------------------------------------- (d) throttling


@pytest.mark.parametrize(
    "throttled",
    [
        response("429 Too Many Requests", headers=("x-amzn-ErrorType: LimitExceededException",)),
        response("429 Too Many Requests", headers=("x-amzn-ErrorType: TooManyRequestsException",)),
        response("400 Bad Request", body=b'{"__type":"TooManyRequestsException"}'),
        response("429 Too Many Requests", body=b'{"message":"Too Many Requests"}'),
    ],
    ids=["limit-exceeded", "too-many-requests-header", "too-many-requests-body", "bare-429"],
)
def test_throttled_posts_are_retried_until_delivered(servers, throttled):
    server = servers(
        Behaviour(reply=lambda _s, _cid, number: throttled if number <= 2 else response())
    )
    ids = ids_of(20)

    assert set(broadcast(target_of(server), ids).values()) == {Outcome.DELIVERED}

    assert server.requests == Counter({cid: 3 for cid in ids})
    assert server.handled == Counter({cid: 1 for cid in ids})


def test_a_throttling_storm_fails_each_post_after_its_retries_with_one_log_line(servers, caplog):
    storm = response(
        "429 Too Many Requests", headers=("x-amzn-ErrorType: TooManyRequestsException",)
    )
    server = servers(Behaviour(reply=lambda *_: storm))
    ids = ids_of(40)

    outcomes = broadcast(target_of(server), ids, max_retries=2)

    # Still throttled after the last retry: its own outcome, counted as failed in reports.
    assert set(outcomes.values()) == {Outcome.THROTTLED}
    assert all(outcome.failed for outcome in outcomes.values())
    assert server.requests == Counter({cid: 3 for cid in ids})
    assert server.handled == Counter()
    (line,) = failure_lines(caplog)
    assert line.startswith("40 post(s)") and "throttled" in line


# --------------------------------------------------------------------------- faults


def test_server_errors_are_failures_never_retried(servers, caplog):
    def reply(server, connection_id, number):
        if connection_id.startswith("bad"):
            return response("500 Internal Server Error", body=b'{"message":"Internal"}')
        return response()

    server = servers(Behaviour(reply=reply))
    ids = ids_of(10) + ids_of(5, "bad")

    outcomes = Counter(broadcast(target_of(server), ids).values())

    assert outcomes == Counter({Outcome.DELIVERED: 10, Outcome.FAILED: 5})
    assert server.requests == Counter({cid: 1 for cid in ids})
    (line,) = failure_lines(caplog)
    assert line.startswith("5 post(s)") and "HTTP 500" in line


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_endpoint_is_one_counted_failure_per_connection(caplog):
    target = target_of(None, port=closed_port())

    outcomes = broadcast(target, ids_of(25))

    assert set(outcomes.values()) == {Outcome.FAILED}
    (line,) = failure_lines(caplog)
    assert line.startswith("25 post(s)")


def test_a_dns_failure_is_counted_not_raised(caplog):
    target = target_of(None, host="no-such-host.invalid", port=443, scheme="https")

    outcomes = broadcast(target, ids_of(5))

    assert set(outcomes.values()) == {Outcome.FAILED}
    (line,) = failure_lines(caplog)
    assert line.startswith("5 post(s)") and "no-such-host.invalid" in line


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return str(cert), context


def test_tls_with_the_endpoints_ca_bundle_delivers_over_kept_connections(servers, certificate):
    cert, context = certificate
    server = servers(tls=context)
    target = target_of(server, scheme="https", ca_bundle=cert)
    ids = ids_of(30)

    for _ in range(2):
        assert set(broadcast(target, ids, concurrency=4).values()) == {Outcome.DELIVERED}
    assert server.requests == Counter({cid: 2 for cid in ids})
    assert server.connections <= 4


def test_an_untrusted_certificate_is_a_counted_failure_and_nothing_is_sent(
    servers, certificate, caplog
):
    _, context = certificate
    server = servers(tls=context)
    target = target_of(server, scheme="https")  # certifi's bundle does not trust it

    outcomes = broadcast(target, ids_of(6))

    assert set(outcomes.values()) == {Outcome.FAILED}
    assert server.requests == Counter()
    (line,) = failure_lines(caplog)
    assert "certificate" in line.lower()


def test_a_plain_http_server_behind_an_https_url_is_a_tls_failure(caplog):
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_in_plain_http() -> None:
        with contextlib.suppress(OSError):
            while True:
                sock, _ = listener.accept()
                sock.sendall(response("400 Bad Request"))
                sock.close()

    threading.Thread(target=answer_in_plain_http, daemon=True).start()
    target = target_of(None, scheme="https", port=listener.getsockname()[1])
    try:
        outcomes = broadcast(target, ids_of(4))
    finally:
        listener.close()
    assert set(outcomes.values()) == {Outcome.FAILED}
    (line,) = failure_lines(caplog)
    assert "ssl" in line.lower() or "tls" in line.lower()


# --------------------------------------------------------------------------- opened ahead


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_connection_opened_ahead_carries_the_first_post(servers):
    server = servers()
    target = target_of(server)
    connections_http.close_shared_transport()

    for _ in range(3):  # asked again while one is pending or idle: still one
        shared_transport().preconnect(target.address, 8)
    # The server may accept before the loop has pooled the connection, or after: wait for both.
    wait_for(
        lambda: server.connections == 1 and shared_transport().connection_counts()["idle"] == 1
    )

    assert broadcast(target, ids_of(1), concurrency=8) == {"c0=": Outcome.DELIVERED}
    assert server.connections == 1
    assert server.requests == Counter({"c0=": 1})


def test_a_post_that_arrives_mid_handshake_takes_that_connection(servers, certificate):
    """The overlap the first send of a process relies on: the post waits for the handshake
    already under way instead of starting a second one."""
    cert, context = certificate
    server = servers(tls=context, handshake_delay=0.3)
    target = target_of(server, scheme="https", ca_bundle=cert)
    connections_http.close_shared_transport()

    shared_transport().preconnect(target.address, 4)
    wait_for(lambda: server.connections == 1)  # accepted; the TLS handshake is held back

    assert broadcast(target, ids_of(1), concurrency=4) == {"c0=": Outcome.DELIVERED}
    assert server.connections == 1
    assert server.requests == Counter({"c0=": 1})


def test_an_early_open_that_fails_leaves_the_post_to_try_and_report(caplog):
    target = target_of(None, port=closed_port())
    connections_http.close_shared_transport()

    shared_transport().preconnect(target.address, 8)
    outcomes = broadcast(target, ids_of(1), concurrency=8)

    assert outcomes == {"c0=": Outcome.FAILED}
    (line,) = failure_lines(caplog)  # the post's own failure, once; the early one is debug
    assert line.startswith("1 post(s)")


def test_closing_the_transport_during_an_early_open_leaves_nothing_behind(servers, certificate):
    cert, context = certificate
    server = servers(tls=context, handshake_delay=0.5)
    target = target_of(server, scheme="https", ca_bundle=cert)
    connections_http.close_shared_transport()
    transport = shared_transport()
    transport.preconnect(target.address, 4)
    wait_for(lambda: server.connections == 1)

    connections_http.close_shared_transport()

    assert not transport.thread.is_alive()
    assert transport.loop.is_closed()
    assert broadcast(target, ids_of(1), concurrency=4) == {"c0=": Outcome.DELIVERED}


@pytest.mark.parametrize(
    "variables",
    [{}, {"AWS_CA_BUNDLE": "aws.pem"}, {"REQUESTS_CA_BUNDLE": "requests.pem"}],
    ids=["as-on-lambda", "aws-ca-bundle", "requests-ca-bundle"],
)
def test_the_early_address_is_the_one_a_real_client_sends_to(monkeypatch, tmp_path, variables):
    """``address_for`` (before the client exists) must name the pool ``target_for`` uses."""
    url = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, str(tmp_path / value))
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )
    assert connections_http.address_for(url) == target_for(client).address
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert connections_http.address_for(url) is None  # proxies stay boto3's business


def test_a_pool_closed_as_its_early_open_finishes_closes_that_connection(servers):
    """The transport closing in the very loop iteration the early open completed (its result
    not yet pooled) must not leave that socket open."""
    server = servers()
    address = target_of(server).address

    async def scenario():
        pool = connections_http._Pool(address, 4)
        pool.warm()
        task = pool.warming
        while not task.done():
            await asyncio.sleep(0)
        assert pool.warming is task and not pool.idle  # opened, not yet pooled
        pool.close()
        await asyncio.sleep(0)
        return task.result()

    connection = asyncio.run(scenario())

    assert connection.writer.is_closing()
    wait_for(lambda: server.closed_by_client == 1)


def test_a_post_cancelled_once_its_early_connection_opened_leaves_that_connection_pooled(
    servers,
):
    server = servers()
    address = target_of(server).address
    request = b"POST /prod/@connections/x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"

    async def scenario():
        pool = connections_http._Pool(address, 4)
        pool.warm()
        opening = pool.warming
        post = asyncio.create_task(pool.post(request))
        await asyncio.sleep(0)
        assert pool.warming is None  # the post claimed the open under way
        while not opening.done():
            await asyncio.sleep(0)
        post.cancel()  # before the post resumed with the connection
        with pytest.raises(asyncio.CancelledError):
            await post
        idle = list(pool.idle)
        pool.close()
        await asyncio.sleep(0)
        return opening.result(), idle

    connection, idle = asyncio.run(scenario())

    assert server.requests == Counter()  # nothing was written on it
    assert idle == [connection]  # kept for the next post, not lost
    wait_for(lambda: server.closed_by_client == 1)  # and closed with its pool


PROXY = "http://proxy.internal:3128"
GATEWAY = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
LOCAL = "http://gw.internal:3001/prod"


@pytest.mark.parametrize(
    ("url", "variables"),
    [
        (LOCAL, {"http_proxy": PROXY}),
        (LOCAL, {"HTTP_PROXY": PROXY}),
        (LOCAL, {"HTTPS_PROXY": PROXY}),  # only for https:// endpoints
        (GATEWAY, {"https_proxy": PROXY}),
        (GATEWAY, {"HTTP_PROXY": PROXY}),  # only for http:// endpoints
        (GATEWAY, {"HTTPS_PROXY": PROXY, "NO_PROXY": "amazonaws.com"}),
        (LOCAL, {"http_proxy": PROXY, "no_proxy": "gw.internal"}),
        (LOCAL, {"http_proxy": PROXY, "no_proxy": "*"}),
        (LOCAL, {"http_proxy": PROXY, "no_proxy": "elsewhere.internal"}),
    ],
)
def test_the_signed_path_goes_direct_exactly_where_botocore_would(monkeypatch, url, variables):
    """Through a proxy boto3 sends; where botocore would connect directly (no proxy for the
    endpoint's scheme, or ``no_proxy`` exempts its host) the signed path may too."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )
    botocore_direct = client._endpoint.http_session._proxy_config.proxy_url_for(url) is None

    assert (target_for(client) is not None) == botocore_direct
    assert (address_for(url) is not None) == botocore_direct


def test_an_ipv6_literal_endpoint_is_addressed_and_signed_as_botocore_does(servers):
    server = servers(host="::1")
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=server.url,
        region_name="us-east-1",
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
    )
    target = target_for(client)

    assert broadcast(target, ids_of(1)) == {"c0=": Outcome.DELIVERED}
    client.post_to_connection(ConnectionId="boto3=", Data=PAYLOAD)  # botocore's own request
    assert server.hosts == Counter({f"[::1]:{server.port}": 2})

    path = connection_path(target, "c0=")
    now = time.time()
    ours = dict(Signer(target, PAYLOAD).headers(path, now))
    request = AWSRequest(method="POST", url=f"http://[::1]:{server.port}{path}", data=PAYLOAD)
    # botocore's signing clock, frozen at our instant (both sign the same second).
    frozen = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    with patch("botocore.auth.get_current_datetime", return_value=frozen):
        SigV4Auth(Credentials("AKIDTEST", "secret"), "execute-api", "us-east-1").add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]


# --------------------------------------------------------------------------- closing under a post


def run_within(function, seconds: float = 5.0) -> None:
    """Run ``function`` in a thread and fail (rather than hang the suite) if it blocks."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            function()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if errors:
        raise errors[0]


@pytest.fixture
def held_server(servers):
    """A server that reads every request and answers none until the test ends."""
    release = threading.Event()

    def held(server: WireServer, connection_id: str, number: int) -> bytes:
        release.wait(10)
        return response()

    yield servers(Behaviour(reply=held))
    release.set()


def posts_in_flight(server: WireServer) -> tuple[FanOut, dict[str, str], list[str]]:
    """A fan-out whose posts (one batch) were written to ``server`` and wait for answers."""
    count = connections_http.SUBMIT_BATCH  # a full batch is handed to the loop at once
    outcomes: dict[str, str] = {}
    fan_out = FanOut(
        concurrency=count, max_retries=0, base_delay=0.0, on_result=outcomes.__setitem__
    )
    target = target_of(server)
    signer = Signer(target, PAYLOAD)
    for connection_id in ids_of(count):
        fan_out.submit(target, signer, PAYLOAD, connection_id)
    wait_for(lambda: sum(server.requests.values()) == count)
    return fan_out, outcomes, ids_of(count)


def test_closing_the_transport_under_a_broadcast_fails_its_posts_instead_of_hanging(
    held_server, caplog
):
    """What SnapStart's ``before_snapshot`` or a shutdown hook may do from another thread."""
    fan_out, outcomes, ids = posts_in_flight(held_server)

    connections_http.close_shared_transport()
    run_within(fan_out.close)

    # They were written: failed, not resent, one log line for the lot.
    assert outcomes == {cid: Outcome.FAILED for cid in ids}
    (line,) = failure_lines(caplog)
    assert line.startswith(f"{len(ids)} post(s)") and "not resent" in line
    assert held_server.requests == Counter({cid: 1 for cid in ids})


def test_a_post_cancelled_on_the_loop_is_a_counted_failure_and_close_returns(
    held_server, servers, caplog
):
    fan_out, outcomes, ids = posts_in_flight(held_server)
    loop = shared_transport().loop

    async def cancel_the_posts() -> None:
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run_coroutine_threadsafe(cancel_the_posts(), loop).result(5)
    run_within(fan_out.close)

    assert outcomes == {cid: Outcome.FAILED for cid in ids}
    (line,) = failure_lines(caplog)
    assert line.startswith(f"{len(ids)} post(s)")
    # The loop lives on: the next broadcast is sent.
    assert broadcast(target_of(servers()), ids_of(2)) == dict.fromkeys(ids_of(2), Outcome.DELIVERED)


def test_a_connections_posts_go_in_order_and_stop_at_the_first_not_delivered(servers):
    """``submit_posts`` (a message's parts): one outcome per connection; after a 410 or a
    failure the rest is not written."""

    def reply(server: WireServer, connection_id: str, number: int) -> bytes:
        if connection_id == "gone=" and number == 2:
            return response("410 Gone", headers=("x-amzn-ErrorType: GoneException",))
        if connection_id == "bad=" and number == 1:
            return response("500 Internal Server Error")
        return response()

    server = servers(Behaviour(reply=reply))
    target = target_of(server)
    posts = [(Signer(target, body), body) for body in (b'{"i":0}', b'{"i":1}', b'{"i":2}')]
    outcomes: dict[str, str] = {}
    fan_out = FanOut(concurrency=4, max_retries=0, base_delay=0.0, on_result=outcomes.__setitem__)
    for connection_id in ("ok=", "gone=", "bad="):
        fan_out.submit_posts(target, posts, connection_id)
    fan_out.close()

    assert outcomes == {"ok=": Outcome.DELIVERED, "gone=": Outcome.GONE, "bad=": Outcome.FAILED}
    assert server.bodies["ok="] == [b'{"i":0}', b'{"i":1}', b'{"i":2}']
    assert server.bodies["gone="] == [b'{"i":0}', b'{"i":1}']
    assert server.bodies["bad="] == [b'{"i":0}']


def test_closing_the_transport_between_a_connections_posts_is_a_failure_not_a_delivery(
    servers, caplog
):
    """The first part was answered 200, the second is held when the loop closes: the
    connection did not get the message, so it is failed (and the third is never written)."""
    release = threading.Event()

    def reply(server: WireServer, connection_id: str, number: int) -> bytes:
        if number == 2:
            release.wait(10)
        return response()

    server = servers(Behaviour(reply=reply))
    target = target_of(server)
    posts = [(Signer(target, body), body) for body in (b'{"i":0}', b'{"i":1}', b'{"i":2}')]
    outcomes: dict[str, str] = {}
    fan_out = FanOut(concurrency=4, max_retries=0, base_delay=0.0, on_result=outcomes.__setitem__)
    try:
        fan_out.submit_posts(target, posts, "c=")
        fan_out._flush()
        wait_for(lambda: server.requests["c="] == 2)
        connections_http.close_shared_transport()
        run_within(fan_out.close)
    finally:
        release.set()

    assert outcomes == {"c=": Outcome.FAILED}
    assert server.requests["c="] == 2
    (line,) = failure_lines(caplog)
    assert connections_http.TRANSPORT_GONE in line


def test_a_broadcast_whose_loop_died_is_counted_failed_not_waited_for(held_server, caplog):
    fan_out, outcomes, ids = posts_in_flight(held_server)
    transport = shared_transport()

    transport.loop.call_soon_threadsafe(transport.loop.stop)  # the loop thread ends
    transport.thread.join(5)
    try:
        run_within(fan_out.close)
    finally:
        run_within(connections_http.close_shared_transport)  # a dead loop is closed too

    assert outcomes == {cid: Outcome.FAILED for cid in ids}
    (line,) = failure_lines(caplog)
    assert line.startswith(f"{len(ids)} post(s)")


def test_posts_handed_to_a_closed_transport_are_failed_not_raised_nor_waited_for(caplog):
    outcomes: dict[str, str] = {}
    fan_out = FanOut(concurrency=4, max_retries=0, base_delay=0.0, on_result=outcomes.__setitem__)
    connections_http.close_shared_transport()  # closed under it, before its first post
    target = target_of(None)
    signer = Signer(target, PAYLOAD)
    ids = ids_of(connections_http.SUBMIT_BATCH + 5)  # more than its 16 places, too

    def send() -> None:
        for connection_id in ids:
            fan_out.submit(target, signer, PAYLOAD, connection_id)
        fan_out.close()

    run_within(send)

    assert outcomes == {cid: Outcome.FAILED for cid in ids}
    (line,) = failure_lines(caplog)
    assert line.startswith(f"{len(ids)} post(s)")


# --------------------------------------------------------------------------- process machinery


def test_one_loop_serves_broadcasts_from_many_threads(servers):
    server = servers()
    target = target_of(server)
    results: dict[int, dict[str, str]] = {}

    def run(number: int) -> None:
        results[number] = broadcast(target, ids_of(25, f"t{number}-"))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert all(set(outcomes.values()) == {Outcome.DELIVERED} for outcomes in results.values())
    assert len(results) == 4
    assert server.requests == Counter({cid: 1 for n in range(4) for cid in ids_of(25, f"t{n}-")})
    assert shared_transport().thread.name == "ws-connections"
    assert [t.name for t in threading.enumerate()].count("ws-connections") == 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_loop_and_the_parent_keeps_its_connections(servers):
    server = servers()
    target = target_of(server)
    ids = ids_of(8)
    broadcast(target, ids)
    parent_transport = shared_transport()
    opened = server.connections

    pid = os.fork()
    if pid == 0:  # the child: the parent's loop thread does not exist here
        code = 1
        try:
            outcomes = broadcast(target, ids_of(8, "child"))
            fresh = shared_transport() is not parent_transport
            code = 0 if fresh and set(outcomes.values()) == {Outcome.DELIVERED} else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert set(broadcast(target, ids).values()) == {Outcome.DELIVERED}
    assert shared_transport() is parent_transport
    assert server.requests == Counter(
        {**{cid: 2 for cid in ids}, **{c: 1 for c in ids_of(8, "child")}}
    )
    # The parent's sockets survived the child: its second broadcast reused them.
    assert server.connections - opened <= 8  # the child's own


def test_each_fan_out_signs_with_the_clients_current_credentials():
    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url="https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        region_name="eu-west-1",
        aws_access_key_id="AKIDOLD",
        aws_secret_access_key="old-secret",
    )
    assert target_for(client).access_key == "AKIDOLD"

    # What botocore's refreshable credentials do when a Lambda role's keys rotate.
    credentials = client._request_signer._credentials
    credentials.access_key, credentials.secret_key = "AKIDNEW", "new-secret"

    target = target_for(client)
    assert (target.access_key, target.secret_key) == ("AKIDNEW", "new-secret")
    assert (
        "Credential=AKIDNEW/"
        in dict(Signer(target, PAYLOAD).headers("/prod/@connections/x"))["Authorization"]
    )


def test_closing_the_shared_transport_stops_its_loop_and_the_next_send_starts_afresh(servers):
    """What a process about to be frozen or snapshotted calls: no thread, no socket survives,
    and the next fan-out builds its machinery again."""
    server = servers()
    target = target_of(server)
    broadcast(target, ids_of(4))
    first = shared_transport()
    opened = server.connections

    connections_http.close_shared_transport()

    assert not first.thread.is_alive()
    assert "ws-connections" not in [thread.name for thread in threading.enumerate()]
    assert set(broadcast(target, ids_of(4, "after")).values()) == {Outcome.DELIVERED}
    assert shared_transport() is not first
    assert server.connections > opened  # the closed pool's sockets were not reused
