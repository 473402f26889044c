"""Fixtures the testing guide's examples use (``api_gateway``, ``websocket_session``) and more."""

from __future__ import annotations

import pytest

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession


@pytest.fixture
def api_gateway(db):
    return ApiGateway.objects.create(
        api_name="Test API",
        target_base_endpoint="https://testserver/ws/",
        api_id="abc123",
        api_created=True,
        stage_name="test",
    )


@pytest.fixture
def websocket_session(api_gateway):
    return WebSocketSession.objects.create(
        connection_id="connection-1", api_gateway=api_gateway, channel_name="general"
    )
