"""Server-to-client sends: one session, and a queryset fanned out over a thread pool.

AWS is reached three ways here: a fake client patched in at
``django_aws_api_gateway_websockets.models.get_boto3_client`` (the library's single patch point),
moto's ``mock_aws`` (real boto3, stores the posted bytes), and a tiny local HTTP @connections
server that real boto3 posts to (the only way to get a real 410 -> ``GoneException`` through
botocore, since moto's mock never reports a connection gone).
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest.mock import patch
from urllib.parse import quote, unquote
from uuid import UUID

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_aws_api_gateway_websockets import send_policy, sending
from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession

PATCH_POINT = "django_aws_api_gateway_websockets.models.get_boto3_client"
LIMIT = 131072
SESSION_TABLE = WebSocketSession._meta.db_table

pytestmark = pytest.mark.django_db


# --------------------------------------------------------------------------- helpers


def client_error(code: str, status: int | None = None) -> ClientError:
    response: dict = {"Error": {"Code": code, "Message": code}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "PostToConnection")


def gone_error() -> ClientError:
    return client_error("GoneException", 410)


def throttle_error() -> ClientError:
    return client_error("LimitExceededException", 429)


def forbidden_error() -> ClientError:
    return client_error("ForbiddenException", 403)


def wire(data) -> bytes:
    """The documented wire format: compact JSON, UTF-8, non-ASCII left as is."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def payload_of_size(size: int, fill: str = "x") -> dict:
    """A dict whose wire encoding is exactly ``size`` bytes (``fill`` may be multi-byte)."""
    overhead = len(wire({"m": ""}))
    room = size - overhead
    unit = len(fill.encode("utf-8"))
    data = {"m": fill * (room // unit) + "x" * (room % unit)}
    assert len(wire(data)) == size
    return data


class FakeManagementClient:
    """Stands in for one boto3 ``apigatewaymanagementapi`` client.

    ``script`` maps a connection id to the outcomes of its successive posts: an exception
    instance is raised, anything else is a success. When the script runs out the last entry
    repeats; ids without a script always succeed.
    """

    def __init__(self, endpoint_url: str, world: FakeAws) -> None:
        self.endpoint_url = endpoint_url
        self.world = world

    def post_to_connection(self, *, ConnectionId: str, Data: bytes) -> dict:  # noqa: N803
        with self.world.lock:
            self.world.posts.append((self.endpoint_url, ConnectionId, Data))
            outcomes = self.world.script.get(ConnectionId, [])
            index = self.world.attempts.get(ConnectionId, 0)
            self.world.attempts[ConnectionId] = index + 1
        if outcomes:
            outcome = outcomes[min(index, len(outcomes) - 1)]
            if isinstance(outcome, Exception):
                raise outcome
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}


class FakeAws:
    """What ``get_boto3_client`` returns while patched, and a record of every call."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[tuple[str, str, bytes]] = []
        self.attempts: dict[str, int] = {}
        self.script: dict[str, list] = {}
        self.client_calls: list[tuple[str, dict]] = []

    def get_boto3_client(self, service: str = "apigatewayv2", **kwargs) -> FakeManagementClient:
        with self.lock:
            self.client_calls.append((service, kwargs))
        return FakeManagementClient(kwargs.get("endpoint_url"), self)

    # Views of what happened.
    def posted_ids(self) -> list[str]:
        return sorted(cid for _, cid, _ in self.posts)

    def endpoint_by_id(self) -> dict[str, str]:
        return {cid: endpoint for endpoint, cid, _ in self.posts}

    def endpoints_created(self) -> list[str]:
        return [kwargs.get("endpoint_url") for _, kwargs in self.client_calls]


@pytest.fixture
def fake_aws():
    world = FakeAws()
    with patch(PATCH_POINT, side_effect=world.get_boto3_client):
        yield world


@pytest.fixture(autouse=True)
def fast_retries(settings):
    settings.WEBSOCKETS = {"send_retry_base_delay": 0.001, "send_max_retries": 3}
    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"


@pytest.fixture
def gateway_a(db):
    return ApiGateway.objects.create(api_name="A", api_id="aaa111", stage_name="prod")


@pytest.fixture
def gateway_b(db):
    return ApiGateway.objects.create(
        api_name="B",
        api_id="bbb222",
        stage_name="dev",
        management_endpoint_url="http://b.local/dev",
    )


ENDPOINT_A = "https://aaa111.execute-api.eu-west-1.amazonaws.com/prod"
ENDPOINT_B = "http://b.local/dev"


def make_sessions(gateway, *ids, channel="general", connected=True, user=None):
    return [
        WebSocketSession.objects.create(
            connection_id=cid,
            api_gateway=gateway,
            channel_name=channel,
            connected=connected,
            user=user,
        )
        for cid in ids
    ]


def connected_ids() -> set[str]:
    return set(
        WebSocketSession.objects.filter(connected=True).values_list("connection_id", flat=True)
    )


def session_updates(queries) -> list[str]:
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith("UPDATE") and SESSION_TABLE in q["sql"]
    ]


# --------------------------------------------------------------------------- encoding


def test_single_send_posts_utf8_json_bytes_exactly_once(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    data = {"type": "chat", "text": "héllo ☃ 😀 日本語", "n": [1, 2.5, None, True]}

    response = session.send_message(data)

    assert len(fake_aws.posts) == 1
    endpoint, cid, posted = fake_aws.posts[0]
    assert (endpoint, cid) == (ENDPOINT_A, "c1")
    assert isinstance(posted, bytes)
    assert posted == wire(data)
    # Encoded once: the bytes decode to the object, not to a JSON string of it.
    assert json.loads(posted.decode("utf-8")) == data
    # Non-ASCII travels as UTF-8, not as \u escapes (which would inflate it against the limit).
    assert "☃".encode() in posted and b"\\u" not in posted
    # The client's own response comes back, as post_to_connection returned it.
    assert response == {"ResponseMetadata": {"HTTPStatusCode": 200}}


def test_django_types_are_encoded(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    data = {
        "at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "price": Decimal("9.99"),
        "id": UUID("12345678-1234-5678-1234-567812345678"),
    }

    session.send_message(data)

    assert json.loads(fake_aws.posts[0][2]) == {
        "at": "2024-05-01T12:30:00Z",
        "price": "9.99",
        "id": "12345678-1234-5678-1234-567812345678",
    }


def test_fan_out_encodes_once_and_posts_the_same_bytes_to_everyone(fake_aws, gateway_a):
    make_sessions(gateway_a, "c1", "c2", "c3", "c4")
    data = {"type": "news", "text": "ünïcödé"}

    with patch.object(sending, "encode_payload", wraps=sending.encode_payload) as spy:
        report = WebSocketSession.objects.filter(channel_name="general").send_message(data)

    spy.assert_called_once()
    assert fake_aws.posted_ids() == ["c1", "c2", "c3", "c4"]
    assert {posted for _, _, posted in fake_aws.posts} == {wire(data)}
    assert (report.delivered, report.gone, report.failed) == (4, 0, 0)


def test_unserialisable_data_raises_before_any_network_call(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")

    with pytest.raises(TypeError):
        session.send_message({"obj": object()})
    with pytest.raises(TypeError):
        WebSocketSession.objects.all().send_message({"obj": object()})

    assert fake_aws.client_calls == [] and fake_aws.posts == []


# --------------------------------------------------------------------------- size limit


def reassemble(posts: list[bytes]) -> bytes:
    """The message one connection was posted: a single post, or its parts (checked to be in
    index order, of one message, each within API Gateway's limit) joined."""
    if len(posts) == 1:
        return posts[0]
    parts = [json.loads(post) for post in posts]
    assert all(len(post) <= LIMIT for post in posts)
    assert {part["type"] for part in parts} == {"part"}
    assert len({part["id"] for part in parts}) == 1
    assert [(part["index"], part["count"]) for part in parts] == [
        (index, len(parts)) for index in range(len(parts))
    ]
    return "".join(part["data"] for part in parts).encode("utf-8")


def posts_to(world: FakeAws, connection_id: str) -> list[bytes]:
    return [posted for _, cid, posted in world.posts if cid == connection_id]


@pytest.mark.parametrize("fill", ["x", "é", "😀"])
def test_single_send_of_exactly_the_limit_is_one_post(fake_aws, gateway_a, fill):
    (session,) = make_sessions(gateway_a, "c1")
    data = payload_of_size(LIMIT, fill)

    session.send_message(data)

    assert [posted for _, _, posted in fake_aws.posts] == [wire(data)]


@pytest.mark.parametrize("fill", ["x", "é", "😀"])
def test_single_send_one_byte_over_the_limit_goes_in_parts(fake_aws, gateway_a, fill):
    (session,) = make_sessions(gateway_a, "c1")
    data = payload_of_size(LIMIT + 1, fill)

    response = session.send_message(data)

    assert len(fake_aws.posts) == 2
    assert reassemble(posts_to(fake_aws, "c1")) == wire(data)
    assert response == {"ResponseMetadata": {"HTTPStatusCode": 200}}


def test_a_part_answered_gone_stops_the_rest_and_marks_the_session(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [None, gone_error()]

    assert session.send_message(payload_of_size(3 * LIMIT)) is None

    assert len(fake_aws.posts) == 2  # parts 0 and 1 of 4: the third is never posted
    assert connected_ids() == set()


def test_a_part_that_fails_raises_and_the_rest_is_not_posted(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [None, forbidden_error()]

    with pytest.raises(ClientError):
        session.send_message(payload_of_size(3 * LIMIT))

    assert len(fake_aws.posts) == 2
    assert connected_ids() == {"c1"}


def test_fan_out_of_a_large_message_counts_connections_not_parts(fake_aws, gateway_a):
    make_sessions(gateway_a, "c1", "c2", "gone", "broken")
    fake_aws.script["gone"] = [None, gone_error()]
    fake_aws.script["broken"] = [None, None, forbidden_error()]
    data = payload_of_size(300 * 1024, "日")

    report = WebSocketSession.objects.all().send_message(data)

    assert (report.delivered, report.gone, report.failed) == (2, 1, 1)
    assert report.gone_connection_ids == ["gone"]
    for connection_id in ("c1", "c2"):
        assert reassemble(posts_to(fake_aws, connection_id)) == wire(data)
    assert (len(posts_to(fake_aws, "gone")), len(posts_to(fake_aws, "broken"))) == (2, 3)
    assert connected_ids() == {"c1", "c2", "broken"}


def test_each_send_of_a_large_message_has_its_own_part_id(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    data = payload_of_size(LIMIT + 10)

    session.send_message(data)
    session.send_message(data)

    ids = [json.loads(posted)["id"] for _, _, posted in fake_aws.posts]
    assert ids[0] == ids[1] != ids[2] == ids[3]


DEFAULT_MAXIMUM = 1_048_576


@pytest.mark.parametrize("fill", ["x", "é"])
def test_the_default_maximum_is_sent_and_one_byte_more_raises(fake_aws, gateway_a, fill):
    (session,) = make_sessions(gateway_a, "c1")

    session.send_message(payload_of_size(DEFAULT_MAXIMUM, fill))
    assert reassemble(posts_to(fake_aws, "c1")) == wire(payload_of_size(DEFAULT_MAXIMUM, fill))
    fake_aws.posts.clear()
    fake_aws.client_calls.clear()

    with pytest.raises(ValueError) as raised:
        session.send_message(payload_of_size(DEFAULT_MAXIMUM + 1, fill))

    message = str(raised.value)
    assert "1048577" in message and "1048576" in message and "max_message_bytes" in message
    assert fake_aws.client_calls == [] and fake_aws.posts == []
    session.refresh_from_db()
    assert session.connected is True


def test_the_maximum_counts_utf8_bytes_not_characters(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    data = {"m": "é" * 524_300}  # ~524k characters, ~1 048.6k bytes
    assert len(json.dumps(data, ensure_ascii=False)) < DEFAULT_MAXIMUM

    with pytest.raises(ValueError):
        session.send_message(data)
    with pytest.raises(ValueError):
        WebSocketSession.objects.all().send_message(data)

    assert fake_aws.posts == []


def test_queryset_send_over_the_maximum_raises_before_any_network_call(fake_aws, gateway_a):
    """Defect of the original: the queryset send skipped the size limit."""
    make_sessions(gateway_a, "c1", "c2")

    with pytest.raises(ValueError, match="1048576"):
        WebSocketSession.objects.filter(channel_name="general").send_message(
            payload_of_size(DEFAULT_MAXIMUM + 1)
        )

    assert fake_aws.client_calls == [] and fake_aws.posts == []
    assert connected_ids() == {"c1", "c2"}


def test_the_setting_moves_the_maximum(fake_aws, gateway_a, settings):
    (session,) = make_sessions(gateway_a, "c1")
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "max_message_bytes": 200_000}

    with pytest.raises(ValueError, match="200000"):
        session.send_message(payload_of_size(200_001))
    with pytest.raises(ValueError, match="200000"):
        WebSocketSession.objects.all().send_message(payload_of_size(200_001))
    assert fake_aws.posts == []

    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "max_message_bytes": 3 * DEFAULT_MAXIMUM}
    big = payload_of_size(2 * DEFAULT_MAXIMUM, "😀")
    report = WebSocketSession.objects.all().send_message(big)
    assert report.delivered == 1
    assert reassemble(posts_to(fake_aws, "c1")) == wire(big)


def test_a_maximum_below_128_kib_refuses_what_would_fit_one_post(fake_aws, gateway_a, settings):
    (session,) = make_sessions(gateway_a, "c1")
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "max_message_bytes": 1000}

    with pytest.raises(ValueError, match="1000 bytes"):
        session.send_message(payload_of_size(1001))
    session.send_message(payload_of_size(1000))

    assert [len(posted) for _, _, posted in fake_aws.posts] == [1000]


def test_queryset_send_of_exactly_the_limit_is_posted_to_everyone(fake_aws, gateway_a):
    make_sessions(gateway_a, "c1", "c2")

    report = WebSocketSession.objects.all().send_message(payload_of_size(LIMIT, "é"))

    assert report.delivered == 2
    assert [len(posted) for _, _, posted in fake_aws.posts] == [LIMIT, LIMIT]


# --------------------------------------------------------------------------- gone connections


def test_single_send_to_gone_connection_marks_session_disconnected(fake_aws, gateway_a):
    session, other = make_sessions(gateway_a, "gone-1", "alive-1")
    fake_aws.script["gone-1"] = [gone_error()]
    reports = []

    def receiver(sender, report, **kwargs):
        reports.append(report)

    sending.messages_sent.connect(receiver)
    try:
        assert session.send_message({"type": "x"}) is None
    finally:
        sending.messages_sent.disconnect(receiver)

    assert session.connected is False
    session.refresh_from_db()
    assert session.connected is False
    other.refresh_from_db()
    assert other.connected is True
    # Receivers of messages_sent still see what happened.
    ((report,),) = [reports]
    assert (report.delivered, report.gone, report.failed) == (0, 1, 0)
    assert report.gone_connection_ids == ["gone-1"]
    # Gone is final: no retry.
    assert fake_aws.attempts["gone-1"] == 1


def test_http_410_without_gone_code_counts_as_gone(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [client_error("410", 410)]

    assert session.send_message({"type": "x"}) is None

    session.refresh_from_db()
    assert session.connected is False


def test_fan_out_marks_all_gone_sessions_in_one_update(fake_aws, gateway_a):
    make_sessions(gateway_a, "ok-1", "gone-1", "ok-2", "gone-2", "gone-3")
    for cid in ("gone-1", "gone-2", "gone-3"):
        fake_aws.script[cid] = [gone_error()]

    with CaptureQueriesContext(connection) as ctx:
        report = WebSocketSession.objects.all().send_message({"type": "x"})

    assert len(session_updates(ctx.captured_queries)) == 1
    assert (report.delivered, report.gone, report.failed) == (2, 3, 0)
    assert sorted(report.gone_connection_ids) == ["gone-1", "gone-2", "gone-3"]
    assert connected_ids() == {"ok-1", "ok-2"}


def test_fan_out_without_gone_sessions_writes_nothing(fake_aws, gateway_a):
    make_sessions(gateway_a, "ok-1", "ok-2")

    with CaptureQueriesContext(connection) as ctx:
        WebSocketSession.objects.all().send_message({"type": "x"})

    assert session_updates(ctx.captured_queries) == []


def test_fan_out_skips_disconnected_sessions(fake_aws, gateway_a):
    make_sessions(gateway_a, "on-1", "on-2")
    make_sessions(gateway_a, "off-1", "off-2", connected=False)

    report = WebSocketSession.objects.filter(channel_name="general").send_message({"t": 1})

    assert fake_aws.posted_ids() == ["on-1", "on-2"]
    assert (report.delivered, report.gone, report.failed) == (2, 0, 0)


def test_fan_out_to_empty_queryset_creates_no_client(fake_aws, gateway_a):
    make_sessions(gateway_a, "off-1", connected=False)

    report = WebSocketSession.objects.filter(channel_name="general").send_message({"t": 1})

    assert fake_aws.client_calls == []
    assert (report.delivered, report.gone, report.failed) == (0, 0, 0)


# --------------------------------------------------------------------------- gateways / endpoints


def test_fan_out_sends_each_session_through_its_own_gateway(fake_aws, gateway_a, gateway_b):
    """Defect of the original: the first row's gateway was used for every row."""
    # Interleaved so that whichever row comes first, the other gateway's rows follow it.
    make_sessions(gateway_a, "a-1")
    make_sessions(gateway_b, "b-1")
    make_sessions(gateway_a, "a-2")
    make_sessions(gateway_b, "b-2")

    report = WebSocketSession.objects.filter(channel_name="general").send_message({"t": 1})

    assert fake_aws.endpoint_by_id() == {
        "a-1": ENDPOINT_A,
        "a-2": ENDPOINT_A,
        "b-1": ENDPOINT_B,
        "b-2": ENDPOINT_B,
    }
    # One client per endpoint, each for the management API.
    assert sorted(fake_aws.endpoints_created()) == sorted([ENDPOINT_A, ENDPOINT_B])
    assert {service for service, _ in fake_aws.client_calls} == {"apigatewaymanagementapi"}
    assert report.delivered == 4


def test_fan_out_gone_sessions_of_several_gateways_are_all_marked(fake_aws, gateway_a, gateway_b):
    make_sessions(gateway_a, "a-1", "a-gone")
    make_sessions(gateway_b, "b-1", "b-gone")
    fake_aws.script["a-gone"] = [gone_error()]
    fake_aws.script["b-gone"] = [gone_error()]

    with CaptureQueriesContext(connection) as ctx:
        report = WebSocketSession.objects.all().send_message({"t": 1})

    assert len(session_updates(ctx.captured_queries)) == 1
    assert report.gone == 2
    assert connected_ids() == {"a-1", "b-1"}


def test_single_send_uses_the_sessions_own_gateway(fake_aws, gateway_a, gateway_b):
    make_sessions(gateway_a, "a-1")
    (b_session,) = make_sessions(gateway_b, "b-1")

    b_session.send_message({"t": 1})

    assert fake_aws.endpoint_by_id() == {"b-1": ENDPOINT_B}
    assert len(fake_aws.client_calls) == 1
    service, kwargs = fake_aws.client_calls[0]
    assert (service, kwargs["endpoint_url"]) == ("apigatewaymanagementapi", ENDPOINT_B)


def test_derived_management_endpoint(fake_aws, settings):
    settings.AWS_GATEWAY_REGION_NAME = "ap-southeast-2"
    gateway = ApiGateway.objects.create(api_name="D", api_id="xyz789", stage_name="staging")
    (session,) = make_sessions(gateway, "c1")

    session.send_message({"t": 1})

    expected = "https://xyz789.execute-api.ap-southeast-2.amazonaws.com/staging"
    assert gateway.management_endpoint == expected
    assert fake_aws.endpoints_created() == [expected]


def test_derived_endpoint_falls_back_to_aws_region_name(fake_aws, settings):
    del settings.AWS_GATEWAY_REGION_NAME
    settings.AWS_REGION_NAME = "eu-central-1"
    gateway = ApiGateway.objects.create(api_name="D", api_id="xyz789", stage_name="production")
    (session,) = make_sessions(gateway, "c1")

    session.send_message({"t": 1})

    assert fake_aws.endpoints_created() == [
        "https://xyz789.execute-api.eu-central-1.amazonaws.com/production"
    ]


def test_explicit_management_endpoint_url_wins_over_derived(fake_aws):
    gateway = ApiGateway.objects.create(
        api_name="L",
        api_id="xyz789",
        stage_name="production",
        management_endpoint_url="http://127.0.0.1:8765/local/",
    )
    (session,) = make_sessions(gateway, "c1")

    session.send_message({"t": 1})
    WebSocketSession.objects.all().send_message({"t": 2})

    # Trailing slash dropped so botocore does not build ".../local//@connections/...".
    assert fake_aws.endpoints_created() == ["http://127.0.0.1:8765/local"] * 2


def test_gateway_without_api_id_or_endpoint_cannot_send(fake_aws):
    gateway = ApiGateway.objects.create(api_name="N", stage_name="production")
    (session,) = make_sessions(gateway, "c1")

    with pytest.raises(ImproperlyConfigured, match="api_id"):
        session.send_message({"t": 1})
    assert fake_aws.posts == []


def test_fan_out_counts_sessions_of_an_unconfigured_gateway_as_failed(fake_aws, gateway_a):
    """One misconfigured gateway must not abort a broadcast half-way (nor its gone marking)."""
    unconfigured = ApiGateway.objects.create(api_name="N", stage_name="production")
    make_sessions(gateway_a, "a-1")
    make_sessions(unconfigured, "n-1")
    make_sessions(gateway_a, "a-gone")
    fake_aws.script["a-gone"] = [gone_error()]

    report = WebSocketSession.objects.all().send_message({"t": 1})

    assert (report.delivered, report.gone, report.failed) == (1, 1, 1)
    assert fake_aws.posted_ids() == ["a-1", "a-gone"]
    assert connected_ids() == {"a-1", "n-1"}


def test_single_send_without_gateway_raises_value_error(fake_aws):
    (session,) = make_sessions(None, "orphan")

    with pytest.raises(ValueError, match="orphan"):
        session.send_message({"t": 1})

    assert fake_aws.client_calls == [] and fake_aws.posts == []


def test_fan_out_counts_sessions_without_gateway_as_failed(fake_aws, gateway_a):
    make_sessions(gateway_a, "a-1", "a-2")
    make_sessions(None, "orphan")

    report = WebSocketSession.objects.all().send_message({"t": 1})

    assert fake_aws.posted_ids() == ["a-1", "a-2"]
    assert (report.delivered, report.gone, report.failed) == (2, 0, 1)
    assert connected_ids() == {"a-1", "a-2", "orphan"}


# --------------------------------------------------------------------------- throttling


@pytest.mark.parametrize(
    "error",
    [
        client_error("LimitExceededException", 429),
        client_error("LimitExceededException"),
        client_error("TooManyRequestsException", 429),
        client_error("ThrottlingException", 400),
        client_error("SomethingNew", 429),
    ],
    ids=["limit-429", "limit-code-only", "toomany", "throttling", "status-429-only"],
)
def test_single_send_retries_throttling_then_delivers(fake_aws, gateway_a, error):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [error, error, "ok"]

    response = session.send_message({"t": 1})

    assert fake_aws.attempts["c1"] == 3
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    session.refresh_from_db()
    assert session.connected is True


def test_throttling_backs_off_exponentially_between_attempts(fake_aws, gateway_a, settings):
    # The back-off alone: with the send-rate bucket on, its waits come on top (test_send_rate).
    settings.WEBSOCKETS = {
        "send_retry_base_delay": 0.5,
        "send_max_retries": 5,
        "send_rate_limit": 0,
    }
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [throttle_error()] * 3 + ["ok"]

    with patch.object(sending, "time") as fake_time:
        session.send_message({"t": 1})
    delays = [c.args[0] for c in fake_time.sleep.call_args_list]
    assert len(delays) == 3  # one pause before each retry, none after success
    for attempt, delay in enumerate(delays):
        assert 0 <= delay <= 0.5 * 2**attempt  # jittered, within the exponential cap

    # With the jitter at its maximum the pauses double: 0.5 s, 1 s, 2 s.
    fake_aws.attempts.clear()
    with (
        patch.object(sending, "time") as fake_time,
        patch.object(send_policy, "random") as fake_random,
    ):
        fake_random.uniform.side_effect = lambda low, high: high
        session.send_message({"t": 1})
    assert [c.args[0] for c in fake_time.sleep.call_args_list] == [0.5, 1.0, 2.0]


def test_single_send_persistent_throttling_raises_after_max_retries(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [throttle_error()]

    with pytest.raises(ClientError) as excinfo:
        session.send_message({"t": 1})

    assert excinfo.value.response["Error"]["Code"] == "LimitExceededException"
    assert fake_aws.attempts["c1"] == 3 + 1  # send_max_retries=3 retries after the first try
    session.refresh_from_db()
    assert session.connected is True


def test_max_retries_zero_means_one_attempt(fake_aws, gateway_a, settings):
    settings.WEBSOCKETS = {"send_retry_base_delay": 0.001, "send_max_retries": 0}
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [throttle_error(), "ok"]

    with pytest.raises(ClientError):
        session.send_message({"t": 1})
    assert fake_aws.attempts["c1"] == 1


def test_fan_out_retries_throttled_sessions_then_delivers(fake_aws, gateway_a):
    make_sessions(gateway_a, "c1", "c2", "c3")
    fake_aws.script["c2"] = [throttle_error(), throttle_error(), "ok"]

    report = WebSocketSession.objects.all().send_message({"t": 1})

    assert (report.delivered, report.gone, report.failed) == (3, 0, 0)
    assert fake_aws.attempts == {"c1": 1, "c2": 3, "c3": 1}


def test_fan_out_counts_persistently_throttled_session_as_failed(fake_aws, gateway_a, settings):
    # send_rate_limit 0: the fan-out gives up after send_max_retries (with it on, at the
    # deadline: test_send_rate).
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "send_rate_limit": 0}
    make_sessions(gateway_a, "c1", "c2", "c3")
    fake_aws.script["c2"] = [throttle_error()]

    report = WebSocketSession.objects.all().send_message({"t": 1})

    assert (report.delivered, report.gone, report.failed) == (2, 0, 1)
    assert fake_aws.attempts["c2"] == 4
    assert report.gone_connection_ids == []
    # Failure is not gone: the session stays connected.
    assert connected_ids() == {"c1", "c2", "c3"}


# --------------------------------------------------------------------------- other errors


@pytest.mark.parametrize(
    "error",
    [forbidden_error(), client_error("InternalServerError", 500), client_error("PayloadTooLarge")],
    ids=["forbidden", "500", "payload"],
)
def test_single_send_other_client_error_raises_without_retry(fake_aws, gateway_a, error):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [error, "ok"]

    with pytest.raises(ClientError) as excinfo:
        session.send_message({"t": 1})

    assert excinfo.value is error
    assert fake_aws.attempts["c1"] == 1
    session.refresh_from_db()
    assert session.connected is True


def test_single_send_network_error_raises(fake_aws, gateway_a):
    (session,) = make_sessions(gateway_a, "c1")
    fake_aws.script["c1"] = [EndpointConnectionError(endpoint_url=ENDPOINT_A)]

    with pytest.raises(EndpointConnectionError):
        session.send_message({"t": 1})


def test_fan_out_counts_other_errors_as_failed_and_still_delivers_the_rest(fake_aws, gateway_a):
    make_sessions(gateway_a, "c1", "bad-1", "c2", "bad-2", "c3")
    fake_aws.script["bad-1"] = [forbidden_error()]
    fake_aws.script["bad-2"] = [EndpointConnectionError(endpoint_url=ENDPOINT_A)]

    report = WebSocketSession.objects.all().send_message({"t": 1})

    assert fake_aws.posted_ids() == ["bad-1", "bad-2", "c1", "c2", "c3"]
    assert (report.delivered, report.gone, report.failed) == (3, 0, 2)
    assert fake_aws.attempts["bad-1"] == 1  # not retried
    assert connected_ids() == {"c1", "c2", "c3", "bad-1", "bad-2"}


def test_fan_out_report_adds_up(fake_aws, gateway_a, gateway_b):
    make_sessions(gateway_a, "ok-a", "gone-a", "bad-a")
    make_sessions(gateway_b, "ok-b", "gone-b", "slow-b")
    make_sessions(gateway_b, "off-b", connected=False)
    fake_aws.script.update(
        {
            "gone-a": [gone_error()],
            "gone-b": [gone_error()],
            "bad-a": [forbidden_error()],
            "slow-b": [throttle_error(), "ok"],
        }
    )

    report = WebSocketSession.objects.all().send_message({"t": 1})

    assert (report.delivered, report.gone, report.failed) == (3, 2, 1)
    assert report.attempted == 6
    assert sorted(report.gone_connection_ids) == ["gone-a", "gone-b"]
    assert connected_ids() == {"ok-a", "bad-a", "ok-b", "slow-b"}


def test_large_fan_out_with_bounded_pool(fake_aws, gateway_a, settings):
    settings.WEBSOCKETS = {"send_concurrency": 3, "send_retry_base_delay": 0.001}
    ids = [f"c{i:03d}" for i in range(60)]
    WebSocketSession.objects.bulk_create(
        WebSocketSession(connection_id=cid, api_gateway=gateway_a, channel_name="big")
        for cid in ids
    )
    for cid in ids[::7]:
        fake_aws.script[cid] = [gone_error()]

    with CaptureQueriesContext(connection) as ctx:
        report = WebSocketSession.objects.filter(channel_name="big").send_message({"t": 1})

    assert fake_aws.posted_ids() == ids
    assert (report.delivered, report.gone) == (60 - len(ids[::7]), len(ids[::7]))
    assert len(session_updates(ctx.captured_queries)) == 1
    assert connected_ids() == set(ids) - set(ids[::7])
    assert fake_aws.endpoints_created() == [ENDPOINT_A]


# --------------------------------------------------------------------------- related managers


def test_user_websocket_sessions_send_message(fake_aws, gateway_a, django_user_model):
    alice = django_user_model.objects.create_user(username="alice")
    bob = django_user_model.objects.create_user(username="bob")
    make_sessions(gateway_a, "alice-1", "alice-2", user=alice)
    make_sessions(gateway_a, "alice-old", user=alice, connected=False)
    make_sessions(gateway_a, "bob-1", user=bob)
    make_sessions(gateway_a, "anon-1")

    report = alice.websocket_sessions.send_message({"type": "dm", "text": "hi"})

    assert fake_aws.posted_ids() == ["alice-1", "alice-2"]
    assert report.delivered == 2


def test_broadcast_to_all_sessions(fake_aws, gateway_a, gateway_b):
    make_sessions(gateway_a, "a-1", "a-2", channel="one")
    make_sessions(gateway_b, "b-1", channel="two")
    make_sessions(gateway_b, "b-off", channel="two", connected=False)

    report = WebSocketSession.objects.all().send_message({"type": "broadcast"})
    assert fake_aws.posted_ids() == ["a-1", "a-2", "b-1"]
    assert report.delivered == 3

    fake_aws.posts.clear()
    WebSocketSession.objects.send_message({"type": "broadcast"})
    assert fake_aws.posted_ids() == ["a-1", "a-2", "b-1"]


def test_channel_send_reaches_only_that_channel(fake_aws, gateway_a):
    make_sessions(gateway_a, "g-1", "g-2", channel="general")
    make_sessions(gateway_a, "s-1", channel="support")

    WebSocketSession.objects.filter(channel_name="support").send_message({"t": 1})

    assert fake_aws.posted_ids() == ["s-1"]


# --------------------------------------------------------------------------- real boto3: moto


def test_real_boto3_against_moto_posts_exact_bytes(settings, gateway_a):
    from moto import mock_aws
    from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
    from moto.core import DEFAULT_ACCOUNT_ID

    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
    real_ids = ["L0SM9cOFvHcCIhw=", "L0SNbdkkvHcCJ+g=", "plain-id"]
    sessions = make_sessions(gateway_a, *real_ids)
    single = {"type": "hello", "text": "grüße ✓"}
    fan = {"type": "room", "text": "ça va?"}

    with mock_aws():
        sessions[0].send_message(single)
        report = WebSocketSession.objects.all().send_message(fan)
        backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        stored = {cid: backend.connections[quote(cid, safe="")].data for cid in real_ids}

    assert report.delivered == 3
    assert stored == {
        real_ids[0]: wire(single) + wire(fan),
        real_ids[1]: wire(fan),
        real_ids[2]: wire(fan),
    }


# --------------------------------------------------------------------------- real boto3: HTTP


class ConnectionsServer:
    """A local @connections API: POST /<stage>/@connections/<id> answers 200, 410 or 429, over
    HTTP/1.1 keep-alive connections."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.gone: set[str] = set()
        self.throttle: dict[str, int] = {}  # id -> how many 429s before a 200
        self.throttle_answer = (429, "LimitExceededException")
        self.broken: set[str] = set()  # ids answered with 500
        self.silent: set[str] = set()  # ids never answered (timeouts)
        self.requests: list[tuple[str, str, bytes]] = []
        self.connections = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as API Gateway speaks: clients reuse connections across posts.
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                prefix = f"/{server.stage}/@connections/"
                if not self.path.startswith(prefix):
                    self._reply(404, "NotFoundException")
                    return
                cid = unquote(self.path[len(prefix) :])
                with server.lock:
                    server.requests.append((cid, self.headers.get("Content-Type", ""), body))
                    throttles_left = server.throttle.get(cid, 0)
                    if throttles_left:
                        server.throttle[cid] = throttles_left - 1
                if cid in server.silent:
                    time.sleep(3)  # longer than the test's request timeout
                    return
                if cid in server.gone:
                    self._reply(410, "GoneException")
                elif cid in server.broken:
                    self._reply(500, "InternalServerErrorException")
                elif throttles_left:
                    self._reply(*server.throttle_answer)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def _reply(self, status, error_type):
                payload = json.dumps({"message": error_type}).encode()
                self.send_response(status)
                self.send_header("x-amzn-ErrorType", error_type)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def setup(self):
                super().setup()
                with server.lock:
                    server.connections += 1

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{stage}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def bodies_for(self, cid: str) -> list[bytes]:
        return [body for rid, _, body in self.requests if rid == cid]


@pytest.fixture
def connections_server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = ConnectionsServer("local")
    yield server
    server.close()


@pytest.fixture
def local_gateway(connections_server, settings):
    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
    return ApiGateway.objects.create(
        api_name="Local", api_id="local01", management_endpoint_url=connections_server.url
    )


def test_real_boto3_over_http_delivers_and_detects_gone(connections_server, local_gateway):
    alive, gone, slow = make_sessions(local_gateway, "alive=", "gone+id", "slow")
    make_sessions(local_gateway, "other-gone")
    connections_server.gone = {"gone+id", "other-gone"}
    connections_server.throttle = {"slow": 1}
    data = {"type": "chat", "text": "Grüße, 世界"}

    delivered = alive.send_message(data)

    # Real botocore answers: the response dict with its metadata, None for a gone connection.
    assert delivered["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert gone.send_message(data) is None
    assert connections_server.bodies_for("alive=") == [wire(data)]
    gone.refresh_from_db()
    assert gone.connected is False

    connections_server.requests.clear()
    report = WebSocketSession.objects.all().send_message(data)

    # "gone+id" is already disconnected, so only three connected sessions are tried.
    assert (report.delivered, report.gone, report.failed) == (2, 1, 0)
    assert report.gone_connection_ids == ["other-gone"]
    assert sorted(cid for cid, _, _ in connections_server.requests) == [
        "alive=",
        "other-gone",
        "slow",
        "slow",
    ]
    assert all(body == wire(data) for _, _, body in connections_server.requests)
    assert connected_ids() == {"alive=", "slow"}


def test_real_boto3_over_http_posts_are_not_repeated_by_botocore(
    connections_server, local_gateway, settings
):
    """Our loop retries throttling; botocore's own retries are off, so attempts don't multiply
    and a failed post (not idempotent: a retry may deliver a message twice) is not repeated."""
    # send_max_retries bounds the fan-out's retries too without the send-rate bucket.
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "send_rate_limit": 0}
    busy, broken, fine = make_sessions(local_gateway, "busy", "broken", "fine")
    connections_server.throttle = {"busy": 100}
    connections_server.broken = {"broken"}

    with pytest.raises(ClientError) as excinfo:
        busy.send_message({"t": 1})
    assert excinfo.value.response["Error"]["Code"] == "LimitExceededException"
    assert len(connections_server.bodies_for("busy")) == 3 + 1

    with pytest.raises(ClientError) as excinfo:
        broken.send_message({"t": 2})
    assert excinfo.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert len(connections_server.bodies_for("broken")) == 1

    connections_server.requests.clear()
    report = WebSocketSession.objects.all().send_message({"t": 3})
    assert (report.delivered, report.gone, report.failed) == (1, 0, 2)
    assert len(connections_server.bodies_for("broken")) == 1
    assert len(connections_server.bodies_for("busy")) == 3 + 1
    assert connections_server.bodies_for("fine") == [b'{"t":3}']


def test_explicit_endpoint_sends_without_any_region_setting(
    connections_server, local_gateway, settings
):
    """The local gateway (or any non-AWS endpoint) needs no region configured."""
    settings.AWS_GATEWAY_REGION_NAME = ""
    settings.AWS_REGION_NAME = ""
    make_sessions(local_gateway, "alive=")
    report = WebSocketSession.objects.all().send_message({"type": "ping"})
    assert report.delivered == 1


def test_timeouts_are_failures_sent_once_and_do_not_hold_up_the_rest(
    connections_server, local_gateway, monkeypatch
):
    """A connection whose post times out is counted failed, not retried (a retry could
    deliver twice); everyone else still gets the message once."""
    monkeypatch.setattr("django_aws_api_gateway_websockets.connections_http.REQUEST_TIMEOUT", 0.5)
    make_sessions(local_gateway, "fine-1", "stuck", "fine-2")
    connections_server.silent = {"stuck"}
    report = WebSocketSession.objects.all().send_message({"type": "x"})
    assert (report.delivered, report.gone, report.failed) == (2, 0, 1)
    assert sorted(cid for cid, _, _ in connections_server.requests) == ["fine-1", "fine-2", "stuck"]
    assert connected_ids() == {"fine-1", "stuck", "fine-2"}


# --------------------------------------------------------------------------- aborted broadcasts


class RowsFailed(Exception):
    """Stands in for the database dropping the cursor while the rows are streamed."""


IDS = [f"c{n}" for n in range(10)]
GONE_IDS = {"c1", "c3", "c7", "c8"}


def fail_rows_after(monkeypatch, count: int) -> list[str]:
    """Make the fan-out's row stream raise after ``count`` rows; returns the ids it gave."""
    from django.db.models.query import QuerySet

    real_iterator = QuerySet.iterator
    given: list[str] = []

    def iterator(self, *args, **kwargs):
        for row in real_iterator(self, *args, **kwargs):
            if len(given) == count:
                raise RowsFailed("the cursor went away mid-broadcast")
            given.append(row[0])
            yield row

    monkeypatch.setattr(QuerySet, "iterator", iterator)
    return given


def fail_endpoint_after(monkeypatch, count: int) -> list[str]:
    """Make resolving a row's endpoint raise (not a per-connection problem) after ``count``
    rows; returns the ids handed on to a transport."""
    from django_aws_api_gateway_websockets import aws

    real = aws.management_endpoint_for
    given: list[str] = []
    calls = iter(range(10**6))

    def endpoint_for(*args):
        if next(calls) == count:
            raise RowsFailed("a bug in the stream")
        return real(*args)

    monkeypatch.setattr(aws, "management_endpoint_for", endpoint_for)
    real_send = sending._Broadcast.send

    def send(self, connection_id, *rest):
        real_send(self, connection_id, *rest)
        given.append(connection_id)

    monkeypatch.setattr(sending._Broadcast, "send", send)
    return given


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started since ``before`` that are still alive, other than the test server's
    own request handlers."""
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before and "process_request" not in thread.name
    ]


@pytest.fixture(params=["boto3-threads", "signed-http"])
def transport(request):
    """(gateway, ids that were posted to): the boto3 path through a patched
    ``get_boto3_client``, or the signed-HTTP fan-out against a real local server."""
    if request.param == "boto3-threads":
        world = request.getfixturevalue("fake_aws")
        gateway = request.getfixturevalue("gateway_a")
        world.script.update({cid: [gone_error()] for cid in GONE_IDS})
        return gateway, lambda: {cid for _, cid, _ in world.posts}
    server = request.getfixturevalue("connections_server")
    gateway = request.getfixturevalue("local_gateway")
    server.gone = set(GONE_IDS)
    return gateway, lambda: {cid for cid, _, _ in server.requests}


@pytest.mark.parametrize("failure", [fail_rows_after, fail_endpoint_after])
def test_broadcast_stopped_by_an_error_leaves_no_thread_and_marks_the_gone_it_saw(
    transport, failure, monkeypatch
):
    gateway, posted = transport
    # A completed broadcast first: machinery meant to outlive one send exists before we look.
    make_sessions(gateway, "warm-up")
    assert WebSocketSession.objects.all().send_message({"t": 0}).delivered == 1
    before = set(threading.enumerate())
    make_sessions(gateway, *IDS, channel="room")

    given = failure(monkeypatch, 5)
    with pytest.raises(RowsFailed):
        WebSocketSession.objects.filter(channel_name="room").send_message({"t": 1})

    assert new_threads(before) == []
    assert len(given) == 5
    assert posted() - {"warm-up"} == set(given)
    expected_connected = {"warm-up"} | (set(IDS) - (GONE_IDS & set(given)))
    assert connected_ids() == expected_connected
    # Something gone was seen, and something gone was never reached: both cases were tested.
    assert GONE_IDS & set(given) and GONE_IDS - set(given)


def test_aborted_broadcast_reports_what_it_sent(fake_aws, gateway_a, monkeypatch):
    """The messages_sent signal still tells metrics what was delivered before the error."""
    from django_aws_api_gateway_websockets.signals import messages_sent

    make_sessions(gateway_a, *IDS)
    fake_aws.script.update({cid: [gone_error()] for cid in GONE_IDS})
    reports = []

    def receiver(sender, report, **kwargs):
        reports.append(report)

    messages_sent.connect(receiver)
    try:
        given = fail_rows_after(monkeypatch, 5)
        with pytest.raises(RowsFailed):
            WebSocketSession.objects.all().send_message({"t": 1})
    finally:
        messages_sent.disconnect(receiver)
    (report,) = reports
    gone_seen = GONE_IDS & set(given)
    assert (report.delivered, report.gone, report.failed) == (5 - len(gone_seen), len(gone_seen), 0)
    assert sorted(report.gone_connection_ids) == sorted(gone_seen)


# --------------------------------------------------------------------------- one outcome policy


@pytest.mark.parametrize(
    "answer",
    [
        (429, "LimitExceededException"),
        (400, "LimitExceededException"),
        (400, "TooManyRequestsException"),
        (400, "ThrottlingException"),
        (429, "SomethingElse"),
    ],
    ids=["429-limit", "limit", "toomany", "throttling", "429-any"],
)
@pytest.mark.parametrize("fanout_transport", ["auto", "boto3"])
def test_both_transports_retry_the_same_throttling_answers(
    connections_server, local_gateway, settings, answer, fanout_transport
):
    """Real boto3 and the signed-HTTP fan-out read one list of throttling codes: each of
    these answers is retried, then delivered once."""
    settings.WEBSOCKETS = {**settings.WEBSOCKETS, "fanout_transport": fanout_transport}
    connections_server.throttle_answer = answer
    single, room_a, room_b = make_sessions(local_gateway, "single", "room-a", "room-b")
    connections_server.throttle = {"single": 2, "room-a": 2}

    assert single.send_message({"t": 1})["ResponseMetadata"]["HTTPStatusCode"] == 200
    single.connected = False
    single.save()
    report = WebSocketSession.objects.all().send_message({"t": 2})

    assert (report.delivered, report.gone, report.failed) == (2, 0, 0)
    assert len(connections_server.bodies_for("single")) == 3
    assert len(connections_server.bodies_for("room-a")) == 3
    assert len(connections_server.bodies_for("room-b")) == 1


def test_a_throttled_fan_out_gives_up_as_failed_on_both_transports(
    connections_server, local_gateway, settings
):
    for transport in ("auto", "boto3"):
        # Without the send-rate bucket: after send_max_retries (with it: test_send_rate).
        settings.WEBSOCKETS = {
            **settings.WEBSOCKETS,
            "fanout_transport": transport,
            "send_rate_limit": 0,
        }
        connections_server.requests.clear()
        connections_server.throttle = {"busy": 100}
        WebSocketSession.objects.all().delete()
        make_sessions(local_gateway, "busy", "fine")
        report = WebSocketSession.objects.all().send_message({"t": transport})
        assert (report.delivered, report.gone, report.failed) == (1, 0, 1), transport
        assert len(connections_server.bodies_for("busy")) == 3 + 1, transport


def test_outcomes_compare_equal_to_their_names():
    """Code that compared the old bare strings keeps working."""
    assert send_policy.Outcome.DELIVERED == "delivered"
    assert send_policy.Outcome.THROTTLED.failed and send_policy.Outcome.FAILED.failed
    assert not send_policy.Outcome.GONE.failed


def test_warm_sends_reuse_one_client_and_the_open_connections(
    connections_server, local_gateway, monkeypatch
):
    """A warm container builds the @connections client once and keeps its connections."""
    from django_aws_api_gateway_websockets import aws

    built = []
    real_new_client = aws.new_client
    monkeypatch.setattr(aws, "_MANAGEMENT_CLIENTS", {})
    monkeypatch.setattr(
        aws, "new_client", lambda *a, **kw: built.append(a) or real_new_client(*a, **kw)
    )
    make_sessions(local_gateway, "a", "b", "c")
    for number in range(5):
        report = WebSocketSession.objects.all().send_message({"n": number})
        assert (report.delivered, report.failed) == (3, 0)

    assert len(built) == 1
    assert connections_server.connections <= 3
    for cid in ("a", "b", "c"):
        assert connections_server.bodies_for(cid) == [wire({"n": n}) for n in range(5)]


def test_a_queryset_send_through_a_dropping_server_never_raises_nor_sends_twice(
    local_gateway, settings
):
    """Every 3rd post on a socket is read, then the socket dropped unanswered."""
    settings.WEBSOCKETS = {"send_concurrency": 2, "http_concurrency": 4}
    from tests.wire_servers import Behaviour, WireServer, response

    def reply(server, connection_id, number):
        if connection_id.startswith("gone"):
            return response("410 Gone", headers=("x-amzn-ErrorType: GoneException",))
        return response()

    server = WireServer(Behaviour(reply=reply, drop_every=3), stage="wire")
    try:
        gateway = ApiGateway.objects.create(
            api_name="W", api_id="wire01", management_endpoint_url=server.url
        )
        alive = [f"s{n}" for n in range(40)]
        gone = [f"gone{n}" for n in range(6)]
        make_sessions(gateway, *alive, *gone)

        report = WebSocketSession.objects.filter(api_gateway=gateway).send_message({"t": 1})
    finally:
        server.close()

    assert max(server.requests.values()) == 1
    assert report.delivered == sum(server.answered.values())
    assert report.delivered + report.gone + report.failed == 46
    assert report.failed > 0
    assert set(report.gone_connection_ids) <= set(gone)
    # Sessions answered 410 are marked; a dropped post leaves its session as it was.
    assert connected_ids() == set(alive + gone) - set(report.gone_connection_ids)


def test_a_first_send_opens_its_connection_while_the_client_is_built(local_gateway, monkeypatch):
    """A fresh process spends ~45 ms building its botocore client; the first connection's
    handshake runs meanwhile, so the first send costs about the slower of the two, not both."""
    from django_aws_api_gateway_websockets import aws, connections_http
    from tests.wire_servers import WireServer

    server = WireServer(stage="early")
    built_at: list[float] = []
    real_new_client = aws.new_client

    def slow_new_client(*args, **kwargs):
        time.sleep(0.2)  # what a fresh process's first client costs, magnified
        made = real_new_client(*args, **kwargs)
        built_at.append(time.monotonic())
        return made

    monkeypatch.setattr(aws, "new_client", slow_new_client)
    monkeypatch.setattr(aws, "_MANAGEMENT_CLIENTS", {})
    connections_http.close_shared_transport()
    try:
        gateway = ApiGateway.objects.create(
            api_name="E", api_id="early01", management_endpoint_url=server.url
        )
        make_sessions(gateway, "first")
        report = WebSocketSession.objects.filter(api_gateway=gateway).send_message({"t": 1})
    finally:
        server.close()

    assert (report.delivered, report.failed) == (1, 0)
    assert server.requests == {"first": 1}
    assert server.connections == 1  # the early connection carried the post
    assert server.accepted_at[0] < built_at[0]


def test_a_patched_factory_is_asked_before_anything_is_opened(fake_aws, gateway_a):
    """The testing guide's mocks decide where sends go: no connection is opened ahead."""
    from tests.wire_servers import WireServer

    server = WireServer(stage="mocked")
    try:
        gateway = ApiGateway.objects.create(
            api_name="M", api_id="mocked01", management_endpoint_url=server.url
        )
        make_sessions(gateway, "m1", "m2")
        report = WebSocketSession.objects.filter(api_gateway=gateway).send_message({"t": 1})
        time.sleep(0.05)  # an early open would have been accepted by now
    finally:
        server.close()

    assert report.delivered == 2
    assert fake_aws.posted_ids() == ["m1", "m2"]
    assert server.connections == 0


def test_a_patched_factorys_real_client_sees_every_post_and_is_asked_each_time(
    connections_server, local_gateway
):
    """A test that patches ``get_boto3_client`` to return a real client with a Stubber: the
    stub answers every post (nothing reaches the network), and the client is never kept."""
    import boto3
    from botocore.stub import Stubber

    make_sessions(local_gateway, "s1", "s2")
    made = []

    def factory(service="apigatewayv2", **kwargs):
        client = boto3.client(service, **kwargs)
        stubber = Stubber(client)
        for _ in range(2):
            stubber.add_response("post_to_connection", {})
        stubber.activate()
        made.append(stubber)
        return client

    with patch(PATCH_POINT, side_effect=factory):
        for _ in range(2):
            report = WebSocketSession.objects.all().send_message({"t": 1})
            assert (report.delivered, report.failed) == (2, 0)

    assert len(made) == 2  # asked again for the second send
    for stubber in made:
        stubber.assert_no_pending_responses()
    assert connections_server.requests == []


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_builds_its_own_client_and_connections(settings, monkeypatch):
    """The parent's kept client holds a keep-alive socket: a child must never write on it."""
    from django_aws_api_gateway_websockets import aws
    from tests.wire_servers import WireServer

    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = WireServer(stage="fork")
    try:
        parent_client = aws.management_client(server.url)
        assert sending.post_to_connection(parent_client, "parent-1", b"{}") == "delivered"
        aws._SESSIONS_LOCK.acquire()  # another thread holds it at the moment of the fork
        try:
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    child_client = aws.management_client(server.url)
                    outcome = sending.post_to_connection(child_client, "child-1", b"{}")
                    code = 0 if child_client is not parent_client and outcome == "delivered" else 2
                finally:
                    os._exit(code)
        finally:
            aws._SESSIONS_LOCK.release()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert sending.post_to_connection(parent_client, "parent-2", b"{}") == "delivered"
    finally:
        server.close()
    assert server.connections == 2  # the parent's socket, and the child's own


def test_an_endpoint_that_cannot_be_set_up_fails_only_its_own_sessions(
    settings, monkeypatch, caplog
):
    """botocore refuses a host the model accepts (an underscore): that gateway's sessions are
    counted as failed with one log line, and every other gateway's are still sent."""
    from tests.wire_servers import WireServer

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
    server = WireServer(stage="good")
    try:
        good = ApiGateway.objects.create(
            api_name="G", api_id="good01", management_endpoint_url=server.url
        )
        bad = ApiGateway.objects.create(
            api_name="B", api_id="bad01", management_endpoint_url="http://local_gateway:8000/dev"
        )
        make_sessions(good, "g0", "g1", "g2")
        make_sessions(bad, "b0", "b1")
        make_sessions(good, "g3", "g4")
        with caplog.at_level("ERROR", logger="django_aws_api_gateway_websockets.sending"):
            report = WebSocketSession.objects.order_by("pk").send_message({"t": 1})
    finally:
        server.close()

    assert (report.delivered, report.failed) == (5, 2)
    assert set(server.requests) == {"g0", "g1", "g2", "g3", "g4"}
    lines = [r.getMessage() for r in caplog.records if "not sent" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("2 session(s) not sent: http://local_gateway")


def test_the_boto3_path_logs_one_line_per_kind_of_failure(fake_aws, gateway_a, caplog):
    """As the signed HTTP path does: 40 connections failing alike are one ERROR line."""
    ids = [f"f{n}" for n in range(40)]
    make_sessions(gateway_a, *ids, "ok")
    for connection_id in ids:
        fake_aws.script[connection_id] = [forbidden_error()]
    with caplog.at_level("DEBUG", logger="django_aws_api_gateway_websockets.sending"):
        report = WebSocketSession.objects.all().send_message({"t": 1})

    assert (report.delivered, report.failed) == (1, 40)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1
    assert errors[0].startswith("40 post(s) to @connections failed: ForbiddenException")


@pytest.mark.parametrize("single", [True, False], ids=["one-session", "queryset"])
def test_a_failing_signal_receiver_never_makes_a_delivered_send_raise(
    fake_aws, gateway_a, caplog, single
):
    from django_aws_api_gateway_websockets.signals import messages_sent

    (session,) = make_sessions(gateway_a, "r1")

    def broken_receiver(sender, report, **kwargs):
        raise RuntimeError("metrics backend down")

    messages_sent.connect(broken_receiver)
    try:
        if single:
            session.send_message({"t": 1})
        else:
            assert WebSocketSession.objects.all().send_message({"t": 1}).delivered == 1
    finally:
        messages_sent.disconnect(broken_receiver)
    assert fake_aws.posted_ids() == ["r1"]
    assert any("receiver" in r.getMessage() and r.exc_info for r in caplog.records)


def test_no_backoff_pause_outgrows_the_cap():
    """send_max_retries=10 at 0.05 s would otherwise pause up to 25.6 s inside a 29 s route."""
    pauses = [send_policy.backoff_delay(attempt, 0.05) for attempt in range(40) for _ in range(20)]
    assert max(pauses) <= send_policy.MAX_BACKOFF_SECONDS
    assert max(send_policy.backoff_delay(1, 0.05) for _ in range(200)) <= 0.1


MOTO_AFTER_A_KEPT_SESSION = """
import os, django
django.setup()
from django.conf import settings
settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
from django_aws_api_gateway_websockets import aws
aws.new_client("apigatewaymanagementapi", endpoint_url="https://abc.execute-api.us-east-1.amazonaws.com/prod")
from moto import mock_aws  # imported after a Session was kept, as in a long test run
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
from moto.core import DEFAULT_ACCOUNT_ID
from django_aws_api_gateway_websockets import sending
with mock_aws():
    client = aws.management_client("https://abc.execute-api.us-east-1.amazonaws.com/prod")
    sending.post_to_connection(client, "c1", b"{}")
    backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    print(backend.connections["c1"].data)
"""


def test_moto_intercepts_sends_even_when_a_session_was_kept_before_it_was_imported():
    import subprocess
    import sys

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "NO_PROXY": "*",
    }
    result = subprocess.run(
        [sys.executable, "-c", MOTO_AFTER_A_KEPT_SESSION],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "b'{}'"
