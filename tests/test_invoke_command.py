"""``manage.py invoke``: the real handler on a sample event, response and log lines printed."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from tests.lambda_support import EVENTS_DIR, SAMPLE_API_ID, SAMPLE_CONNECTION_ID

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def lambda_ready(settings, keep_test_connection):
    settings.ALLOWED_HOSTS = [".amazonaws.com", ".on.aws", "example.com"]
    ApiGateway.objects.create(api_name="Sample", api_id=SAMPLE_API_ID, stage_name="production")


def invoke(*args: str) -> str:
    out = io.StringIO()
    call_command("invoke", *args, stdout=out)
    return out.getvalue()


def response_of(output: str) -> dict:
    text = output.split("Response:\n", 1)[1].split("\nLogs:", 1)[0]
    return json.loads(text)


def test_connect_as_a_user_then_message(django_user_model):
    django_user_model.objects.create_user(username="demo", password="demo")
    output = invoke(str(EVENTS_DIR / "connect.json"), "--as", "demo")
    assert response_of(output)["statusCode"] == 200
    session = WebSocketSession.objects.get(connection_id=SAMPLE_CONNECTION_ID)
    assert session.user.username == "demo"

    output = invoke(str(EVENTS_DIR / "message_who_is_here.json"))
    assert json.loads(response_of(output)["body"])["type"] == "here_now"
    logs = output.split("Logs:\n", 1)[1]
    handled = [json.loads(line) for line in logs.splitlines() if "Event handled" in line]
    assert handled[0]["correlation_id"] == "Cq1BJFkOIAMFdWh="


def test_connect_without_user_shows_the_rejection():
    output = invoke(str(EVENTS_DIR / "connect.json"))
    assert response_of(output)["statusCode"] == 401
    assert "rejected" in output


@pytest.mark.parametrize("name", sorted(path.name for path in EVENTS_DIR.glob("*.json")))
def test_every_sample_event_gives_a_response(name):
    response = response_of(invoke(str(EVENTS_DIR / name)))
    assert response is not None


def test_missing_file(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        invoke(str(tmp_path / "nope.json"))


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_bad_event_file(tmp_path, content):
    path = tmp_path / "event.json"
    path.write_text(content)
    with pytest.raises(CommandError):
        invoke(str(path))


def test_unknown_user():
    with pytest.raises(CommandError, match="No user"):
        invoke(str(EVENTS_DIR / "connect.json"), "--as", "nobody")


def test_bad_handler_path():
    with pytest.raises(CommandError, match="Cannot import"):
        invoke(str(EVENTS_DIR / "keep_warm.json"), "--handler", "no.such.handler")
