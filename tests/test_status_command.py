"""websocketStatus: what an operator (or a cron/CI check) learns, and its exit status."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    CleanupRun,
    WebSocketSession,
    WebSocketToken,
)

pytestmark = pytest.mark.django_db


def status(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("websocketStatus", *args, stdout=out)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def healthy(django_user_model):
    gateway = ApiGateway.objects.create(api_name="Prod", api_id="abc", api_created=True)
    for n, channel in enumerate(["lobby", "lobby", "support"]):
        WebSocketSession.objects.create(
            connection_id=f"c{n}", channel_name=channel, api_gateway=gateway
        )
    call_command("clearWebSocketSessions", stdout=io.StringIO())
    call_command("cleanupWebSocketTokens", stdout=io.StringIO())
    return gateway


def test_healthy_system_exits_0_with_counts(healthy):
    code, output = status("--json")
    assert code == 0
    report = json.loads(output)
    assert report["connected"] == 3 and report["problems"] == []
    assert report["gateways"][0] == {
        "name": "Prod",
        "api_id": "abc",
        "stage": "production",
        "created": True,
        "connected": 3,
    }
    assert report["channels"][:2] == [
        {"channel": "lobby", "connected": 2},
        {"channel": "support", "connected": 1},
    ]
    assert all(report["cleanups"].values())


def test_table_output(healthy):
    code, output = status()
    assert code == 0
    assert "Sessions: 3 connected, 0 stale" in output and "All good." in output


def test_stale_sessions_and_missed_cleanups_need_attention(healthy):
    WebSocketSession.objects.filter(connection_id="c0").update(
        created_on=timezone.now() - timedelta(hours=3)
    )
    CleanupRun.objects.filter(command="cleanupWebSocketTokens").update(
        last_run=timezone.now() - timedelta(hours=5)
    )
    code, output = status()
    assert code == 1
    assert "1 session(s) connected for over 2 hours" in output
    assert "cleanupWebSocketTokens last ran" in output


def test_fresh_install_needs_attention():
    code, output = status("--json")
    assert code == 1
    problems = json.loads(output)["problems"]
    assert "clearWebSocketSessions has never run" in problems
    assert "no API Gateway has been created in AWS" in problems


def test_cleanup_backlog(healthy, django_user_model):
    user = django_user_model.objects.create_user(username="u")
    WebSocketToken.objects.bulk_create(
        WebSocketToken(token=f"{n:064x}", user=user, session_key="s", used=True) for n in range(5)
    )
    assert status("--backlog-limit", "4")[0] == 1
    assert status("--backlog-limit", "5")[0] == 0


def test_bad_arguments():
    from django.core.management import CommandError

    with pytest.raises(CommandError):
        status("--cleanup-max-age-hours", "0")
