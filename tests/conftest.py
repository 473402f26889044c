"""Fixtures the testing guide's examples use (``api_gateway``, ``websocket_session``) and more."""

from __future__ import annotations

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

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


@pytest.fixture
def keep_test_connection(monkeypatch):
    """Lambda closes stale DB connections around each event; inside a test transaction that
    would drop the test's own connection (PostgreSQL), so do what Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    monkeypatch.setattr("django.db.close_old_connections", lambda **kwargs: None)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
