"""Testing guide: handler selection examples, verbatim (view in ``tests.seed.views``)."""

import json

import pytest

from tests.seed.headers import api_gateway_headers

pytestmark = pytest.mark.urls("tests.seed.urls_chat")


@pytest.mark.django_db
def test_chat_message_handler_is_selected(client, api_gateway, websocket_session):
    response = client.post(
        "/ws/default",
        data=json.dumps({"action": "chat_message"}),
        content_type="application/json",
        **api_gateway_headers(),
    )

    assert response.status_code == 200
    assert response.json()["handler"] == "chat_message"


@pytest.mark.django_db
def test_fetch_history_handler_is_selected(client, api_gateway, websocket_session):
    response = client.post(
        "/ws/default",
        data=json.dumps({"action": "fetch_history"}),
        content_type="application/json",
        **api_gateway_headers(),
    )

    assert response.status_code == 200
    assert response.json()["handler"] == "fetch_history"
