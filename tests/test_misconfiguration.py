"""A wrongly deployed function answers every event with clean JSON and one log line naming the
setting to fix: never a traceback to the client, never an init crash loop.

Settings errors happen at import, in Lambda's init, so those cases run the real
``lambda_handler`` in a fresh interpreter (``tests.lambda_process``)."""

from __future__ import annotations

import json

import pytest

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from tests.lambda_process import ROOT, invoke_in_process, lambda_environment
from tests.lambda_support import SAMPLE_API_ID, SAMPLE_CONNECTION_ID, load_event, log_lines

ERROR_EVENTS = ["connect", "http_rest_v1", "http_api_v2", "message_chat", "keep_warm"]


def all_events() -> list[dict]:
    return [load_event(name) for name in ERROR_EVENTS] + [{"manage": "migrate"}]


def assert_clean(result: dict, status: int) -> None:
    assert result["statusCode"] == status
    if "body" in result:
        body = json.loads(result["body"])
        assert set(body) == {"error"}
        assert "Traceback" not in result["body"] and "DJANGO_" not in result["body"]


@pytest.mark.parametrize(
    "secret",
    [
        # What zappa_settings.json ships, exactly.
        json.loads((ROOT / "zappa_settings.json").read_text())["dev"]["aws_environment_variables"][
            "DJANGO_SECRET_KEY"
        ],
        "django-insecure-abcdefghijklmnopqrstuvwxyz0123456789abcdefgh",
        "qz7-tiny",
    ],
)
def test_placeholder_secret_answers_500_and_names_the_setting(secret, tmp_path):
    results, logs, process = invoke_in_process(
        all_events(), lambda_environment(DJANGO_SECRET_KEY=secret), tmp_path
    )
    for result in results:
        assert_clean(result, 500)
    assert results[1]["headers"]["Content-Type"] == "application/json"
    # The operator's own call (zappa manage / aws lambda invoke) gets the reason too.
    assert results[-1]["command"] == "migrate" and "DJANGO_SECRET_KEY" in results[-1]["error"]
    errors = [line for line in logs if line["level"] == "ERROR"]
    assert len(errors) == len(results)  # one line per event, not more
    assert all("DJANGO_SECRET_KEY" in line["message"] for line in errors)
    assert all("exception" not in line for line in errors)
    assert secret not in process.stdout + process.stderr
    assert "Traceback" not in process.stderr


def test_missing_secret_is_refused_the_same_way(tmp_path):
    results, logs, _ = invoke_in_process(
        [load_event("connect")], lambda_environment(DJANGO_SECRET_KEY=""), tmp_path
    )
    assert_clean(results[0], 500)
    assert "DJANGO_SECRET_KEY is not set" in logs[0]["message"]


def test_a_good_secret_starts_the_function(tmp_path):
    results, _, _ = invoke_in_process([load_event("keep_warm")], lambda_environment(), tmp_path)
    assert results == [{"status": "warm"}]


def test_unexpected_setup_error_logs_its_traceback_once_and_answers_500(tmp_path):
    # A bare int() of the settings file, not one of the checked WEBSOCKETS_* variables.
    env = lambda_environment(DJANGO_CONN_MAX_AGE="sixty")
    results, logs, _ = invoke_in_process([load_event("connect")] * 2, env, tmp_path)
    assert [r["statusCode"] for r in results] == [500, 500]
    assert "Traceback" not in results[0]["body"]
    tracebacks = [line for line in logs if "exception" in line]
    assert len(tracebacks) == 1 and "sixty" in tracebacks[0]["exception"]
    per_event = [line for line in logs if line["message"].startswith("Function misconfigured")]
    assert len(per_event) == 2 and "ValueError" in per_event[0]["message"]
    # The settings line that failed names the variable to fix.
    assert "project/settings.py, line" in per_event[0]["message"]
    assert "DJANGO_CONN_MAX_AGE" in per_event[0]["message"]


def test_unparseable_websockets_variable_is_one_line_naming_it(tmp_path):
    env = lambda_environment(WEBSOCKETS_TOKEN_EXPIRY_SECONDS="sixty")
    results, logs, _ = invoke_in_process([load_event("connect")] * 2, env, tmp_path)
    assert [r["statusCode"] for r in results] == [500, 500]
    assert not [line for line in logs if "exception" in line]
    per_event = [line for line in logs if line["message"].startswith("Function misconfigured")]
    assert len(per_event) == 2 and "WEBSOCKETS_TOKEN_EXPIRY_SECONDS" in per_event[0]["message"]


def test_unreachable_database_answers_503_and_names_database_url(tmp_path):
    # Port 1 on the loopback: nothing listens, the connection is refused at once.
    env = lambda_environment(DATABASE_URL="postgres://postgres@127.0.0.1:1/websockets")
    events = [load_event("connect"), load_event("http_rest_v1"), {"manage": "migrate"}]
    events.append(load_event("keep_warm"))
    results, logs, process = invoke_in_process(events, env, tmp_path)
    for result in results[:3]:
        assert_clean(result, 503)
    assert "DATABASE_URL" in results[2]["error"]
    assert results[3] == {"status": "warm"}  # keep-warm never touches the database
    naming = [line for line in logs if "DATABASE_URL" in line.get("message", "")]
    assert len(naming) == 3 and all(line["level"] == "ERROR" for line in naming)
    assert not [line for line in logs if "exception" in line]
    assert "Traceback" not in process.stderr


pytestmark_db = pytest.mark.django_db


@pytest.fixture
def handler(settings, keep_test_connection):
    settings.ALLOWED_HOSTS = ["example.com"]
    return make_lambda_handler()


@pytestmark_db
def test_websocket_host_missing_from_allowed_hosts(handler, capsys):
    ApiGateway.objects.create(api_name="Sample", api_id=SAMPLE_API_ID, stage_name="production")
    result = handler(load_event("connect"), None)
    assert_clean(result, 400)
    assert json.loads(result["body"]) == {"error": "Host not allowed"}
    assert not WebSocketSession.objects.exists()
    lines = log_lines(capsys.readouterr().out)
    naming = [line for line in lines if "ALLOWED_HOSTS" in line.get("message", "")]
    assert len(naming) == 1
    assert "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com" in naming[0]["message"]


@pytestmark_db
def test_no_region_for_provisioning_is_a_400_naming_the_setting(handler, settings, capsys):
    settings.AWS_GATEWAY_REGION_NAME = ""
    settings.AWS_REGION_NAME = ""
    gateway = ApiGateway.objects.create(
        api_name="chat",
        lambda_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:f",
    )
    result = handler({"manage": f"createApiGateway --pk {gateway.pk}"}, None)
    assert result["statusCode"] == 400
    assert "AWS_GATEWAY_REGION_NAME" in result["error"]
    # What `zappa manage` shows the operator: the outcome line of the command.
    (outcome,) = [
        line
        for line in log_lines(capsys.readouterr().out)
        if line.get("message") == f"manage createApiGateway --pk {gateway.pk}"
    ]
    assert outcome["statusCode"] == 400 and "AWS_GATEWAY_REGION_NAME" in outcome["error"]


@pytestmark_db
def test_no_region_for_a_fan_out_is_one_line_not_a_traceback_per_session(
    handler, settings, capsys, django_user_model
):
    settings.ALLOWED_HOSTS = [".amazonaws.com"]
    settings.AWS_GATEWAY_REGION_NAME = ""
    settings.AWS_REGION_NAME = ""
    gateway = ApiGateway.objects.create(api_name="Sample", api_id=SAMPLE_API_ID)
    for number in range(3):
        WebSocketSession.objects.create(
            connection_id=f"other-{number}", api_gateway=gateway, channel_name="general"
        )
    WebSocketSession.objects.create(
        connection_id=SAMPLE_CONNECTION_ID, api_gateway=gateway, channel_name="general"
    )
    result = handler(load_event("message_chat"), None)
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["delivered"] == 0
    lines = log_lines(capsys.readouterr().out)
    naming = [line for line in lines if "AWS_GATEWAY_REGION_NAME" in line.get("message", "")]
    assert len(naming) == 1 and "exception" not in naming[0]


def test_postgresql_connect_is_bounded_so_a_silent_network_still_gets_its_line():
    import subprocess
    import sys

    script = (
        "from django.conf import settings; "
        "print(settings.DATABASES['default']['OPTIONS']['connect_timeout'])"
    )
    env = lambda_environment(DATABASE_URL="postgres://u:p@db.example.internal:5432/w")
    for extra, expected in (({}, "10"), ({"DJANGO_DB_CONNECT_TIMEOUT": "25"}, "25")):
        output = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {script}"],
            cwd=ROOT,
            env={**env, **extra},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert output.strip().splitlines()[-1] == expected
