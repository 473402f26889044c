"""The same handler behind other hosts: serverless-offline's events, custom domains, and the
response headers HTTP API v2, REST v1 and ALB get (no padded cookies)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from pathlib import Path
from unittest.mock import Mock, patch
from urllib.parse import unquote

import pytest
from django.core.management import CommandError, call_command

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.serverless.local import authenticate_connect_event
from tests.lambda_support import SAMPLE_API_ID, load_event

pytestmark = pytest.mark.django_db

OFFLINE_CONNECTION_ID = "667795c1-2f4f-4710-9a19-b82c320ea02c"


def offline_context(event_type: str, route_key: str) -> dict:
    """``requestContext`` as serverless-offline 13 writes it (WebSocketRequestContext.js)."""
    return {
        "apiId": "private",
        "connectedAt": 1796156948989,
        "connectionId": OFFLINE_CONNECTION_ID,
        "domainName": "localhost",
        "eventType": event_type,
        "extendedRequestId": "ef7f31da-7581-4d60-9d19-2e934a16c4b1",
        "identity": {"sourceIp": "127.0.0.1", "userAgent": None, "accessKey": None},
        "messageDirection": "IN",
        "messageId": "9e03371a-a061-490d-ae33-2b4d945a1f59",
        "requestId": "7bff27fa-8569-415e-b3ac-97e2e1de2b62",
        "requestTime": "01/Dec/2026:20:29:08 +0000",
        "requestTimeEpoch": 1796156948989,
        "routeKey": route_key,
        "stage": "local",
    }


def offline_connect(host: str = "localhost:3001", **extra_headers: str) -> dict:
    """A $connect as serverless-offline delivers it: the handshake's headers as sent (Host with
    the port, no X-Forwarded-*), a bare ``localhost`` domainName."""
    headers = {
        "Host": host,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "HqEiXEMASbudlkha4MyaOA==",
        "Sec-WebSocket-Version": "13",
        "User-Agent": "Python/3.11 websockets/16.0",
        **extra_headers,
    }
    return {
        "headers": headers,
        "isBase64Encoded": False,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "multiValueQueryStringParameters": {"channel": ["general"]},
        "queryStringParameters": {"channel": "general"},
        "requestContext": offline_context("CONNECT", "$connect"),
    }


def offline_message(body: dict) -> dict:
    return {
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "requestContext": offline_context("MESSAGE", "$default"),
    }


@pytest.fixture
def handler(settings, keep_test_connection):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", ".amazonaws.com", "ws.example.com"]
    return make_lambda_handler()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice")


@pytest.fixture
def aws_client():
    client = Mock()
    client.post_to_connection.return_value = {}
    with patch(
        "django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client
    ) as factory:
        client.factory = factory
        yield client


def connect(handler, event, user) -> dict:
    return handler(authenticate_connect_event(event, user), None)


class TestServerlessOfflineEndpoint:
    @pytest.fixture
    def gateway(self):
        return ApiGateway.objects.create(api_name="Offline", api_id="private", stage_name="local")

    def test_learns_the_emulator_with_its_port(self, handler, gateway, alice):
        assert connect(handler, offline_connect(), alice)["statusCode"] == 200
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "http://localhost:3001"

    def test_sends_go_to_the_emulator(self, handler, gateway, alice, aws_client):
        connect(handler, offline_connect(), alice)
        response = handler(offline_message({"handler": "chat_message", "message": "hi"}), None)
        assert json.loads(response["body"]) == {"type": "ack", "delivered": 1}
        assert aws_client.factory.call_args.kwargs["endpoint_url"] == "http://localhost:3001"
        assert aws_client.post_to_connection.call_args.kwargs["ConnectionId"] == (
            OFFLINE_CONNECTION_ID
        )

    def test_client_on_127_0_0_1_is_learned_as_such(self, handler, gateway, alice):
        connect(handler, offline_connect(host="127.0.0.1:3001"), alice)
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "http://127.0.0.1:3001"

    def test_handshake_scheme_is_kept(self, handler, gateway, alice):
        connect(handler, offline_connect(**{"X-Forwarded-Proto": "https"}), alice)
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "https://localhost:3001"

    def test_host_outside_allowed_hosts_is_not_learned(self, handler, settings, gateway, alice):
        settings.ALLOWED_HOSTS = ["localhost"]
        connect(handler, offline_connect(host="127.0.0.1:4444"), alice)
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "http://localhost"

    def test_debug_with_no_allowed_hosts_accepts_localhost(self, handler, settings, gateway, alice):
        # What HttpRequest.get_host() allows under DEBUG with an empty ALLOWED_HOSTS.
        connect(handler, offline_connect(), alice)  # learns with the fixture's hosts
        gateway.management_endpoint_url = ""
        gateway.save()
        settings.DEBUG, settings.ALLOWED_HOSTS = True, []
        event = offline_connect()
        event["requestContext"]["connectionId"] = "a" * 36
        connect(handler, event, alice)
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "http://localhost:3001"

    def test_forged_client_host_header_is_dropped(self, handler, gateway, alice):
        event = offline_connect(**{"X-Websocket-Client-Host": "127.0.0.1:9"})
        event["headers"].pop("Host")
        event["multiValueHeaders"].pop("Host")
        connect(handler, event, alice)
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "http://localhost"

    def test_refused_connect_learns_nothing(self, handler, gateway):
        assert handler(offline_connect(), None)["statusCode"] == 401  # no token
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == ""

    def test_connect_refused_by_the_views_own_hook_stores_nothing(self, handler, gateway, alice):
        from django.http import JsonResponse

        from websocket_app.views import ChatWebSocketView

        refusal = JsonResponse({"error": "Not today"}, status=403)
        with patch.object(ChatWebSocketView, "connect", return_value=refusal):
            assert connect(handler, offline_connect(), alice)["statusCode"] == 403
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == ""

    def test_explicit_endpoint_is_kept(self, handler, gateway, alice):
        gateway.management_endpoint_url = "http://localhost:3999"
        gateway.save()
        connect(handler, offline_connect(), alice)
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == "http://localhost:3999"


class TestAwsHosts:
    @pytest.fixture
    def gateway(self):
        return ApiGateway.objects.create(
            api_name="Sample", api_id=SAMPLE_API_ID, stage_name="production"
        )

    def test_custom_domain_still_maps_to_execute_api(self, handler, gateway, alice):
        event = load_event("connect", domainName="ws.example.com")
        event["headers"]["Host"] = "ws.example.com"
        event["headers"]["Origin"] = "https://ws.example.com"
        event["multiValueHeaders"]["Host"] = ["ws.example.com"]
        event["multiValueHeaders"]["Origin"] = ["https://ws.example.com"]
        assert connect(handler, event, alice)["statusCode"] == 200
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == (
            f"https://{SAMPLE_API_ID}.execute-api.us-east-1.amazonaws.com/production"
        )

    def test_aws_event_ignores_a_forged_host_header(self, handler, gateway, alice):
        event = load_event("connect")
        event["multiValueHeaders"]["X-Websocket-Client-Host"] = ["localhost:1"]
        event["multiValueHeaders"]["Host"] = ["localhost:1"]
        assert connect(handler, event, alice)["statusCode"] == 200
        gateway.refresh_from_db()
        assert gateway.management_endpoint_url == (
            f"https://{SAMPLE_API_ID}.execute-api.eu-west-1.amazonaws.com/production"
        )
        assert WebSocketSession.objects.get().connected is True


# --------------------------------------------------------------------------- cookies


def http_api_v2_event(path: str) -> dict:
    """A GET in the HTTP API payload format 2.0 as AWS documents it (cookies in ``cookies``,
    lower-case headers, ``rawPath``, ``requestContext.http``)."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "cookies": ["theme=dark"],
        "headers": {
            "accept": "text/html",
            "host": "http123456.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "Mozilla/5.0",
            "x-amzn-trace-id": "Root=1-6745a1b0-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.5",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "http123456",
            "domainName": "http123456.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "http123456",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.5",
                "userAgent": "Mozilla/5.0",
            },
            "requestId": "Cq1EzFkRIAMEPBw=",
            "routeKey": "$default",
            "stage": "$default",
            "time": "01/Dec/2026:09:00:00 +0000",
            "timeEpoch": 1796115600123,
        },
        "isBase64Encoded": False,
    }


def assert_clean_csrf_cookie(set_cookie_values: list[str]) -> None:
    assert set_cookie_values, "the login page sets the CSRF cookie"
    for value in set_cookie_values:
        assert value == value.strip(), repr(value)
    cookie = SimpleCookie()
    cookie.load(set_cookie_values[0])
    assert "csrftoken" in cookie
    assert cookie["csrftoken"]["path"] == "/"


class TestCookies:
    def test_http_api_v2_cookies_have_no_leading_space(self, handler):
        response = handler(http_api_v2_event("/login/"), None)
        assert response["statusCode"] == 200
        assert response["cookies"][0].startswith("csrftoken=")
        assert_clean_csrf_cookie(response["cookies"])
        assert "set-cookie" not in {name.lower() for name in response["headers"]}

    def test_rest_v1_multi_value_set_cookie_has_no_leading_space(self, handler):
        event = load_event("http_rest_v1")
        event["path"] = "/login/"
        event["requestContext"]["path"] = "/login/"
        response = handler(event, None)
        assert response["statusCode"] == 200
        assert_clean_csrf_cookie(response["multiValueHeaders"]["Set-Cookie"])

    def test_alb_multi_value_set_cookie_has_no_leading_space(self, handler, settings):
        event = load_event("http_alb")
        event["path"] = "/login/"
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, _alb_host(event)]
        response = handler(event, None)
        assert response["statusCode"] == 200
        headers = response.get("multiValueHeaders") or {
            k: [v] for k, v in response["headers"].items()
        }
        assert_clean_csrf_cookie(headers["Set-Cookie"])


def _alb_host(event: dict) -> str:
    headers = event.get("multiValueHeaders") or {k: [v] for k, v in event["headers"].items()}
    host = next(values[-1] for name, values in headers.items() if name.lower() == "host")
    return host.split(":")[0]


# --------------------------------------------------------------------------- registerLocalGateway


class OfflineConnections:
    """@connections as serverless-offline serves it: at the root, POST and DELETE, 410 for
    unknown ids."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.posts: list[tuple[str, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                prefix, _, connection_id = self.path.rpartition("/")
                known = prefix == "/@connections" and unquote(connection_id) in outer.known
                if known:
                    outer.posts.append((unquote(connection_id), body))
                self.send_response(200 if known else 410)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def register(*args: str) -> str:
    out = StringIO()
    call_command("registerLocalGateway", *args, stdout=out)
    return out.getvalue()


class TestRegisterLocalGateway:
    def test_defaults_are_serverless_offlines(self):
        output = register()
        gateway = ApiGateway.objects.get(api_id="private")
        assert (gateway.stage_name, gateway.api_endpoint, gateway.management_endpoint_url) == (
            "local",
            "ws://localhost:3001",
            "http://localhost:3001",
        )
        assert "ws://localhost:3001/local" in output
        assert "http://localhost:3001/@connections/{id}" in output
        assert "older gateway" not in output

    def test_running_it_again_updates_the_same_record(self):
        register()
        register("--url", "wss://localhost:4001/")
        gateway = ApiGateway.objects.get()
        assert (gateway.api_endpoint, gateway.management_endpoint_url) == (
            "wss://localhost:4001",
            "https://localhost:4001",
        )

    def test_explicit_management_url_and_ids(self):
        register("--api-id", "abc", "--stage", "dev", "--management-url", "http://gw:9/x/")
        gateway = ApiGateway.objects.get(api_id="abc")
        assert (gateway.api_name, gateway.stage_name, gateway.management_endpoint_url) == (
            "Local abc",
            "dev",
            "http://gw:9/x",
        )

    @pytest.mark.parametrize(
        "args",
        [
            ("--url", "http://localhost:3001"),
            ("--url", "ws://localhost:3001/local"),
            ("--url", "localhost:3001"),
            ("--management-url", "ftp://localhost"),
            ("--api-id", ""),
        ],
    )
    def test_bad_arguments_are_command_errors(self, args):
        with pytest.raises(CommandError):
            register(*args)
        assert not ApiGateway.objects.exists()

    def test_name_taken_by_another_gateway(self):
        ApiGateway.objects.create(api_name="Local private", api_id="other")
        with pytest.raises(CommandError, match="--name"):
            register()

    def test_warns_when_pages_would_connect_elsewhere(self):
        ApiGateway.objects.create(api_name="Old", api_id="old", api_endpoint="wss://old.example")
        assert "older gateway comes first" in register()

    def test_sends_reach_an_emulator_serving_connections_at_its_root(self, monkeypatch):
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        server = OfflineConnections(known={OFFLINE_CONNECTION_ID})
        try:
            register("--url", f"ws://127.0.0.1:{server.port}")
            gateway = ApiGateway.objects.get(api_id="private")
            alive = WebSocketSession.objects.create(
                connection_id=OFFLINE_CONNECTION_ID, api_gateway=gateway
            )
            gone = WebSocketSession.objects.create(connection_id="gone-id", api_gateway=gateway)
            assert alive.send_message({"type": "ping"})["ResponseMetadata"]["HTTPStatusCode"] == 200
            assert gone.send_message({"type": "ping"}) is None
        finally:
            server.close()
        assert server.posts == [(OFFLINE_CONNECTION_ID, b'{"type":"ping"}')]
        gone.refresh_from_db()
        assert gone.connected is False


# --------------------------------------------------------------------------- trailing slashes


class TestRestoreTrailingSlashMiddleware:
    @pytest.fixture(autouse=True)
    def middleware(self, settings):
        common = settings.MIDDLEWARE.index("django.middleware.common.CommonMiddleware")
        settings.MIDDLEWARE = [
            *settings.MIDDLEWARE[:common],
            "django_aws_api_gateway_websockets.middleware.RestoreTrailingSlashMiddleware",
            *settings.MIDDLEWARE[common:],
        ]

    def test_slash_stripped_path_is_served_without_a_redirect(self, client):
        response = client.get("/login")
        assert response.status_code == 200
        assert response.wsgi_request.path == "/login/"

    def test_post_keeps_its_body(self, client, alice):
        client.force_login(alice)
        response = client.post("/api/ws-token")
        assert response.status_code == 200
        assert len(response.json()["token"]) == 64

    def test_paths_without_a_slashed_twin_are_untouched(self, client):
        assert client.get("/no-such-page").status_code == 404
        assert client.get("/static/websocket_app/chat.js").status_code == 200

    def test_without_append_slash_nothing_is_rewritten(self, client, settings):
        settings.APPEND_SLASH = False
        assert client.get("/login").status_code == 404


def test_example_settings_add_the_middleware_only_under_serverless_offline():
    code = "from django.conf import settings; print('Restore' in ''.join(settings.MIDDLEWARE))"
    results = {}
    for offline in ("", "true"):
        env = {"DJANGO_SETTINGS_MODULE": "project.settings", "PATH": "/usr/bin:/bin"}
        if offline:
            env["IS_OFFLINE"] = offline
        completed = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=str(Path(__file__).resolve().parent.parent),
        )
        results[offline] = completed.stdout.strip()
    assert results == {"": "False", "true": "True"}


def test_trim_header_values_passes_exc_info_on():
    """WSGI lets an application re-call start_response with exc_info after an error."""
    from django_aws_api_gateway_websockets.serverless.response_headers import trim_header_values

    calls = []

    def application(environ, start_response):
        start_response("500 Internal Server Error", [("Set-Cookie", " a=b; Path=/ ")], "info")
        return [b""]

    trim_header_values(application)({}, lambda *args: calls.append(args))
    assert calls == [("500 Internal Server Error", [("Set-Cookie", "a=b; Path=/")], "info")]
