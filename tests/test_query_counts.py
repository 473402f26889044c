"""SQL statements per event, counted through the real Lambda handler so they cannot regress.

Targets (issue "Performance"): a $default message from a known connection in at most 2
statements, $disconnect in at most 2, $connect with token and rate limit in at most 7.
Savepoints are left out: they come from the test's own transaction, not from the view.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.serverless.local import authenticate_connect_event
from tests.lambda_support import SAMPLE_API_ID, load_event

pytestmark = pytest.mark.django_db


def statements(captured: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"]
        for query in captured.captured_queries
        if not query["sql"].startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))
    ]


@pytest.fixture
def handler(settings, keep_test_connection):
    settings.ALLOWED_HOSTS = [".amazonaws.com"]
    settings.ROOT_URLCONF = "tests.support_urls"
    # The token-checking echo view: query counts of the library, not of an app's handlers.
    settings.WEBSOCKETS = {"websocket_path": "/token/{route}"}
    ApiGateway.objects.create(
        api_name="Sample",
        api_id=SAMPLE_API_ID,
        stage_name="production",
        management_endpoint_url="https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/production",
    )
    return make_lambda_handler()


@pytest.fixture
def connect_event(django_user_model):
    user = django_user_model.objects.create_user(username="alice")
    return authenticate_connect_event(load_event("connect"), user)


def run(handler, event):
    with CaptureQueriesContext(connection) as captured:
        response = handler(event, None)
    return response, statements(captured)


def test_connect_with_token_and_rate_limit(handler, connect_event):
    response, sql = run(handler, connect_event)
    assert response["statusCode"] == 200
    assert len(sql) <= 7, sql


def test_message_from_a_known_connection(handler, connect_event):
    handler(connect_event, None)
    event = load_event("message_who_is_here")
    event["body"] = json.dumps({"action": "echo"})
    response, sql = run(handler, event)
    assert response["statusCode"] == 200
    assert len(sql) <= 2, sql


def test_disconnect(handler, connect_event):
    handler(connect_event, None)
    response, sql = run(handler, load_event("disconnect"))
    assert response["statusCode"] == 200
    assert len(sql) <= 2, sql
    assert WebSocketSession.objects.get().connected is False
