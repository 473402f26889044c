"""The keepalive ping: ``{"action": "ping"}`` is answered ``{"type": "pong"}`` by the library,
through every check of a message but without a database write (the JS client sends one every
``keepaliveSeconds`` to stay inside API Gateway's 10-minute idle timeout)."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.http import JsonResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.serverless.local import authenticate_connect_event
from django_aws_api_gateway_websockets.views import WebSocketView
from tests import support_views
from tests.lambda_support import SAMPLE_API_ID, load_event
from tests.seed.headers import api_gateway_headers
from tests.test_query_counts import statements

pytestmark = pytest.mark.django_db

PING = {"action": "ping"}


class OwnPingView(WebSocketView):
    """A project that already had a ``ping`` handler keeps it."""

    USE_WS_TOKEN = False

    def ping(self, request, *args, **kwargs):
        return JsonResponse({"type": "own-pong"})


urlpatterns = [path("own/<slug:route>", OwnPingView.as_view())]


def send(client, body, path="/ws/default"):
    return client.post(
        path, data=json.dumps(body), content_type="application/json", **api_gateway_headers()
    )


# ----------------------------------------------------------------- through the Lambda handler


@pytest.fixture
def lambda_handler(settings, keep_test_connection, django_user_model):
    settings.ALLOWED_HOSTS = [".amazonaws.com"]
    settings.ROOT_URLCONF = "tests.support_urls"
    settings.WEBSOCKETS = {"websocket_path": "/token/{route}"}
    ApiGateway.objects.create(
        api_name="Sample",
        api_id=SAMPLE_API_ID,
        stage_name="production",
        management_endpoint_url="https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/production",
    )
    handler = make_lambda_handler()
    user = django_user_model.objects.create_user(username="alice")
    connected = handler(authenticate_connect_event(load_event("connect"), user), None)
    assert connected["statusCode"] == 200
    return handler


def ping_event():
    event = load_event("message_who_is_here")
    event["body"] = json.dumps(PING)
    return event


def test_ping_is_answered_pong_with_one_read_and_no_write(lambda_handler):
    before = WebSocketSession.objects.get()
    with CaptureQueriesContext(connection) as captured:
        response = lambda_handler(ping_event(), None)
    sql = statements(captured)
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"type": "pong"}
    # The session lookup that authenticates the connection, and nothing else.
    assert len(sql) == 1, sql
    assert sql[0].lstrip().upper().startswith("SELECT"), sql
    after = WebSocketSession.objects.get()
    assert (after.request_count, after.updated_on) == (before.request_count, before.updated_on)


def test_any_other_message_still_counts(lambda_handler):
    event = load_event("message_who_is_here")
    event["body"] = json.dumps({"action": "echo"})
    lambda_handler(event, None)
    assert WebSocketSession.objects.get().request_count == 1


# ----------------------------------------------------------------- the checks still apply


@pytest.mark.urls("tests.support_urls")
class TestPingIsAMessage:
    def test_from_an_unknown_connection_is_403_not_pong(self, client, api_gateway):
        response = send(client, PING)
        assert response.status_code == 403
        assert response.json() != {"type": "pong"}

    def test_from_a_disconnected_session_is_403(self, client, websocket_session):
        websocket_session.connected = False
        websocket_session.save()
        assert send(client, PING).status_code == 403

    def test_from_a_deactivated_user_is_403(self, client, websocket_session, django_user_model):
        user = django_user_model.objects.create_user(username="dora", is_active=False)
        WebSocketSession.objects.filter(pk=websocket_session.pk).update(user=user)
        assert send(client, PING).status_code == 403

    def test_without_the_permission_the_view_requires_is_403(self, client, websocket_session):
        assert send(client, PING, path="/any/default").status_code == 403

    def test_answered_on_a_view_with_an_explicit_handler_list(self, client, websocket_session):
        support_views.CALLS.clear()
        response = send(client, PING, path="/listed/default")
        assert response.json() == {"type": "pong"}
        assert support_views.CALLS == []  # not the default handler

    def test_a_handler_key_selects_a_handler_as_before(self, client, websocket_session):
        response = send(client, {"handler": "echo", "action": "ping"})
        assert response.json()["handler"] == "echo"

    def test_a_ping_with_a_non_json_object_body_is_still_400(self, client, websocket_session):
        response = client.post(
            "/ws/default", data="[]", content_type="application/json", **api_gateway_headers()
        )
        assert response.status_code == 400


@pytest.mark.urls(__name__)
def test_a_views_own_ping_handler_wins(client, websocket_session):
    response = send(client, PING, path="/own/default")
    assert response.json() == {"type": "own-pong"}
    websocket_session.refresh_from_db()
    assert websocket_session.request_count == 1  # an ordinary handler, counted as before


# ----------------------------------------------------------------- runapigateway's setting


@pytest.mark.parametrize(
    ("configured", "message"),
    [("soon", "must be a number of seconds, not 'soon'"), (0, "must be positive")],
)
def test_runapigateway_refuses_a_bad_idle_timeout_setting(settings, configured, message):
    from django.core.management import CommandError, call_command

    settings.WEBSOCKETS = {"local_gateway_idle_timeout": configured}
    with pytest.raises(CommandError, match=message):
        call_command("runapigateway", "--port", "0")
