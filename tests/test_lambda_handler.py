"""The Lambda handler end to end: real-shaped events through apig-wsgi into Django."""

from __future__ import annotations

import base64
import gc
import json
import threading
from unittest.mock import Mock, patch

import pytest

from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.serverless.local import authenticate_connect_event
from tests.lambda_support import (
    SAMPLE_API_ID,
    SAMPLE_CONNECTION_ID,
    SAMPLE_DOMAIN,
    load_event,
    log_lines,
    message_event,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def handler(settings, keep_test_connection):
    settings.ALLOWED_HOSTS = [".amazonaws.com", ".on.aws", "example.com", "testserver"]
    return make_lambda_handler()


@pytest.fixture
def sample_gateway():
    return ApiGateway.objects.create(
        api_name="Sample", api_id=SAMPLE_API_ID, stage_name="production"
    )


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="alice")


@pytest.fixture
def connected(handler, sample_gateway, alice):
    response = handler(authenticate_connect_event(load_event("connect"), alice), None)
    assert response["statusCode"] == 200
    return WebSocketSession.objects.get(connection_id=SAMPLE_CONNECTION_ID)


@pytest.fixture
def aws_client():
    client = Mock()
    client.post_to_connection.return_value = {}
    with patch(
        "django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client
    ) as factory:
        client.factory = factory
        yield client


class TestConnect:
    def test_connect_with_token_stores_the_session(self, connected, alice, sample_gateway):
        assert (connected.user, connected.channel_name, connected.connected) == (
            alice,
            "general",
            True,
        )
        assert connected.api_gateway == sample_gateway
        assert WebSocketToken.objects.get().used is True

    def test_source_ip_comes_from_request_context(self, connected):
        assert ConnectionRateLimit.objects.get().ip_address == "203.0.113.5"

    def test_gateway_learns_its_management_endpoint(self, connected, sample_gateway):
        sample_gateway.refresh_from_db()
        assert sample_gateway.management_endpoint_url == f"https://{SAMPLE_DOMAIN}/production"

    def test_explicit_management_endpoint_is_kept(self, handler, sample_gateway, alice):
        sample_gateway.management_endpoint_url = "https://ws.example.com"
        sample_gateway.save()
        handler(authenticate_connect_event(load_event("connect"), alice), None)
        sample_gateway.refresh_from_db()
        assert sample_gateway.management_endpoint_url == "https://ws.example.com"

    def test_connect_without_token_is_refused(self, handler, sample_gateway):
        response = handler(load_event("connect"), None)
        assert response["statusCode"] == 401
        assert not WebSocketSession.objects.exists()

    def test_client_headers_cannot_claim_another_identity(self, handler, sample_gateway, alice):
        event = authenticate_connect_event(load_event("connect"), alice)
        event["headers"].update(
            {
                "connectionId": "victim-connection",
                "X-Amzn-Apigateway-Api-Id": "zzz999",
                "User-Agent": "AmazonAPIGateway_zzz999",
                "X-Forwarded-For": "10.9.9.9",
                "X-Real-Ip": "10.9.9.9",
                "X-Websocket-Integration-Secret": "guess",
            }
        )
        event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
        assert handler(event, None)["statusCode"] == 200
        session = WebSocketSession.objects.get()
        assert session.connection_id == SAMPLE_CONNECTION_ID
        assert ConnectionRateLimit.objects.get().ip_address == "203.0.113.5"

    def test_unknown_api_is_refused(self, handler, sample_gateway, alice):
        event = authenticate_connect_event(load_event("connect", apiId="other00000"), alice)
        assert handler(event, None)["statusCode"] == 403


class TestMessages:
    def test_reply_is_the_route_response(self, handler, connected):
        response = handler(load_event("message_who_is_here"), None)
        assert response["statusCode"] == 200
        assert json.loads(response["body"])["type"] == "here_now"

    def test_chat_message_fans_out_through_the_learned_endpoint(
        self, handler, connected, aws_client
    ):
        response = handler(load_event("message_chat"), None)
        assert json.loads(response["body"]) == {"type": "ack", "delivered": 1}
        assert aws_client.factory.call_args.kwargs["endpoint_url"] == (
            f"https://{SAMPLE_DOMAIN}/production"
        )
        posted = json.loads(aws_client.post_to_connection.call_args.kwargs["Data"])
        assert posted["message"] == "Hello from a sample event"

    def test_custom_route_key_reaches_the_view(self, handler, connected):
        event = load_event("message_who_is_here", routeKey="who_is_here")
        assert handler(event, None)["statusCode"] == 200

    @pytest.mark.parametrize("route_key", ["connect", "disconnect", "$connect"])
    def test_custom_route_named_like_a_lifecycle_route_is_a_message(
        self, handler, connected, route_key
    ):
        response = handler(load_event("message_who_is_here", routeKey=route_key), None)
        assert json.loads(response["body"])["type"] == "here_now"
        connected.refresh_from_db()
        assert connected.connected is True

    def test_odd_route_key_is_delivered_as_default(self, handler, connected):
        event = load_event("message_who_is_here", routeKey="chat.message/../x")
        assert handler(event, None)["statusCode"] == 200

    def test_base64_body(self, handler, connected):
        event = message_event(base64.b64encode(b'{"action": "who_is_here"}').decode())
        event["isBase64Encoded"] = True
        assert handler(event, None)["statusCode"] == 200

    @pytest.mark.parametrize("body", ["not json", "[]", "", '{"no": "action"}'])
    def test_bad_bodies_are_400(self, handler, connected, body):
        assert handler(message_event(body), None)["statusCode"] == 400

    def test_message_from_unknown_connection_is_403(self, handler, sample_gateway):
        assert handler(load_event("message_who_is_here"), None)["statusCode"] == 403

    def test_bare_ws_path_form(self, settings, handler, connected):
        settings.ROOT_URLCONF = "tests.lambda_bare_urls"
        bare = make_lambda_handler(websocket_path="/ws/")
        response = bare(load_event("message_who_is_here"), None)
        assert json.loads(response["body"])["type"] == "here_now"


class TestDisconnect:
    def test_marks_the_session_disconnected(self, handler, connected):
        assert handler(load_event("disconnect"), None)["statusCode"] == 200
        connected.refresh_from_db()
        assert connected.connected is False

    def test_unknown_connection_is_harmless(self, handler, sample_gateway):
        assert handler(load_event("disconnect"), None)["statusCode"] == 200


class TestForgedHttpEvents:
    def test_http_event_with_api_gateway_headers_cannot_connect(self, handler, sample_gateway):
        response = handler(load_event("forged_http_connect"), None)
        assert response["statusCode"] == 403
        assert not WebSocketSession.objects.exists()

    def test_http_v2_event_cannot_post_as_a_connection(self, handler, connected):
        event = load_event("http_api_v2")
        event["requestContext"]["http"].update({"method": "POST", "path": "/ws/default"})
        event["rawPath"] = "/ws/default"
        event["headers"].update(
            {
                "connectionid": SAMPLE_CONNECTION_ID,
                "user-agent": f"AmazonAPIGateway_{SAMPLE_API_ID}",
                "x-amzn-apigateway-api-id": SAMPLE_API_ID,
                "content-type": "application/json",
            }
        )
        event["body"] = json.dumps({"action": "who_is_here"})
        assert handler(event, None)["statusCode"] == 403

    def test_integration_secret_guards_http_integrations(self, settings, client, connected):
        from tests.seed.headers import api_gateway_headers

        settings.WEBSOCKETS = {"integration_secret": "s3cret"}
        headers = api_gateway_headers(api_id=SAMPLE_API_ID, connection_id=SAMPLE_CONNECTION_ID)
        body = json.dumps({"action": "who_is_here"})
        post = dict(path="/ws/default", data=body, content_type="application/json")
        assert client.post(**post, **headers).status_code == 403
        wrong = client.post(**post, **headers, HTTP_X_WEBSOCKET_INTEGRATION_SECRET="guess")
        assert wrong.status_code == 403
        right = client.post(**post, **headers, HTTP_X_WEBSOCKET_INTEGRATION_SECRET="s3cret")
        assert right.status_code == 200


class TestHttpEvents:
    @pytest.mark.parametrize(
        "name", ["http_rest_v1", "http_api_v2", "http_alb", "http_function_url"]
    )
    def test_site_is_served(self, handler, name):
        response = handler(load_event(name), None)
        assert response["statusCode"] == 200
        body = response["body"]
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        assert "Serverless Django WebSockets" in body


class TestScheduledAndDirect:
    def test_scheduled_clear_sessions(self, handler, sample_gateway):
        WebSocketSession.objects.create(connection_id="gone", connected=False)
        WebSocketSession.objects.create(connection_id="here", connected=True)
        result = handler(load_event("scheduled_clear_sessions"), None)
        assert "Deleted 1 disconnected" in result
        assert list(WebSocketSession.objects.values_list("connection_id", flat=True)) == ["here"]

    def test_scheduled_cleanup_tokens(self, handler, alice):
        WebSocketToken.objects.create(token="a" * 64, user=alice, session_key="s", used=True)
        result = handler(load_event("scheduled_cleanup_tokens"), None)
        assert "Deleted 1 used or expired token" in result
        assert not WebSocketToken.objects.exists()

    def test_keep_warm_returns_at_once(self, handler, django_assert_num_queries):
        with django_assert_num_queries(0):
            assert handler(load_event("keep_warm"), None) == {"status": "warm"}
        assert handler({"source": "serverless-plugin-warmup"}, None) == {"status": "warm"}

    def test_manage(self, handler):
        WebSocketSession.objects.create(connection_id="gone", connected=False)
        result = handler(load_event("manage_clear_sessions"), None)
        assert result["statusCode"] == 200
        assert "Deleted 1" in result["output"]

    @pytest.mark.parametrize(
        "command",
        ["noSuchCommand", "cleanupWebSocketTokens --token-age lots", "", 42, "createApiGateway"],
    )
    def test_bad_manage_commands_are_400(self, handler, command):
        result = handler({"manage": command}, None)
        assert result["statusCode"] == 400

    def test_command_runs_a_function(self, handler):
        result = handler({"command": "lambda_handler.clear_sessions"}, None)
        assert "Deleted 0" in result

    @pytest.mark.parametrize("command", ["os", "no_such_module.f", "lambda_handler.nothing", 5])
    def test_bad_command_is_400(self, handler, command):
        assert handler({"command": command}, None)["statusCode"] == 400

    def test_scheduled_function_error_is_a_500_result(self, handler, monkeypatch):
        def broken(event, context):
            raise RuntimeError("boom")

        monkeypatch.setattr("lambda_handler.clear_sessions", broken)
        assert handler(load_event("scheduled_clear_sessions"), None)["statusCode"] == 500


class TestMalformed:
    @pytest.mark.parametrize(
        "event",
        [
            None,
            "text",
            [],
            {},
            {"unexpected": True},
            {"requestContext": "x"},
            {"requestContext": {"eventType": "CONNECT"}},
            {"requestContext": {"eventType": "MESSAGE", "connectionId": 5}},
            {"detail-type": "Scheduled Event", "resources": []},
            {"detail-type": "Scheduled Event", "resources": [7]},
            {"httpMethod": "GET"},
            {"version": "2.0"},
        ],
    )
    def test_never_raises(self, handler, event):
        result = handler(event, None)
        assert result["statusCode"] == 400

    def test_unexpected_failure_is_a_logged_500(self, handler, monkeypatch, capsys):
        def explode(*args, **kwargs):
            raise RuntimeError("adapter bug")

        monkeypatch.setattr(
            "django_aws_api_gateway_websockets.serverless.events.WebSocketEvent.as_wsgi_event",
            explode,
        )
        result = handler(load_event("message_who_is_here"), None)
        assert result == {"statusCode": 500, "body": "Internal error"}
        lines = log_lines(capsys.readouterr().out)
        assert any("adapter bug" in line.get("exception", "") for line in lines)


class TestSetUp:
    def test_a_cold_start_freezes_what_set_up_made_and_collection_resumes(self):
        """Set-up runs without cyclic collection and freezes what it made; afterwards the
        collector must be back on, or a warm container would never collect cycles."""
        import subprocess
        import sys

        code = (
            "import gc, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'\n"
            "from django_aws_api_gateway_websockets.serverless import make_lambda_handler\n"
            "assert gc.get_freeze_count() == 0\n"
            "make_lambda_handler('tests.settings')\n"
            "print(gc.get_freeze_count() > 0, gc.isenabled())"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split() == ["True", "True"]

    def test_a_process_that_had_set_django_up_keeps_its_objects_collectable(self, settings):
        """A test run or a command builds handlers after set-up: freezing its whole heap
        would keep every test's garbage alive for the rest of the session."""
        gc.unfreeze()
        make_lambda_handler()
        assert gc.get_freeze_count() == 0
        assert gc.isenabled()

    def test_a_caller_that_disabled_collection_keeps_it_disabled(self, settings):
        gc.disable()
        try:
            make_lambda_handler()
            assert not gc.isenabled()
        finally:
            gc.enable()


class TestObservability:
    def test_one_structured_line_per_event(self, handler, connected, capsys):
        capsys.readouterr()
        handler(load_event("message_who_is_here"), None)
        lines = log_lines(capsys.readouterr().out)
        handled = [line for line in lines if line.get("message") == "Event handled"]
        assert len(handled) == 1
        line = handled[0]
        assert line["correlation_id"] == "Cq1BJFkOIAMFdWh="
        assert line["connection_id"] == SAMPLE_CONNECTION_ID
        assert (line["route_key"], line["event_type"], line["status"]) == (
            "$default",
            "MESSAGE",
            200,
        )
        assert isinstance(line["duration_ms"], float)
        assert line["cold_start"] is False

    def test_metrics_are_embedded_metric_format(self, handler, connected, aws_client, capsys):
        capsys.readouterr()
        handler(load_event("message_chat"), None)
        documents = [line for line in log_lines(capsys.readouterr().out) if "_aws" in line]
        assert len(documents) == 1
        document = documents[0]
        names = {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
        assert names == {"Messages", "MessagesSent"}
        assert document["Messages"] == [1.0] or document["Messages"] == 1.0

    def test_rejections_are_logged_with_the_correlation_id(self, handler, sample_gateway, capsys):
        capsys.readouterr()
        handler(load_event("connect"), None)
        lines = log_lines(capsys.readouterr().out)
        rejected = [line for line in lines if "rejected" in str(line.get("message"))]
        assert rejected and rejected[0]["correlation_id"] == "Cq1AAFkNIAMFXfQ="

    def test_keys_do_not_leak_into_the_next_event(self, handler, connected, capsys):
        handler(load_event("message_who_is_here"), None)
        capsys.readouterr()
        handler(load_event("keep_warm"), None)
        line = log_lines(capsys.readouterr().out)[-1]
        assert "connection_id" not in line and "route_key" not in line

    def test_concurrent_invocations_keep_their_own_keys_and_counts(
        self, handler, monkeypatch, capsys
    ):
        """The local gateway runs invocations in threads: each log line and metrics document
        must describe its own invocation."""
        from django.db import connection

        from django_aws_api_gateway_websockets.serverless.events import WebSocketEvent

        both_started = threading.Barrier(2, timeout=10)
        build = WebSocketEvent.as_wsgi_event

        def overlapping(self, *args, **kwargs):
            both_started.wait()  # both invocations have set their keys; neither has logged
            return build(self, *args, **kwargs)

        monkeypatch.setattr(WebSocketEvent, "as_wsgi_event", overlapping)
        results = {}

        def invoke(name):
            event = load_event("message_who_is_here")
            event["requestContext"]["connectionId"] = f"{name}Conn="
            event["requestContext"]["requestId"] = f"{name}Request="
            try:
                results[name] = handler(event, None)["statusCode"]
            finally:
                connection.close()

        capsys.readouterr()
        threads = [threading.Thread(target=invoke, args=(name,)) for name in ("first", "second")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert results == {"first": 403, "second": 403}  # unknown connections

        lines = log_lines(capsys.readouterr().out)
        handled = [line for line in lines if line.get("message") == "Event handled"]
        assert sorted((line["connection_id"], line["correlation_id"]) for line in handled) == [
            ("firstConn=", "firstRequest="),
            ("secondConn=", "secondRequest="),
        ]
        documents = [line for line in lines if "_aws" in line]
        assert [document["Messages"] for document in documents] in ([1.0, 1.0], [[1.0], [1.0]])
        assert not [line for line in lines if line.get("message") == "Could not flush metrics"]


@pytest.mark.parametrize("sample", ["http_rest_v1", "http_api_v2"])
def test_an_http_events_log_line_names_its_method_and_path(handler, capsys, sample):
    """What an access log shows: which request the status and duration belong to."""
    event = load_event(sample)
    capsys.readouterr()
    handler(event, None)
    (line,) = [
        line
        for line in log_lines(capsys.readouterr().out)
        if line.get("message") == "Event handled"
    ]
    method = event.get("httpMethod") or event["requestContext"]["http"]["method"]
    assert (line["http_method"], line["path"]) == (method, event.get("rawPath") or event["path"])


class TestReviewFixes:
    def test_rest_stage_prefix_is_kept_in_redirects(self, handler):
        event = load_event("http_rest_v1")
        event["path"] = "/rooms/general/"
        event["requestContext"]["path"] = "/production/rooms/general/"
        response = handler(event, None)
        assert response["statusCode"] == 302
        location = (response.get("multiValueHeaders") or {}).get("Location", [None])[0] or (
            response.get("headers") or {}
        ).get("Location")
        assert location.startswith("/production/login/")

    def test_custom_domain_paths_get_no_prefix(self, handler):
        event = load_event("http_rest_v1")
        event["path"] = "/rooms/general/"
        event["requestContext"]["path"] = "/rooms/general/"
        response = handler(event, None)
        headers = response.get("multiValueHeaders") or {}
        assert headers["Location"][0].startswith("/login/")

    def test_an_unhandled_error_counts_once(self, handler, monkeypatch, capsys):
        def explode(*args, **kwargs):
            raise RuntimeError("adapter bug")

        monkeypatch.setattr(
            "django_aws_api_gateway_websockets.serverless.events.WebSocketEvent.as_wsgi_event",
            explode,
        )
        capsys.readouterr()
        handler(load_event("message_who_is_here"), None)
        documents = [line for line in log_lines(capsys.readouterr().out) if "_aws" in line]
        assert documents[0]["Errors"] in (1.0, [1.0])

    def test_manage_outcome_is_in_the_log(self, handler, capsys):
        capsys.readouterr()
        handler({"manage": "clearWebSocketSessions"}, None)
        handler({"manage": "noSuchCommand"}, None)
        lines = [line for line in log_lines(capsys.readouterr().out) if "manage" in line["message"]]
        assert lines[0]["output"].startswith("Deleted") and lines[0]["level"] == "INFO"
        assert "Unknown command" in lines[1]["error"] and lines[1]["level"] == "WARNING"


class TestMoreMalformed:
    @pytest.mark.parametrize(
        "event",
        [
            {"version": "2.0", "requestContext": {"http": {}}},
            {"httpMethod": "GET", "path": "/", "headers": "x"},
            {"command": "."},
            {"websocket_fanout": {"connection_ids": ["a"], "payload": "not json"}},
            # Over WEBSOCKETS["max_message_bytes"] (1 MiB); 128 KiB to 1 MiB is sent in parts.
            {"websocket_fanout": {"connection_ids": ["a"], "payload": '"' + "x" * 1_100_000 + '"'}},
        ],
    )
    def test_odd_events_are_4xx_not_500(self, handler, event):
        assert handler(event, None)["statusCode"] == 400

    def test_bad_base64_message_is_400(self, handler, connected):
        event = message_event("%%%not base64")
        event["isBase64Encoded"] = True
        assert handler(event, None)["statusCode"] == 400

    def test_identity_of_the_wrong_type_is_harmless(self, handler, sample_gateway, alice):
        event = authenticate_connect_event(load_event("connect"), alice)
        event["requestContext"]["identity"] = "x"
        assert handler(event, None)["statusCode"] == 200

    def test_deeply_nested_message_is_400(self, handler, connected):
        assert handler(message_event("[" * 100000), None)["statusCode"] == 400

    def test_http_event_without_request_context_cannot_pose_as_a_connection(
        self, handler, connected
    ):
        event = {
            "httpMethod": "POST",
            "path": "/ws/default",
            "headers": {
                "Host": SAMPLE_DOMAIN,
                "Connectionid": SAMPLE_CONNECTION_ID,
                "User-Agent": f"AmazonAPIGateway_{SAMPLE_API_ID}",
                "X-Amzn-Apigateway-Api-Id": SAMPLE_API_ID,
                "Content-Type": "application/json",
            },
            "body": json.dumps({"action": "who_is_here"}),
        }
        assert handler(event, None)["statusCode"] == 403

    def test_sample_forged_event_shows_the_guard(self, handler, sample_gateway):
        assert handler(load_event("forged_http_connect"), None)["statusCode"] == 403


def http_event(name: str, path: str) -> dict:
    """A sample HTTP event of each format, asking for ``path`` (below the stage)."""
    event = load_event(name)
    if "rawPath" in event:
        event["rawPath"] = path
    else:
        event["path"] = path
        if "path" in event["requestContext"]:
            event["requestContext"]["path"] = f"/production{path}"
    return event


HTTP_FORMATS = ["http_rest_v1", "http_api_v2", "http_alb", "http_function_url"]


class TestErrorsEscapingDjango:
    """Malformed is decided by the event's shape; what escapes Django afterwards is the
    application's error: a 500 with its traceback in the log, never a 400 blaming the client."""

    @pytest.fixture(autouse=True)
    def failing_urls(self, settings):
        settings.ROOT_URLCONF = "tests.failing_urls"

    @staticmethod
    def assert_logged_as_a_bug(output: str, detail: str) -> None:
        lines = log_lines(output)
        errors = [line for line in lines if line.get("level") == "ERROR"]
        assert [line["message"] for line in errors] == ["Unhandled error in Lambda handler"]
        assert "Traceback" in errors[0]["exception"] and detail in errors[0]["exception"]
        assert not [line for line in lines if "Malformed" in str(line.get("message"))]

    @pytest.mark.parametrize("name", HTTP_FORMATS)
    def test_a_view_error_django_propagates_is_a_500(self, handler, settings, capsys, name):
        settings.DEBUG_PROPAGATE_EXCEPTIONS = True
        capsys.readouterr()
        result = handler(http_event(name, "/failing/key-error/"), None)
        assert result == {"statusCode": 500, "body": "Internal error"}
        self.assert_logged_as_a_bug(capsys.readouterr().out, "setting the view forgot")

    @pytest.mark.parametrize("name", HTTP_FORMATS)
    def test_a_streamed_response_that_fails_is_a_500(self, handler, capsys, name):
        capsys.readouterr()
        result = handler(http_event(name, "/failing/stream/"), None)
        assert result == {"statusCode": 500, "body": "Internal error"}
        self.assert_logged_as_a_bug(capsys.readouterr().out, "row the stream forgot")

    def test_a_websocket_view_error_django_propagates_is_a_500(self, handler, settings, capsys):
        settings.DEBUG_PROPAGATE_EXCEPTIONS = True
        capsys.readouterr()
        result = handler(load_event("disconnect"), None)
        assert result == {"statusCode": 500, "body": "Internal error"}
        self.assert_logged_as_a_bug(capsys.readouterr().out, "session key the dispatch forgot")

    def test_without_propagation_django_answers_the_view_error_itself(self, handler):
        result = handler(http_event("http_rest_v1", "/failing/key-error/"), None)
        assert result["statusCode"] == 500 and "Malformed" not in result["body"]


def reshaped(name: str, **changes) -> dict:
    """A sample event with top-level keys replaced (a value of ``...`` removes the key)."""
    event = load_event(name)
    for key, value in changes.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


class TestMalformedHttpShapes:
    """Each part of an HTTP event a request is built from, of the wrong shape: a 400 and one
    warning line, before apig-wsgi or Django run."""

    @pytest.mark.parametrize(
        "event",
        [
            reshaped("http_rest_v1", version="3.0"),
            reshaped("http_rest_v1", version=None),
            reshaped("http_rest_v1", path="/\u20ac"),
            reshaped("http_rest_v1", body=5),
            reshaped("http_rest_v1", body="abc", isBase64Encoded=True),
            reshaped("http_rest_v1", body="\u00e9t\u00e9", isBase64Encoded=True),
            reshaped("http_rest_v1", multiValueHeaders={"Host": []}),
            reshaped("http_rest_v1", multiValueHeaders={"Host": "example.com"}),
            reshaped("http_rest_v1", multiValueHeaders={"Accept": [7]}),
            reshaped("http_rest_v1", multiValueHeaders=..., headers={"Accept": None}),
            reshaped(
                "http_rest_v1",
                multiValueHeaders=...,
                headers={"Content-Type": "text/plain; charset=\x00"},
            ),
            reshaped("http_rest_v1", multiValueQueryStringParameters="a=b"),
            reshaped("http_alb", queryStringParameters=["a", "b"]),
            reshaped("http_api_v2", headers=...),
            reshaped("http_api_v2", headers=None),
            reshaped("http_api_v2", rawPath=...),
            reshaped("http_api_v2", rawQueryString=None),
            reshaped("http_api_v2", cookies=None),
            reshaped("http_api_v2", cookies=["a=b", 3]),
            reshaped("http_function_url", requestContext={"http": {"method": "GET"}}),
            reshaped("http_function_url", body=["x"]),
        ],
    )
    def test_is_a_400_with_a_warning(self, handler, capsys, event):
        capsys.readouterr()
        assert handler(event, None) == {"statusCode": 400, "body": "Malformed event"}
        lines = log_lines(capsys.readouterr().out)
        warnings = [line for line in lines if line["level"] != "INFO"]
        assert len(warnings) == 1 and warnings[0]["level"] == "WARNING"
        assert warnings[0]["message"].startswith("Malformed event: ")
        assert "exception" not in warnings[0]

    @pytest.mark.parametrize("name", HTTP_FORMATS)
    def test_the_samples_pass(self, handler, name):
        assert handler(load_event(name), None)["statusCode"] < 400

    def test_console_test_events_without_headers_or_query_pass(self, handler):
        event = reshaped(
            "http_rest_v1",
            headers=None,
            multiValueHeaders=None,
            queryStringParameters=None,
            multiValueQueryStringParameters=None,
            body=None,
        )
        assert handler(event, None)["statusCode"] < 500

    def test_a_stage_prefix_django_cannot_decode_is_left_in_the_path(self, handler):
        v1 = load_event("http_rest_v1")
        v1["path"], v1["requestContext"]["path"] = "/login/", "/\u00e9/login/"
        v2 = load_event("http_api_v2")
        v2["requestContext"]["stage"], v2["rawPath"] = "\u00e9", "/\u00e9/login/"
        assert handler(v1, None)["statusCode"] == 200
        assert handler(v2, None)["statusCode"] == 404
