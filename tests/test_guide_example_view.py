"""Testing guide: message handler, connection and disconnection examples, verbatim."""

import json

import pytest
from django.test import Client

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from tests.seed.headers import api_gateway_connect_headers, api_gateway_headers

pytestmark = pytest.mark.urls("tests.seed.urls_example")


@pytest.mark.django_db
def test_default_handler_returns_message():
    api_gateway = ApiGateway.objects.create(
        api_name="Test API",
        target_base_endpoint="https://testserver/ws/",
        api_id="abc123",
        api_created=True,
        stage_name="test",
    )

    WebSocketSession.objects.create(
        connection_id="connection-1",
        api_gateway=api_gateway,
        channel_name="testing",
    )

    client = Client()

    response = client.post(
        "/ws/default",
        data=json.dumps(
            {
                "action": "default",
                "message": "Hello",
            }
        ),
        content_type="application/json",
        **api_gateway_headers(
            api_id="abc123",
            connection_id="connection-1",
        ),
    )

    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["message"] == "Hello"


@pytest.mark.django_db
def test_connect_creates_websocket_session():
    ApiGateway.objects.create(
        api_name="Test API",
        target_base_endpoint="https://testserver/ws/",
        api_id="abc123",
        api_created=True,
        stage_name="test",
    )

    client = Client()

    response = client.post(
        "/ws/connect?channel=general",
        data="",
        content_type="application/json",
        **api_gateway_connect_headers(
            api_id="abc123",
            connection_id="connection-1",
        ),
    )

    assert response.status_code == 200

    session = WebSocketSession.objects.get(connection_id="connection-1")
    assert session.channel_name == "general"
    assert session.connected is True


@pytest.mark.django_db
def test_disconnect_marks_session_disconnected():
    api_gateway = ApiGateway.objects.create(
        api_name="Test API",
        target_base_endpoint="https://testserver/ws/",
        api_id="abc123",
        api_created=True,
        stage_name="test",
    )

    WebSocketSession.objects.create(
        connection_id="connection-1",
        api_gateway=api_gateway,
        channel_name="general",
        connected=True,
    )

    client = Client()

    response = client.post(
        "/ws/disconnect",
        data="",
        content_type="application/json",
        **api_gateway_headers(
            api_id="abc123",
            connection_id="connection-1",
        ),
    )

    assert response.status_code == 200

    session = WebSocketSession.objects.get(connection_id="connection-1")
    assert session.connected is False
