"""$connect: every check of WebSocketView, its status code, and what it stores."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.utils import timezone

from django_aws_api_gateway_websockets.models import (
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from tests import support_views
from tests.seed.headers import api_gateway_connect_headers

pytestmark = [pytest.mark.urls("tests.support_urls"), pytest.mark.django_db]


def connect(client, path="/ws/connect", connection_id="connection-1", **overrides):
    headers = api_gateway_connect_headers(connection_id=connection_id)
    headers.update(overrides)
    headers = {key: value for key, value in headers.items() if value is not None}
    return client.post(path, data="", content_type="application/json", **headers)


def failed_attempts():
    return ConnectionRateLimit.objects.filter(successful=False).count()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw")


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


def fresh_token(client) -> str:
    response = client.post("/api/ws-token/")
    assert response.status_code == 200
    return response.json()["token"]


class TestAccepted:
    def test_session_stored_with_channel_gateway_and_attempt(self, client, api_gateway):
        response = connect(client, "/ws/connect?channel=lobby")
        assert response.status_code == 200
        session = WebSocketSession.objects.get(connection_id="connection-1")
        assert (session.channel_name, session.api_gateway, session.connected) == (
            "lobby",
            api_gateway,
            True,
        )
        assert ConnectionRateLimit.objects.filter(successful=True, ip_address="127.0.0.1").count()

    def test_default_channel_of_the_gateway_when_none_asked(self, client, api_gateway):
        api_gateway.default_channel_name = "lobby"
        api_gateway.save()
        assert connect(client).status_code == 200
        assert WebSocketSession.objects.get().channel_name == "lobby"

    def test_logged_in_user_is_stored_without_token_view(self, alice_client, alice, api_gateway):
        assert connect(alice_client, HTTP_COOKIE=None).status_code == 200
        assert WebSocketSession.objects.get().user == alice

    def test_route_from_event_context_with_bare_ws_path(self, client, api_gateway):
        context = {
            "eventType": "CONNECT",
            "connectionId": "connection-1",
            "apiId": "abc123",
            "identity": {"sourceIp": "198.51.100.7"},
        }
        response = connect(client, "/ws/?channel=lobby", **{"apig_wsgi.request_context": context})
        assert response.status_code == 200
        assert WebSocketSession.objects.get().channel_name == "lobby"
        assert ConnectionRateLimit.objects.get().ip_address == "198.51.100.7"

    def test_no_content_length_header_needed(self, api_gateway):
        request = RequestFactory().post(
            "/ws/connect",
            data="",
            content_type="application/json",
            **api_gateway_connect_headers(),
        )
        request.META.pop("CONTENT_LENGTH", None)
        response = support_views.EchoView.as_view()(request, route="connect")
        assert response.status_code == 200

    def test_overridden_connect_hook_runs(self, client, api_gateway):
        support_views.CALLS.clear()
        assert connect(client).status_code == 200
        assert support_views.CALLS == ["connect"]


class TestTokens:
    def test_full_token_flow(self, alice_client, alice, api_gateway):
        token = fresh_token(alice_client)
        response = connect(alice_client, f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 200
        assert WebSocketSession.objects.get().user == alice
        assert WebSocketToken.objects.get(token=token).used is True

    def test_missing_token_rejected(self, alice_client, api_gateway):
        response = connect(alice_client, "/token/connect", HTTP_COOKIE=None)
        assert response.status_code == 401
        assert not WebSocketSession.objects.exists()
        assert failed_attempts() == 1

    def test_reused_token_rejected(self, alice_client, api_gateway):
        token = fresh_token(alice_client)
        path = f"/token/connect?ws_token={token}"
        assert connect(alice_client, path, HTTP_COOKIE=None).status_code == 200
        again = connect(alice_client, path, connection_id="connection-2", HTTP_COOKIE=None)
        assert again.status_code == 401
        assert WebSocketSession.objects.count() == 1

    def test_token_of_another_session_rejected(self, alice, alice_client, api_gateway):
        token = fresh_token(alice_client)
        thief = Client()
        thief.force_login(alice)  # same user, different Django session
        response = connect(thief, f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 401

    def test_token_expiry_setting_applies_at_validation(self, settings, alice_client, api_gateway):
        settings.WEBSOCKETS = {"token_expiry_seconds": 5}
        token = fresh_token(alice_client)
        WebSocketToken.objects.filter(token=token).update(
            created_at=timezone.now() - timedelta(seconds=10)
        )
        response = connect(alice_client, f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 401

    def test_garbage_token_rejected(self, alice_client, api_gateway):
        response = connect(alice_client, "/token/connect?ws_token=%00%ff'--", HTTP_COOKIE=None)
        assert response.status_code == 401


class TestHeaders:
    @pytest.mark.parametrize(
        "header",
        [
            "HTTP_CONNECTIONID",
            "HTTP_USER_AGENT",
            "HTTP_X_AMZN_APIGATEWAY_API_ID",
            "HTTP_SEC_WEBSOCKET_KEY",
            "HTTP_SEC_WEBSOCKET_VERSION",
        ],
    )
    def test_missing_header_rejected_and_counted(self, client, api_gateway, header):
        response = connect(client, **{header: None})
        assert response.status_code == 400
        assert response.json() == {"error": "Missing required headers"}
        assert not WebSocketSession.objects.exists()
        assert failed_attempts() == 1

    def test_useragent_must_come_from_api_gateway(self, client, api_gateway):
        response = connect(client, HTTP_USER_AGENT="curl/8.0")
        assert response.status_code == 403
        assert failed_attempts() == 1

    def test_pinned_api_id_accepts_its_own_gateway(self, client, api_gateway):
        # The original package inverted this check and refused the right gateway.
        assert connect(client, "/pinned/connect").status_code == 200

    @pytest.mark.parametrize(
        "overrides",
        [
            {"HTTP_USER_AGENT": "AmazonAPIGateway_other1"},
            {"HTTP_X_AMZN_APIGATEWAY_API_ID": "other1"},
        ],
    )
    def test_pinned_api_id_refuses_other_gateways(self, client, api_gateway, overrides):
        assert connect(client, "/pinned/connect", **overrides).status_code == 403

    @pytest.mark.parametrize("connection_id", ["bad id", "x" * 129, "a;DROP", "é"])
    def test_invalid_connection_id_rejected_before_storing(
        self, client, api_gateway, connection_id
    ):
        assert connect(client, connection_id=connection_id).status_code == 400
        assert not WebSocketSession.objects.exists()

    def test_real_aws_connection_id_accepted(self, client, api_gateway):
        assert connect(client, connection_id="L0SM9cOFvHcCIhw=").status_code == 200

    def test_disallowed_host_is_400(self, client, api_gateway):
        response = connect(client, HTTP_HOST="attacker.example")
        assert response.status_code == 400
        assert "attacker" not in response.content.decode()

    def test_unknown_api_gateway_refused(self, client, api_gateway):
        response = connect(
            client,
            HTTP_USER_AGENT="AmazonAPIGateway_zzz999",
            HTTP_X_AMZN_APIGATEWAY_API_ID="zzz999",
        )
        assert response.status_code == 403
        assert not WebSocketSession.objects.exists()

    def test_get_is_not_allowed(self, client, api_gateway):
        assert client.get("/ws/connect", **api_gateway_connect_headers()).status_code == 405


class TestOrigin:
    @pytest.mark.parametrize(
        "origin",
        [
            "https://testserver.evil.net",
            "https://evil.net",
            "https://eviltestserver",
            "https://testserver:8443",
            "null",
            "file://",
            "https://user@testserver",
        ],
    )
    def test_foreign_origins_rejected(self, client, api_gateway, origin):
        response = connect(client, HTTP_ORIGIN=origin)
        assert response.status_code == 403
        assert response.json() == {"error": "Origin not allowed"}
        assert failed_attempts() == 1

    def test_non_browser_client_without_origin_connects(self, client, api_gateway):
        # Mobile apps, scripts and IoT clients send no Origin; only other sites' pages do.
        response = connect(client, HTTP_ORIGIN=None)
        assert response.status_code == 200
        assert WebSocketSession.objects.filter(connection_id="connection-1").exists()

    def test_missing_origin_refused_when_required(self, settings, client, api_gateway):
        settings.WEBSOCKETS = {"require_origin": True}
        response = connect(client, HTTP_ORIGIN=None)
        assert response.status_code == 403
        assert response.json() == {"error": "Origin required"}
        assert not WebSocketSession.objects.exists()
        assert failed_attempts() == 1

    def test_empty_origin_is_no_origin(self, settings, client, api_gateway):
        settings.WEBSOCKETS = {"require_origin": True}
        assert connect(client, HTTP_ORIGIN="").status_code == 403

    def test_http_origin_refused_for_a_secure_socket(self, client, api_gateway):
        assert connect(client, HTTP_ORIGIN="http://testserver").status_code == 403

    def test_http_origin_allowed_for_plain_local_socket(self, client, api_gateway):
        response = connect(
            client,
            HTTP_ORIGIN="http://localhost:8001",
            HTTP_HOST="localhost:8001",
            HTTP_X_FORWARDED_PROTO="http",
        )
        assert response.status_code == 200

    def test_csrf_trusted_origins_are_the_default_allow_list(self, settings, client, api_gateway):
        settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com", "https://*.example.org"]
        assert connect(client, HTTP_ORIGIN="https://app.example.com").status_code == 200
        ok = connect(client, connection_id="c2", HTTP_ORIGIN="https://a.b.example.org")
        assert ok.status_code == 200
        bad = connect(client, connection_id="c3", HTTP_ORIGIN="https://app.example.com.evil.io")
        assert bad.status_code == 403

    def test_websockets_allowed_origins_override(self, settings, client, api_gateway):
        settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.com"]
        settings.WEBSOCKETS = {"allowed_origins": ["https://chat.example.net"]}
        assert connect(client, HTTP_ORIGIN="https://chat.example.net").status_code == 200
        refused = connect(client, connection_id="c2", HTTP_ORIGIN="https://app.example.com")
        assert refused.status_code == 403


class TestChannelAndConnection:
    @pytest.mark.parametrize("channel", ["has space", "semi;colon", "x" * 192, "../etc", "ümlaut"])
    def test_invalid_channel_is_400_not_500(self, client, api_gateway, channel):
        from urllib.parse import quote

        response = connect(client, f"/ws/connect?channel={quote(channel)}")
        assert response.status_code == 400
        assert not WebSocketSession.objects.exists()

    def test_duplicate_connection_id_is_409_and_keeps_the_original(self, client, api_gateway):
        assert connect(client, "/ws/connect?channel=one").status_code == 200
        again = connect(client, "/ws/connect?channel=two")
        assert again.status_code == 409
        assert WebSocketSession.objects.get().channel_name == "one"

    def test_additional_checks_refuse_with_their_reason(self, client, api_gateway):
        response = connect(client, "/checked/connect?tenant=other")
        assert response.status_code == 403
        assert response.json() == {"error": "Unknown tenant"}
        assert connect(client, "/checked/connect?tenant=acme").status_code == 200

    def test_connect_hook_refusal_stores_no_session(self, client, api_gateway):
        assert connect(client, "/refusing/connect").status_code == 403
        assert not WebSocketSession.objects.exists()
        assert failed_attempts() == 1


class TestRateLimit:
    def test_attempts_beyond_the_limit_get_429(self, client, api_gateway):
        for number in range(3):
            assert connect(client, "/small/connect", connection_id=f"c{number}").status_code == 200
        response = connect(client, "/small/connect", connection_id="c4")
        assert response.status_code == 429
        assert not WebSocketSession.objects.filter(connection_id="c4").exists()

    def test_failed_connects_count_towards_the_limit(self, client, api_gateway):
        for _ in range(3):
            assert (
                connect(client, "/small/connect", HTTP_ORIGIN="https://evil.net").status_code == 403
            )
        assert connect(client, "/small/connect").status_code == 429

    def test_limit_from_settings(self, settings, client, api_gateway):
        settings.WEBSOCKETS = {"rate_limit_max_attempts": 1}
        assert connect(client).status_code == 200
        assert connect(client, connection_id="c2").status_code == 429

    def test_limit_can_be_disabled(self, settings, client, api_gateway, monkeypatch):
        settings.WEBSOCKETS = {"rate_limit_max_attempts": 1}
        monkeypatch.setattr(support_views.EchoView, "RATE_LIMIT_ENABLED", False)
        assert connect(client).status_code == 200
        assert connect(client, connection_id="c2").status_code == 200


class TestPermissions:
    def grant(self, user, *codenames):
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))

    def test_anonymous_denied(self, client, api_gateway):
        assert connect(client, "/any/connect").status_code == 403

    def test_any_of(self, alice, alice_client, api_gateway):
        assert connect(alice_client, "/any/connect", HTTP_COOKIE=None).status_code == 403
        self.grant(alice, "change_user")
        ok = connect(alice_client, "/any/connect", connection_id="c2", HTTP_COOKIE=None)
        assert ok.status_code == 200

    def test_all_of(self, alice, alice_client, api_gateway):
        self.grant(alice, "view_user")
        assert connect(alice_client, "/all/connect", HTTP_COOKIE=None).status_code == 403
        self.grant(alice, "change_user")
        ok = connect(alice_client, "/all/connect", connection_id="c2", HTTP_COOKIE=None)
        assert ok.status_code == 200

    def test_any_and_all_both_apply(self, alice, alice_client, api_gateway):
        # The original ignored permissions_required whenever all_permissions_required was set.
        self.grant(alice, "view_user")
        assert connect(alice_client, "/both/connect", HTTP_COOKIE=None).status_code == 403
        self.grant(alice, "add_user")
        ok = connect(alice_client, "/both/connect", connection_id="c2", HTTP_COOKIE=None)
        assert ok.status_code == 200


def test_rejections_leak_nothing(client, api_gateway, settings):
    settings.SECRET_KEY = "s3cr3t-value-for-leak-test"
    responses = [
        connect(client, HTTP_USER_AGENT="curl"),
        connect(client, HTTP_ORIGIN="https://evil.net"),
        connect(client, "/ws/connect?channel=a%20b"),
        connect(client, "/token/connect"),
    ]
    for response in responses:
        body = response.content.decode()
        assert set(json.loads(body)) == {"error"}
        for secret in ("s3cr3t", "Traceback", "evil.net", "curl", "AmazonAPIGateway", "testserver"):
            assert secret not in body


class TestHooksAndDefaults:
    def test_default_channel_passes_the_access_check_too(self, client, api_gateway):
        assert connect(client, "/picky/connect").status_code == 403
        assert connect(client, "/picky/connect?channel=lobby").status_code == 200

    def test_connect_hook_error_is_generic_500_and_stores_nothing(self, client, api_gateway):
        response = connect(client, "/broken/connect")
        assert response.status_code == 500
        assert "hook bug" not in response.content.decode()
        assert not WebSocketSession.objects.exists()
        assert failed_attempts() == 1

    def test_disconnect_hook_error_still_marks_the_session(self, client, websocket_session):
        from tests.seed.headers import api_gateway_headers

        response = client.post(
            "/broken/disconnect",
            data="",
            content_type="application/json",
            **api_gateway_headers(),
        )
        assert response.status_code == 500
        websocket_session.refresh_from_db()
        assert websocket_session.connected is False


def test_requests_without_the_integration_secret_do_not_touch_the_rate_limit(
    settings, client, api_gateway
):
    settings.WEBSOCKETS = {"integration_secret": "s3cret", "rate_limit_max_attempts": 2}
    for _ in range(3):
        assert connect(client, HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert not ConnectionRateLimit.objects.exists()
    genuine = connect(
        client, HTTP_X_FORWARDED_FOR="203.0.113.9", HTTP_X_WEBSOCKET_INTEGRATION_SECRET="s3cret"
    )
    assert genuine.status_code == 200


def site_token(user, host="www.example.com", scheme="https", **extra) -> str:
    """A token from the token view as a page of ``scheme://host`` gets it (behind a proxy
    that terminates TLS, as API Gateway does)."""
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    headers = {"HTTP_HOST": host, "HTTP_X_FORWARDED_PROTO": scheme, **extra}
    response = client.post("/api/ws-token/", secure=scheme == "https", **headers)
    assert response.status_code == 200
    return response.json()["token"]


class TestSiteAndSocketOnTwoHosts:
    """The deployed topology: the site on one host (zappa's REST API, a function URL, a
    custom domain), the socket on the WebSocket API's host. The site's cookie never reaches
    the socket, and the page's Origin is the site, not the socket."""

    @pytest.fixture(autouse=True)
    def site_host(self, settings):
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "www.example.com", "[::1]"]

    def test_default_auto_token_carries_the_user_on_a_cookieless_handshake(
        self, alice, api_gateway
    ):
        token = site_token(alice)
        browser = Client()  # the socket's host gets none of the site's cookies
        response = connect(
            browser,
            f"/token/connect?ws_token={token}",
            HTTP_COOKIE=None,
            HTTP_ORIGIN="https://www.example.com",
        )
        assert response.status_code == 200
        assert WebSocketSession.objects.get().user == alice
        again = connect(
            browser,
            f"/token/connect?ws_token={token}",
            connection_id="c2",
            HTTP_COOKIE=None,
            HTTP_ORIGIN="https://www.example.com",
        )
        assert again.status_code == 401

    def test_auto_binds_the_token_when_the_handshake_carries_a_logged_in_session(
        self, alice, django_user_model, api_gateway
    ):
        token = site_token(alice)
        bob_browser = Client()
        bob_browser.force_login(django_user_model.objects.create_user(username="bob"))
        response = connect(bob_browser, f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 401
        assert WebSocketToken.objects.get(token=token).used is False

    def test_auto_binds_when_the_sites_cookie_reaches_the_socket_host(
        self, settings, alice, api_gateway
    ):
        # www.example.com and ws.example.com share the session cookie: a handshake without it
        # is not from the site's browser, so the token alone (perhaps stolen) is not enough.
        settings.SESSION_COOKIE_DOMAIN = ".example.com"
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "ws.example.com"]
        token = site_token(alice)
        response = connect(
            Client(),
            f"/token/connect?ws_token={token}",
            HTTP_COOKIE=None,
            HTTP_HOST="ws.example.com",
            HTTP_ORIGIN="https://www.example.com",
        )
        assert response.status_code == 401
        assert WebSocketToken.objects.get(token=token).used is False

    def test_a_cookie_domain_elsewhere_leaves_the_socket_host_unbound(
        self, settings, alice, api_gateway
    ):
        settings.SESSION_COOKIE_DOMAIN = ".example.org"
        token = site_token(alice)
        response = connect(Client(), f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 200

    def test_strict_binding_refuses_a_cookieless_handshake(self, settings, alice, api_gateway):
        settings.WEBSOCKETS = {"token_bound_to_session": True}
        token = site_token(alice)
        response = connect(Client(), f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 401

    def test_binding_off_ignores_another_session_on_the_handshake(
        self, settings, alice, alice_client, api_gateway
    ):
        settings.WEBSOCKETS = {"token_bound_to_session": False}
        token = site_token(alice)  # another session than alice_client's
        response = connect(alice_client, f"/token/connect?ws_token={token}", HTTP_COOKIE=None)
        assert response.status_code == 200

    @pytest.mark.parametrize("origin", ["https://www.example.com", "https://WWW.example.com:443"])
    def test_the_issuing_site_is_an_allowed_origin_for_its_own_token(
        self, alice, api_gateway, origin
    ):
        token = site_token(alice)
        assert WebSocketToken.objects.get(token=token).origin == "https://www.example.com"
        path = f"/token/connect?ws_token={token}"
        response = connect(Client(), path, HTTP_COOKIE=None, HTTP_ORIGIN=origin)
        assert response.status_code == 200

    @pytest.mark.parametrize(
        "origin",
        [
            "https://evil.net",
            "http://www.example.com",  # scheme differs from the issuing site
            "https://www.example.com:8443",
            "https://www.example.com.evil.net",
        ],
    )
    def test_another_origin_cannot_redeem_the_sites_token_or_burn_it(
        self, alice, api_gateway, origin
    ):
        token = site_token(alice)
        path = f"/token/connect?ws_token={token}"
        refused = connect(Client(), path, HTTP_COOKIE=None, HTTP_ORIGIN=origin)
        assert refused.status_code == 403
        assert refused.json() == {"error": "Origin not allowed"}
        assert WebSocketToken.objects.get(token=token).used is False
        genuine = connect(
            Client(),
            path,
            connection_id="c2",
            HTTP_COOKIE=None,
            HTTP_ORIGIN="https://www.example.com",
        )
        assert genuine.status_code == 200

    def test_a_foreign_origin_without_a_token_it_issued_is_403(self, alice, api_gateway):
        for path in ("/token/connect", f"/token/connect?ws_token={'f' * 64}", "/ws/connect"):
            response = connect(
                Client(), path, HTTP_COOKIE=None, HTTP_ORIGIN="https://www.example.com"
            )
            assert response.status_code == 403, path
            assert response.json() == {"error": "Origin not allowed"}

    def test_a_used_token_of_the_issuing_origin_is_401(self, alice, api_gateway):
        token = site_token(alice)
        path = f"/token/connect?ws_token={token}"
        assert (
            connect(
                Client(), path, HTTP_COOKIE=None, HTTP_ORIGIN="https://www.example.com"
            ).status_code
            == 200
        )
        again = connect(
            Client(),
            path,
            connection_id="c2",
            HTTP_COOKIE=None,
            HTTP_ORIGIN="https://www.example.com",
        )
        assert again.status_code == 401

    def test_the_stage_prefix_is_no_part_of_the_issuing_origin(self, alice, api_gateway):
        token = site_token(alice, SCRIPT_NAME="/dev")
        assert WebSocketToken.objects.get(token=token).origin == "https://www.example.com"

    def test_a_local_site_on_another_port_and_ipv6_host(self, alice, api_gateway):
        token = site_token(alice, host="[::1]:8001", scheme="http")
        assert WebSocketToken.objects.get(token=token).origin == "http://[::1]:8001"
        response = connect(
            Client(),
            f"/token/connect?ws_token={token}",
            HTTP_COOKIE=None,
            HTTP_ORIGIN="http://[::1]:8001",
            HTTP_HOST="localhost:8001",
            HTTP_X_FORWARDED_PROTO="http",
        )
        assert response.status_code == 200
