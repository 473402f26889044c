"""Property-based: whatever a client (or a broken event) throws at the Lambda handler and the
view, the answer is a result, never an exception; never a 5xx from client input; and no
method outside the allowed handlers ever runs."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from tests import support_views
from tests.lambda_support import SAMPLE_API_ID, SAMPLE_CONNECTION_ID, load_event

pytestmark = pytest.mark.django_db

PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from(
    [
        "echo",
        "default",
        "connect",
        "disconnect",
        "dispatch",
        "setup",
        "__init__",
        "__class__",
        "_private",
        "explode",
        "change_channel",
        "as_view",
        "options",
        "http_method_not_allowed",
        "allowed_handler_names",
        "permission_denied",
        "route_for",
    ]
) | st.text(max_size=30)


@pytest.fixture
def handler(settings, keep_test_connection):
    settings.ALLOWED_HOSTS = [".amazonaws.com", ".on.aws"]
    settings.ROOT_URLCONF = "tests.support_urls"
    settings.WEBSOCKETS = {"websocket_path": "/ws/{route}", "rate_limit_max_attempts": 10**6}
    gateway = ApiGateway.objects.create(
        api_name="Sample",
        api_id=SAMPLE_API_ID,
        stage_name="production",
        management_endpoint_url="https://x.execute-api.eu-west-1.amazonaws.com/production",
    )
    WebSocketSession.objects.create(
        connection_id=SAMPLE_CONNECTION_ID, api_gateway=gateway, channel_name="general"
    )
    return make_lambda_handler()


@PROPERTY_SETTINGS
@given(body=json_values, handler_name=names, action=names)
def test_messages_never_run_disallowed_methods_or_fail(handler, body, handler_name, action):
    payload = {"handler": handler_name, "action": action, "data": body}
    event = load_event("message_who_is_here")
    event["body"] = json.dumps(payload)
    support_views.CALLS.clear()
    result = handler(event, None)
    allowed = support_views.EchoView.allowed_handler_names()
    if result["statusCode"] == 500:
        # Only the deliberately raising handler may answer 500, and only when selected.
        assert "explode" in (handler_name, action)
    else:
        assert result["statusCode"] < 500
    assert set(support_views.CALLS) <= allowed


@PROPERTY_SETTINGS
@given(raw=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_arbitrary_message_bodies_are_4xx_or_handled(handler, raw):
    event = load_event("message_who_is_here")
    event["body"] = raw
    assert handler(event, None)["statusCode"] < 500


@PROPERTY_SETTINGS
@given(
    headers=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=40), max_size=8),
    query=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=40), max_size=5),
    connection_id=st.text(max_size=40),
    source_ip=st.text(max_size=40),
)
def test_arbitrary_connects_are_answered_below_500(
    handler, headers, query, connection_id, source_ip
):
    event = load_event("connect")
    event["headers"].update(headers)
    event.pop("multiValueHeaders")
    event["queryStringParameters"] = query
    event.pop("multiValueQueryStringParameters")
    event["requestContext"]["connectionId"] = connection_id or "x"
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    assert handler(event, None)["statusCode"] < 500


@PROPERTY_SETTINGS
@given(event=json_values)
def test_arbitrary_events_never_raise(handler, event):
    result = handler(event, None)
    assert result is not None


@PROPERTY_SETTINGS
@given(
    context=st.dictionaries(
        st.sampled_from(
            [
                "eventType",
                "routeKey",
                "connectionId",
                "apiId",
                "stage",
                "domainName",
                "identity",
                "requestId",
            ]
        ),
        json_values | st.sampled_from(["CONNECT", "MESSAGE", "DISCONNECT"]),
    ),
    body=json_values,
    encoded=st.booleans(),
)
def test_arbitrary_request_contexts_never_raise_or_500(handler, context, body, encoded):
    event = {"requestContext": context, "body": body, "isBase64Encoded": encoded}
    result = handler(event, None)
    assert isinstance(result, dict) and result.get("statusCode", 200) < 500


http_parts = st.dictionaries(
    st.sampled_from(
        [
            "version",
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "body",
            "isBase64Encoded",
            "cookies",
            "rawQueryString",
        ]
    ),
    json_values | st.sampled_from(["1.0", "2.0", "abc", "e30="]),
)


@PROPERTY_SETTINGS
@given(
    parts=http_parts,
    path=st.sampled_from(["/", "/login/", "/ws/connect", "/ws/default", "/admin/"]) | st.text(),
    version=st.sampled_from(["http_rest_v1", "http_api_v2", "http_alb"]),
)
def test_arbitrary_http_events_are_answered_below_500(handler, parts, path, version):
    """The shape check is complete: whatever passes it becomes a request, so no broken HTTP
    event can reach the 500 that is kept for the application's own errors."""
    event = load_event(version)
    event["rawPath" if "rawPath" in event else "path"] = path
    event.update(parts)
    result = handler(event, None)
    assert isinstance(result, dict) and result["statusCode"] < 500
