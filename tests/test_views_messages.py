"""Messages and $disconnect: session lookup, body validation and handler selection."""

from __future__ import annotations

import json

import pytest
from django.core import mail

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.views import WebSocketView
from tests import support_views
from tests.seed.headers import api_gateway_headers

pytestmark = [pytest.mark.urls("tests.support_urls"), pytest.mark.django_db]


def send(client, body, path="/ws/default", raw=False, **overrides):
    headers = api_gateway_headers()
    headers.update(overrides)
    data = body if raw else json.dumps(body)
    return client.post(path, data=data, content_type="application/json", **headers)


@pytest.fixture(autouse=True)
def clear_calls():
    support_views.CALLS.clear()


class TestSessionLookup:
    def test_unknown_connection_is_403_not_500(self, client, api_gateway):
        response = send(client, {"action": "echo"})
        assert response.status_code == 403
        assert support_views.CALLS == []

    def test_disconnected_session_cannot_send(self, client, websocket_session):
        websocket_session.connected = False
        websocket_session.save()
        assert send(client, {"action": "echo"}).status_code == 403

    def test_connection_of_another_api_is_refused(self, client, websocket_session):
        other = {"HTTP_USER_AGENT": "AmazonAPIGateway_zzz", "HTTP_X_AMZN_APIGATEWAY_API_ID": "zzz"}
        assert send(client, {"action": "echo"}, **other).status_code == 403
        assert support_views.CALLS == []

    def test_user_comes_from_the_session(self, client, websocket_session, django_user_model):
        websocket_session.user = django_user_model.objects.create_user(username="carol")
        websocket_session.save()
        response = send(client, {"action": "echo"})
        assert response.json() == {"handler": "echo", "user": "carol"}

    def test_request_count_increments(self, client, websocket_session):
        send(client, {"action": "echo"})
        send(client, {"action": "echo"})
        websocket_session.refresh_from_db()
        assert websocket_session.request_count == 2

    def test_view_exposes_body_gateway_and_session(self, websocket_session):
        from django.test import RequestFactory

        view = support_views.EchoView()
        request = RequestFactory().post(
            "/ws/default",
            data='{"action": "x", "n": 1}',
            content_type="application/json",
            **api_gateway_headers(),
        )
        view.setup(request, route="default")
        view.dispatch(request, route="default")
        assert view.body == {"action": "x", "n": 1}
        assert view.websocket_session == websocket_session
        assert view.api_gateway == websocket_session.api_gateway


class TestBody:
    @pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"text"', "", "\xff\xfe"])
    def test_not_a_json_object_is_400(self, client, websocket_session, raw):
        response = send(client, raw, raw=True)
        assert response.status_code == 400
        assert support_views.CALLS == []

    def test_no_handler_or_action_key_is_400(self, client, websocket_session):
        response = send(client, {"message": "hi"})
        assert response.status_code == 400
        assert "action" in response.json()["error"]

    def test_body_over_max_size_is_413(self, client, websocket_session):
        response = send(client, {"action": "echo", "pad": "x" * 100}, path="/small/default")
        assert response.status_code == 413
        assert support_views.CALLS == []

    def test_body_at_default_limit_accepted(self, client, websocket_session):
        body = {"action": "echo", "pad": ""}
        body["pad"] = "x" * (128 * 1024 - len(json.dumps(body)))
        assert send(client, body).status_code == 200


class TestHandlerSelection:
    def test_action_names_the_handler(self, client, websocket_session):
        assert send(client, {"action": "echo"}).json()["handler"] == "echo"

    def test_handler_key_wins_over_action(self, client, websocket_session):
        response = send(client, {"handler": "echo", "action": "default"})
        assert response.json()["handler"] == "echo"

    def test_disallowed_handler_key_falls_back_to_action(self, client, websocket_session):
        response = send(client, {"handler": "dispatch", "action": "echo"})
        assert response.json()["handler"] == "echo"

    @pytest.mark.parametrize(
        "name",
        [
            "connect",
            "disconnect",
            "dispatch",
            "setup",
            "as_view",
            "http_method_not_allowed",
            "options",
            "permission_denied",
            "has_any_permission",
            "_private",
            "_additional_connection_checks",
            "__init__",
            "__class__",
            "change_channel",
            "missing",
            "",
        ],
    )
    def test_framework_and_private_methods_are_never_called(self, client, websocket_session, name):
        response = send(client, {"action": name})
        assert response.json()["handler"] == "default"
        assert support_views.CALLS == ["default"]

    @pytest.mark.parametrize("value", [None, 1, ["echo"], {"x": 1}])
    def test_non_string_names_go_to_default(self, client, websocket_session, value):
        assert send(client, {"action": value}).json()["handler"] == "default"

    def test_explicit_list_still_refuses_framework_names(self, client, websocket_session):
        for name in ("dispatch", "connect", "setup", "_private"):
            assert send(client, {"action": name}, path="/listed/default").json() == {
                "handler": "default",
                "body": {"action": name},
            }
        assert send(client, {"action": "echo"}, path="/listed/default").json()["handler"] == "echo"

    def test_explicit_list_excludes_unlisted_public_methods(self, client, websocket_session):
        response = send(client, {"action": "explode"}, path="/listed/default")
        assert response.json()["handler"] == "default"

    def test_allowed_names_of_the_default_policy(self):
        assert support_views.EchoView.allowed_handler_names() == {"default", "echo", "explode"}
        assert support_views.ListedView.allowed_handler_names() == {
            "default",
            "echo",
            "change_channel",
        }

    def test_base_default_rejects_unknown_messages(self, websocket_session, rf):
        request = rf.post(
            "/", data='{"action": "x"}', content_type="application/json", **api_gateway_headers()
        )
        response = WebSocketView.as_view()(request, route="default")
        assert response.status_code == 400

    def test_route_from_event_context_on_bare_path(self, client, websocket_session):
        context = {
            "eventType": "MESSAGE",
            "routeKey": "$default",
            "connectionId": "connection-1",
            "apiId": "abc123",
        }
        response = send(
            client, {"action": "echo"}, path="/ws/", **{"apig_wsgi.request_context": context}
        )
        assert response.json()["handler"] == "echo"


class TestHandlerErrors:
    def test_exception_gives_generic_500_and_is_logged(
        self, client, websocket_session, caplog, settings
    ):
        settings.ADMINS = [("Ops", "ops@example.com")]
        response = send(client, {"action": "explode"})
        assert response.status_code == 500
        assert response.json() == {"error": "Internal error"}
        assert "secret internal detail" not in response.content.decode()
        assert any(record.exc_info for record in caplog.records)
        # Mailed by default (SEND_EXCEPTION_MAIL = True), naming the connection, not the error.
        assert len(mail.outbox) == 1
        assert "connection-1" in mail.outbox[0].body
        assert "secret internal detail" not in mail.outbox[0].body

    def test_no_exception_mail_when_the_view_opts_out(self, client, websocket_session, settings):
        settings.ADMINS = [("Ops", "ops@example.com")]
        assert send(client, {"action": "explode"}, path="/quiet/default").status_code == 500
        assert mail.outbox == []


class TestChangeChannel:
    path = "/listed/default"

    def test_moves_the_session(self, client, websocket_session):
        response = send(client, {"action": "change_channel", "channel": "lobby"}, path=self.path)
        assert response.json() == {"channel": "lobby"}
        websocket_session.refresh_from_db()
        assert websocket_session.channel_name == "lobby"

    @pytest.mark.parametrize("channel", [None, "", "a b", 5, "x" * 192])
    def test_missing_or_invalid_channel_is_400(self, client, websocket_session, channel):
        body = {"action": "change_channel"}
        if channel is not None:
            body["channel"] = channel
        response = send(client, body, path=self.path)
        assert response.status_code == 400
        websocket_session.refresh_from_db()
        assert websocket_session.channel_name == "general"

    def test_not_a_handler_unless_allowed(self, client, websocket_session):
        send(client, {"action": "change_channel", "channel": "lobby"})
        websocket_session.refresh_from_db()
        assert websocket_session.channel_name == "general"


class TestDisconnect:
    def test_unknown_connection_is_harmless_200(self, client, api_gateway):
        response = send(client, "", raw=True, path="/ws/disconnect")
        assert response.status_code == 200

    def test_marks_only_this_session(self, client, websocket_session, api_gateway):
        other = WebSocketSession.objects.create(connection_id="other", api_gateway=api_gateway)
        assert send(client, "", raw=True, path="/ws/disconnect").status_code == 200
        websocket_session.refresh_from_db()
        other.refresh_from_db()
        assert (websocket_session.connected, other.connected) == (False, True)

    def test_another_api_cannot_disconnect_a_session(self, client, websocket_session):
        ApiGateway.objects.create(api_name="Other", api_id="zzz")
        other = {"HTTP_USER_AGENT": "AmazonAPIGateway_zzz", "HTTP_X_AMZN_APIGATEWAY_API_ID": "zzz"}
        assert send(client, "", raw=True, path="/ws/disconnect", **other).status_code == 403
        websocket_session.refresh_from_db()
        assert websocket_session.connected is True

    def test_missing_headers_rejected(self, client, websocket_session):
        response = send(client, "", raw=True, path="/ws/disconnect", HTTP_CONNECTIONID="")
        assert response.status_code == 400

    def test_event_context_disconnect_on_bare_path(self, client, websocket_session):
        context = {"eventType": "DISCONNECT", "connectionId": "connection-1", "apiId": "abc123"}
        send(client, "", raw=True, path="/ws/", **{"apig_wsgi.request_context": context})
        websocket_session.refresh_from_db()
        assert websocket_session.connected is False


class TestRobustness:
    def test_non_numeric_content_length_is_400(self, websocket_session):
        from django.test import RequestFactory

        request = RequestFactory().post(
            "/ws/default",
            data='{"action": "echo"}',
            content_type="application/json",
            **api_gateway_headers(),
        )
        request.META["CONTENT_LENGTH"] = "12abc"
        response = support_views.EchoView.as_view()(request, route="default")
        assert response.status_code == 400

    def test_permission_view_without_auth_middleware(self, settings, client, websocket_session):
        settings.MIDDLEWARE = [
            m for m in settings.MIDDLEWARE if "AuthenticationMiddleware" not in m
        ]
        assert send(client, {"action": "echo"}, path="/any/default").status_code == 403


class TestHostileBodies:
    @pytest.mark.parametrize("raw", ["[" * 100000, '{"a":' * 20000 + "1" + "}" * 20000])
    def test_absurdly_nested_json_is_400(self, client, websocket_session, raw):
        assert send(client, raw, raw=True).status_code == 400

    def test_mixin_methods_are_not_handlers(self):
        from django.views.generic.base import ContextMixin

        class Helpers:
            def delete_everything(self, request, *args, **kwargs):
                raise AssertionError("must never be called")

        class MixedView(Helpers, ContextMixin, WebSocketView):
            def mine(self, request, *args, **kwargs):
                return None

        assert MixedView.allowed_handler_names() == {"default", "mine"}


def test_deactivated_user_cannot_send(client, websocket_session, django_user_model):
    websocket_session.user = django_user_model.objects.create_user(username="gone", is_active=False)
    websocket_session.save()
    assert send(client, {"action": "echo"}).status_code == 403
    assert support_views.CALLS == []
