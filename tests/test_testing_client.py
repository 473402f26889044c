"""The shipped test client and outbox (``django_aws_api_gateway_websockets.testing``), used as
a project would: through the pytest fixtures, against a real view and database."""

from __future__ import annotations

import io
import logging
from unittest.mock import Mock, patch

import pytest
from botocore.exceptions import ClientError

from django_aws_api_gateway_websockets.models import WebSocketSession, WebSocketToken
from django_aws_api_gateway_websockets.testing import (
    WebSocketClient,
    api_gateway_connect_headers,
    api_gateway_headers,
    capture_sends,
)
from tests.seed import headers as guide_headers

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.testing_urls")]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw")


def test_header_builders_are_the_guides():
    assert api_gateway_headers() == guide_headers.api_gateway_headers()
    assert api_gateway_connect_headers("x9", "c-2") == guide_headers.api_gateway_connect_headers(
        api_id="x9", connection_id="c-2"
    )
    assert api_gateway_connect_headers()["HTTP_ORIGIN"] == "https://testserver"


class TestConnect:
    def test_logged_in_connect_redeems_a_token_and_stores_the_session(
        self, websocket_client, alice, api_gateway
    ):
        websocket_client.force_login(alice)
        response = websocket_client.connect(channel="lobby")

        assert response.status_code == 200
        assert response.json() == {"status": "connected"}
        assert websocket_client.connected is True
        session = WebSocketSession.objects.get(connection_id=websocket_client.connection_id)
        assert (session.user, session.channel_name, session.api_gateway) == (
            alice,
            "lobby",
            api_gateway,
        )
        assert WebSocketToken.objects.get(user=alice).used is True

    def test_anonymous_connect_to_a_token_view_is_refused(self, websocket_client):
        response = websocket_client.connect(channel="lobby")

        assert (response.status_code, response.json()) == (401, {"error": "Token required"})
        assert websocket_client.connected is False
        assert not WebSocketSession.objects.exists()

    def test_a_token_from_the_token_endpoint_can_be_given(self, websocket_client, alice, client):
        client.force_login(alice)
        token = client.post("/api/ws-token/").json()["token"]

        # The socket's host is not the site's: no session cookie, the token alone vouches.
        assert websocket_client.connect(token=token).status_code == 200
        assert WebSocketSession.objects.get().user == alice

    def test_origin_and_api_checks_are_the_productions(self, api_gateway, websocket_outbox, alice):
        evil = WebSocketClient(api_gateway, origin="https://evil.example.net")
        evil.force_login(alice)
        assert evil.connect().json() == {"error": "Origin not allowed"}

        unknown_api = WebSocketClient(api_id="zzz999", stage="test", websocket_path="/open/{route}")
        assert unknown_api.connect().json() == {"error": "Unknown API"}

    def test_the_source_ip_is_the_events(self, api_gateway, websocket_outbox, alice):
        from django_aws_api_gateway_websockets.models import ConnectionRateLimit

        ws = WebSocketClient(api_gateway, source_ip="198.51.100.7")
        ws.force_login(alice)
        ws.connect()
        assert ConnectionRateLimit.objects.get().ip_address == "198.51.100.7"

    def test_the_events_log_is_on_the_response_and_only_warnings_are_shown(
        self, websocket_client, capsys
    ):
        capsys.readouterr()
        response = websocket_client.connect()

        assert any('"message":"Event handled"' in line for line in response.logs)
        shown = capsys.readouterr().out
        assert "Event handled" not in shown and '"_aws"' not in shown
        assert "WebSocket connect rejected (401)" in shown

    def test_logout_and_connect_again_anonymously(self, websocket_client, alice):
        websocket_client.force_login(alice)
        assert websocket_client.connect().status_code == 200
        with pytest.raises(RuntimeError, match="already connected"):
            websocket_client.connect()
        websocket_client.disconnect()

        websocket_client.logout()
        assert websocket_client.connect().status_code == 401

    def test_a_client_without_origin_is_not_a_browser(self, api_gateway, alice, settings):
        ws = WebSocketClient(api_gateway, origin=None)
        ws.force_login(alice)
        assert ws.connect().status_code == 200
        ws.disconnect()

        settings.WEBSOCKETS = {"require_origin": True}
        assert ws.connect().json() == {"error": "Origin required"}

    def test_as_a_context_manager_it_disconnects(self, api_gateway, alice, keep_test_connection):
        with WebSocketClient(api_gateway) as ws:
            ws.force_login(alice)
            ws.connect()
            session = WebSocketSession.objects.get()
            assert session.connected is True
        session.refresh_from_db()
        assert (ws.connected, session.connected) == (False, False)


class TestMessages:
    def test_send_returns_the_handlers_response(self, websocket_client, alice):
        websocket_client.force_login(alice)
        websocket_client.connect()

        response = websocket_client.send({"action": "whoami"})

        assert (response.status_code, response.json()) == (200, {"user": "alice"})

    def test_an_unknown_connection_is_refused(self, websocket_client, alice):
        websocket_client.force_login(alice)
        websocket_client.connect()
        WebSocketSession.objects.update(connected=False)

        assert websocket_client.send({"action": "whoami"}).status_code == 403

    def test_a_plain_print_is_shown_and_kept(self, websocket_client, alice, capsys):
        websocket_client.force_login(alice)
        websocket_client.connect()
        capsys.readouterr()

        response = websocket_client.send({"action": "shout"})

        assert "a plain print from the view" in response.logs
        assert "a plain print from the view" in capsys.readouterr().out

    def test_without_a_gateway_record_the_route_is_default(self, websocket_client, alice):
        from django_aws_api_gateway_websockets.models import ApiGateway

        websocket_client.force_login(alice)
        websocket_client.connect()
        ApiGateway.objects.all().delete()  # its sessions go with it

        assert websocket_client.send({"action": "whoami"}).json() == {"error": "Unknown connection"}

    def test_sending_before_connecting_is_a_clear_error(self, websocket_client):
        with pytest.raises(RuntimeError, match="not connected"):
            websocket_client.send({"action": "whoami"})

    def test_a_custom_route_is_selected_as_api_gateway_would(self, api_gateway, websocket_outbox):
        from django_aws_api_gateway_websockets.models import ApiGatewayAdditionalRoute

        ws = WebSocketClient(api_gateway, websocket_path="/open/{route}")
        ws.connect()
        assert ws.send({"action": "whoami"}).json() == {"user": ""}  # $default: /open/default
        ws.disconnect()

        # bulk_create: saving a route of a created API would create it in AWS too.
        ApiGatewayAdditionalRoute.objects.bulk_create(
            [ApiGatewayAdditionalRoute(api_gateway=api_gateway, name="whoami", route_key="whoami")]
        )
        ws.connect()
        assert ws.send({"action": "whoami"}).json() == {"route": "whoami"}  # /open/whoami
        assert ws.send({"action": "other"}).json() == {"error": "Unknown handler"}
        assert ws.send({"action": "other"}, route_key="whoami").json() == {"route": "whoami"}

    def test_a_send_runs_only_the_views_queries(
        self, websocket_client, alice, django_assert_num_queries
    ):
        websocket_client.force_login(alice)
        websocket_client.connect()
        websocket_client.send({"action": "whoami"})  # warm: the prepared statements

        # The session (with its gateway and user) and its request count: the view's own two.
        with django_assert_num_queries(2):
            websocket_client.send({"action": "whoami"})


class TestOutbox:
    def test_a_single_send_is_recorded_decoded(self, websocket_client, websocket_outbox, alice):
        websocket_client.force_login(alice)
        websocket_client.connect()

        websocket_client.send({"action": "whisper", "text": "psst"})

        assert websocket_client.received == [{"whisper": "psst"}]
        (message,) = websocket_outbox
        assert (message.connection_id, message.delivered) == (websocket_client.connection_id, True)
        assert message.text == '{"whisper":"psst"}'
        assert message.endpoint_url == "https://testserver"

    def test_a_fan_out_reaches_each_connection_of_the_channel(
        self, api_gateway, websocket_outbox, alice, bob
    ):
        a, b, elsewhere = (WebSocketClient(api_gateway) for _ in range(3))
        a.force_login(alice)
        b.force_login(bob)
        elsewhere.force_login(bob)
        a.connect(channel="general")
        b.connect(channel="general")
        elsewhere.connect(channel="support")

        response = a.send({"action": "say", "text": "hello"})

        assert response.json() == {"delivered": 2, "gone": 0}
        assert a.received == b.received == [{"said": "hello", "by": "alice"}]
        assert elsewhere.received == []
        assert len(websocket_outbox) == 2

    def test_a_send_to_a_gone_connection_is_visible(
        self, api_gateway, websocket_outbox, alice, bob
    ):
        a, b = WebSocketClient(api_gateway), WebSocketClient(api_gateway)
        a.force_login(alice)
        b.force_login(bob)
        a.connect(channel="general")
        b.connect(channel="general")
        # bob's socket dropped; API Gateway has not delivered his $disconnect yet.
        websocket_outbox.mark_gone(b.connection_id)

        response = a.send({"action": "say", "text": "anyone?"})

        assert response.json() == {"delivered": 1, "gone": 1}
        assert b.received == []
        (gone,) = websocket_outbox.gone
        assert (gone.connection_id, gone.data) == (
            b.connection_id,
            {"said": "anyone?", "by": "alice"},
        )
        assert WebSocketSession.objects.get(connection_id=b.connection_id).connected is False

    def test_after_disconnect_posts_are_gone(self, websocket_client, websocket_outbox, alice):
        websocket_client.force_login(alice)
        websocket_client.connect()
        session = WebSocketSession.objects.get()

        assert websocket_client.disconnect().json() == {"status": "disconnected"}
        session.send_message({"late": True})

        assert websocket_outbox.gone[0].data == {"late": True}
        assert websocket_outbox.delivered == []

    def test_sends_outside_any_client_are_recorded(self, websocket_session, websocket_outbox):
        websocket_session.send_message({"n": 1})
        WebSocketSession.objects.all().send_message({"n": 2})

        assert websocket_outbox.to("connection-1") == [{"n": 1}, {"n": 2}]

    def test_a_single_send_answers_as_botocore_would(self, websocket_session, websocket_outbox):
        response = websocket_session.send_message({"n": 1})
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200

        websocket_outbox.mark_gone("connection-1")
        assert websocket_session.send_message({"n": 2}) is None
        websocket_session.refresh_from_db()
        assert websocket_session.connected is False
        assert [(m.data, m.delivered) for m in websocket_outbox] == [
            ({"n": 1}, True),
            ({"n": 2}, False),
        ]

    def test_a_tests_own_mock_still_wins(self, websocket_session, websocket_outbox):
        aws = Mock()
        with patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=aws):
            websocket_session.send_message({"n": 1})

        aws.post_to_connection.assert_called_once()
        assert list(websocket_outbox) == []

    def test_each_capture_starts_empty_and_ends_cleanly(self, websocket_session):
        from django_aws_api_gateway_websockets import models

        original = models.get_boto3_client
        with capture_sends() as first:
            websocket_session.send_message({"n": 1})
        with capture_sends() as second:
            pass
        assert (len(first), len(second)) == (1, 0)
        assert models.get_boto3_client is original

    def test_the_management_api_as_a_project_calls_it(self, websocket_outbox, api_gateway):
        from django_aws_api_gateway_websockets import models

        connections = models.get_boto3_client(
            "apigatewaymanagementapi", endpoint_url="https://example.test/dev"
        )
        answer = connections.post_to_connection(ConnectionId="c1", Data=io.BytesIO(b"not json"))
        assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert connections.get_connection(ConnectionId="c1")["Identity"]["SourceIp"]
        connections.delete_connection(ConnectionId="c1")

        for call in (connections.get_connection, connections.delete_connection):
            with pytest.raises(ClientError) as gone:
                call(ConnectionId="c1")
            assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
        with pytest.raises(ClientError, match="GoneException"):
            connections.post_to_connection(ConnectionId="c1", Data="again")
        assert [(m.data, m.delivered) for m in websocket_outbox] == [
            ("not json", True),
            ("again", False),
        ]
        assert websocket_outbox[0].endpoint_url == "https://example.test/dev"

    def test_other_services_are_not_captured(self, websocket_outbox):
        from django_aws_api_gateway_websockets import models

        other = Mock()
        with patch.object(models.aws, "new_client", return_value=other) as new_client:
            assert models.get_boto3_client("apigatewayv2") is other
        new_client.assert_called_once_with("apigatewayv2")

    def test_received_without_an_outbox_says_what_to_do(self, api_gateway):
        with pytest.raises(RuntimeError, match="websocket_outbox"):
            WebSocketClient(api_gateway).received  # noqa: B018


def test_the_handler_leaves_a_set_up_processs_logging_alone(
    settings, api_gateway, websocket_outbox
):
    # LOGGING without disable_existing_loggers: dictConfig's default (True) would silence
    # every logger that exists, were the handler to set Django up a second time.
    settings.LOGGING = {"version": 1, "root": {"level": "WARNING"}}
    made_after_setup = logging.getLogger("tests.made_after_setup")

    WebSocketClient(
        api_gateway, websocket_path="/a-path-no-handler-was-built-for/{route}"
    ).connect()

    assert made_after_setup.disabled is False


@pytest.mark.django_db(transaction=True)
def test_in_a_transactional_test_the_events_commit(websocket_client, alice):
    from django.db import connection

    websocket_client.force_login(alice)
    assert websocket_client.connect().status_code == 200

    assert connection.in_atomic_block is False  # no test transaction around the events
    assert WebSocketSession.objects.get().user == alice


def test_caplog_sees_the_librarys_records_from_a_client_event(websocket_client, caplog):
    websocket_client.connect()  # builds the handler, whose JSON logging must only add
    with caplog.at_level(logging.WARNING, logger="django_aws_api_gateway_websockets"):
        websocket_client.connect()

    assert "WebSocket connect rejected (401): no ws_token" in caplog.messages
