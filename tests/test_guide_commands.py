"""Testing guide: management command examples, verbatim."""

import pytest
from django.core.management import call_command

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession


@pytest.mark.django_db
def test_clear_websocket_sessions_command():
    api_gateway = ApiGateway.objects.create(
        api_name="Test API",
        target_base_endpoint="https://testserver/ws/",
        api_id="abc123",
        api_created=True,
        stage_name="test",
    )

    WebSocketSession.objects.create(
        connection_id="connected",
        api_gateway=api_gateway,
        connected=True,
    )

    WebSocketSession.objects.create(
        connection_id="disconnected",
        api_gateway=api_gateway,
        connected=False,
    )

    call_command("clearWebSocketSessions")

    assert WebSocketSession.objects.filter(connection_id="connected").exists()
    assert not WebSocketSession.objects.filter(connection_id="disconnected").exists()


@pytest.mark.django_db
def test_cleanup_command_runs_as_the_guide_calls_it():
    from django.core.management import call_command

    call_command(
        "cleanupWebSocketTokens",
        token_age=300,
        rate_limit_age=7,
    )
