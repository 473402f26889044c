"""Messages over 128 KiB on every send path: posted as parts that the receiving side joins
into the exact JSON text, each connection's parts in order and counted once; above
``WEBSOCKETS["max_message_bytes"]`` a ``ValueError`` before anything reaches the network.

AWS is reached as users reach it: moto, real @connections servers on loopback
(``tests.wire_servers``, through real botocore and through the signed-HTTP fan-out), and the
testing package's outbox.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from unittest.mock import Mock, patch
from urllib.parse import quote

import pytest

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.testing import capture_sends
from tests.wire_servers import Behaviour, WireServer, response

pytestmark = pytest.mark.django_db

LIMIT = 131072
IDS = ["L0SM9cOFvHcCIhw=", "L0SNbdkkvHcCJ+g=", "plain-id"]


def wire(data) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def document(size: int) -> dict:
    """A message of about ``size`` bytes that exercises the escapes: quotes, backslashes,
    newlines, non-ASCII and characters outside the BMP."""
    row = {"text": 'Grüße "quoted" \\ back\nslash 漢字 😀', "n": 12345}
    rows = [row] * (size // len(wire(row)))
    return {"type": "document", "rows": rows}


def reassemble(posts: list[bytes]) -> bytes:
    """What a browser client makes of one connection's posts (checked as it goes: one
    message id, indexes in order, every post within API Gateway's limit)."""
    assert all(len(post) <= LIMIT for post in posts)
    if len(posts) == 1:
        return posts[0]
    parts = [json.loads(post) for post in posts]
    assert {p["type"] for p in parts} == {"part"} and len({p["id"] for p in parts}) == 1
    assert [(p["index"], p["count"]) for p in parts] == [(i, len(parts)) for i in range(len(parts))]
    return "".join(p["data"] for p in parts).encode("utf-8")


def make_sessions(gateway, *ids, channel="room"):
    return [
        WebSocketSession.objects.create(
            connection_id=cid, channel_name=channel, api_gateway=gateway
        )
        for cid in ids
    ]


def connected_ids() -> set[str]:
    return set(
        WebSocketSession.objects.filter(connected=True).values_list("connection_id", flat=True)
    )


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WEBSOCKETS = {"send_retry_base_delay": 0.001, "send_max_retries": 2}
    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"


# --------------------------------------------------------------------------- moto


def test_through_moto_a_300_kib_message_reaches_three_connections_as_parts():
    from moto import mock_aws
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    gateway = ApiGateway.objects.create(api_name="M", api_id="moto01", stage_name="prod")
    sessions = make_sessions(gateway, *IDS)
    data = document(300 * 1024)

    with mock_aws():
        report = WebSocketSession.objects.all().send_message(data)
        sessions[0].send_message({"type": "after"})
        backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        stored = {cid: backend.connections[quote(cid, safe="")].data for cid in IDS}

    assert (report.delivered, report.gone, report.failed) == (3, 0, 0)
    decoder = json.JSONDecoder()
    for cid in IDS:
        # moto keeps what was posted to a connection as one byte string: take it apart.
        text, posts = stored[cid].decode("utf-8"), []
        while text:
            value, end = decoder.raw_decode(text)
            posts.append(text[:end].encode("utf-8"))
            text = text[end:]
        if cid == IDS[0]:
            assert posts.pop() == b'{"type":"after"}'
        assert len(posts) == 3
        assert reassemble(posts) == wire(data)


def test_through_moto_over_the_maximum_nothing_is_posted():
    from moto import mock_aws
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    gateway = ApiGateway.objects.create(api_name="M", api_id="moto01", stage_name="prod")
    (session,) = make_sessions(gateway, "c1")
    with mock_aws():
        with pytest.raises(ValueError, match="max_message_bytes"):
            WebSocketSession.objects.all().send_message(document(1100 * 1024))
        with pytest.raises(ValueError, match="max_message_bytes"):
            session.send_message(document(1100 * 1024))
        backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        assert backend.connections == {}


# --------------------------------------------------------------------------- local servers


def gone_from(server: WireServer, connection_id: str, number: int) -> bytes:
    """200, except 410 for ``gone*`` ids from their second post on and 403 for ``broken*``
    ids from their third: a connection that goes away (or fails) between parts."""
    if connection_id.startswith("gone") and number >= 2:
        return response("410 Gone", headers=("x-amzn-ErrorType: GoneException",))
    if connection_id.startswith("broken") and number >= 3:
        return response("403 Forbidden", headers=("x-amzn-ErrorType: ForbiddenException",))
    return response()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    started = WireServer(Behaviour(reply=gone_from), stage="big")
    yield started
    started.close()


@pytest.fixture
def gateway(server):
    return ApiGateway.objects.create(
        api_name="Local", api_id="local01", management_endpoint_url=server.url
    )


@pytest.fixture(params=["auto", "boto3"], ids=["signed-http", "boto3-threads"])
def transport(request, settings):
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "fanout_transport": request.param}
    return request.param


def test_a_300_kib_message_reaches_three_connections_as_parts(server, gateway, transport):
    make_sessions(gateway, *IDS)
    data = document(300 * 1024)

    report = WebSocketSession.objects.all().send_message(data)

    assert (report.delivered, report.gone, report.failed) == (3, 0, 0)
    for cid in IDS:
        assert len(server.bodies[cid]) == 3
        assert reassemble(server.bodies[cid]) == wire(data)
    assert max(server.requests.values()) == 3  # nothing sent twice


def test_a_single_send_posts_the_parts_in_order_and_returns_the_last_answer(server, gateway):
    (session,) = make_sessions(gateway, IDS[0])
    data = document(300 * 1024)

    answer = session.send_message(data)

    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert reassemble(server.bodies[IDS[0]]) == wire(data)


def test_many_connections_each_get_their_parts_in_index_order(server, gateway, transport):
    """With more connections than posts in flight, parts of different connections interleave
    on the wire; each connection's own still arrive 0, 1, 2, ..."""
    ids = [f"c{n}" for n in range(40)]
    make_sessions(gateway, *ids)
    data = document(400 * 1024)

    report = WebSocketSession.objects.all().send_message(data)

    assert report.delivered == 40
    assert all(reassemble(server.bodies[cid]) == wire(data) for cid in ids)


def test_a_connection_gone_between_parts_is_gone_and_gets_no_more(server, gateway, transport):
    make_sessions(gateway, "alive", "gone-1", "broken-1")

    report = WebSocketSession.objects.all().send_message(document(400 * 1024))

    assert (report.delivered, report.gone, report.failed) == (1, 1, 1)
    assert report.gone_connection_ids == ["gone-1"]
    assert server.requests == Counter({"alive": 4, "gone-1": 2, "broken-1": 3})
    assert connected_ids() == {"alive", "broken-1"}


def test_a_single_send_gone_between_parts_returns_none(server, gateway):
    (session,) = make_sessions(gateway, "gone-1")

    assert session.send_message(document(400 * 1024)) is None

    assert server.requests["gone-1"] == 2
    assert connected_ids() == set()


def test_failures_between_parts_are_one_log_line_per_reason(server, gateway, transport, caplog):
    make_sessions(gateway, *[f"broken-{n}" for n in range(5)], "alive")
    with caplog.at_level(logging.ERROR, logger="django_aws_api_gateway_websockets"):
        report = WebSocketSession.objects.all().send_message(document(400 * 1024))

    assert (report.delivered, report.failed) == (1, 5)
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(lines) == 1 and lines[0].startswith("5 post(s) to @connections failed")


@pytest.mark.parametrize("single", [True, False], ids=["one-session", "queryset"])
def test_over_the_maximum_the_server_sees_nothing(server, gateway, transport, single):
    (session,) = make_sessions(gateway, *IDS)[:1]

    with pytest.raises(ValueError) as raised:
        if single:
            session.send_message(document(1100 * 1024))
        else:
            WebSocketSession.objects.all().send_message(document(1100 * 1024))

    assert "1048576" in str(raised.value) and "max_message_bytes" in str(raised.value)
    assert server.requests == Counter() and server.connections == 0
    assert connected_ids() == set(IDS)


def test_the_setting_changes_the_maximum(server, gateway, transport, settings):
    make_sessions(gateway, *IDS)
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "max_message_bytes": 200 * 1024}
    with pytest.raises(ValueError, match="204800"):
        WebSocketSession.objects.all().send_message(document(300 * 1024))
    assert server.requests == Counter()

    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "max_message_bytes": 3 * 1024 * 1024}
    data = document(2 * 1024 * 1024)
    report = WebSocketSession.objects.all().send_message(data)

    assert report.delivered == 3
    assert all(reassemble(server.bodies[cid]) == wire(data) for cid in IDS)


# --------------------------------------------------------------------------- the outbox


def test_the_outbox_records_the_parts_and_gives_the_message_whole(api_gateway):
    make_sessions(api_gateway, *IDS)
    data = document(300 * 1024)

    with capture_sends() as outbox:
        report = WebSocketSession.objects.filter(channel_name="room").send_message(data)
        WebSocketSession.objects.get(connection_id=IDS[0]).send_message({"type": "small"})

    assert report.delivered == 3
    assert len(outbox) == 3 * 3 + 1
    assert {message.data["type"] for message in outbox} == {"part", "small"}
    assert outbox.to(IDS[0]) == [data, {"type": "small"}]
    assert outbox.to(IDS[1]) == outbox.to(IDS[2]) == [data]


def test_the_outbox_leaves_out_a_message_whose_parts_did_not_all_arrive(api_gateway):
    (session,) = make_sessions(api_gateway, "c1")
    with capture_sends() as outbox:
        session.send_message({"type": "first"})
        outbox.mark_gone("c1")
        session.send_message(document(300 * 1024))

    assert [message.delivered for message in outbox] == [True, False]
    assert outbox.to("c1") == [{"type": "first"}]


def test_over_the_maximum_the_outbox_stays_empty(api_gateway):
    (session,) = make_sessions(api_gateway, "c1")
    with capture_sends() as outbox, pytest.raises(ValueError):
        session.send_message(document(1100 * 1024))
    assert list(outbox) == []


# --------------------------------------------------------------------------- fan-out events


@pytest.fixture
def clients():
    management, lambda_ = Mock(), Mock()
    management.post_to_connection.return_value = {}

    def factory(service="apigatewayv2", **kwargs):
        return lambda_ if service == "lambda" else management

    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", side_effect=factory):
        yield management, lambda_


def posts_by_connection(management) -> dict[str, list[bytes]]:
    posts: dict[str, list[bytes]] = {}
    for call in management.post_to_connection.call_args_list:
        posts.setdefault(call.kwargs["ConnectionId"], []).append(call.kwargs["Data"])
    return posts


def test_batches_hand_on_the_whole_message_and_the_handler_splits_it(
    settings, clients, api_gateway, keep_test_connection
):
    management, lambda_ = clients
    settings.WEBSOCKETS = {"fanout_invocation_batch": 1, "fanout_function_name": "websockets-fn"}
    make_sessions(api_gateway, "c0", "c1", "c2")
    data = {"type": "news", "text": "x" * (200 * 1024)}

    report = WebSocketSession.objects.all().send_message(data)

    assert (report.delivered, report.queued) == (1, 2)
    events = [json.loads(c.kwargs["Payload"]) for c in lambda_.invoke.call_args_list]
    assert [event["websocket_fanout"]["payload"] for event in events] == [wire(data).decode()] * 2
    handler = make_lambda_handler()
    for event in events:
        assert handler(event, None)["delivered"] == 1
    posts = posts_by_connection(management)
    assert sorted(posts) == ["c0", "c1", "c2"]
    assert all(len(p) == 2 and reassemble(p) == wire(data) for p in posts.values())
    # Each invocation split the message itself: its own part id.
    assert len({json.loads(p[0])["id"] for p in posts.values()}) == 3


def test_a_fan_out_event_over_the_maximum_is_refused_without_a_post(
    settings, clients, api_gateway, keep_test_connection
):
    management, _ = clients
    make_sessions(api_gateway, "c0")
    settings.WEBSOCKETS = {"max_message_bytes": 1000}
    event = {
        "websocket_fanout": {"connection_ids": ["c0"], "payload": json.dumps({"t": "x" * 1000})}
    }

    assert make_lambda_handler()(event, None)["statusCode"] == 400
    management.post_to_connection.assert_not_called()


def test_a_message_too_large_for_an_event_is_sent_here_in_parts(
    settings, clients, api_gateway, caplog
):
    management, lambda_ = clients
    settings.WEBSOCKETS = {"fanout_invocation_batch": 1, "fanout_function_name": "websockets-fn"}
    make_sessions(api_gateway, "c0", "c1", "c2")
    data = document(300 * 1024)  # over the ~250 KB an asynchronous event carries

    report = WebSocketSession.objects.all().send_message(data)

    assert (report.delivered, report.queued) == (3, 0)
    lambda_.invoke.assert_not_called()
    assert any("too large to hand on" in r.getMessage() for r in caplog.records)
    posts = posts_by_connection(management)
    assert sorted(posts) == ["c0", "c1", "c2"]
    assert all(reassemble(p) == wire(data) for p in posts.values())
