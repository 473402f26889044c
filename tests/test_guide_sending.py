"""Testing guide: send, broadcast and stale-connection examples, verbatim."""

from unittest.mock import Mock, patch

import pytest
from botocore.exceptions import ClientError

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession


@pytest.mark.django_db
def test_send_message_posts_to_connection(settings):
    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"

    api_gateway = ApiGateway.objects.create(
        api_name="Test API",
        target_base_endpoint="https://testserver/ws/",
        api_id="abc123",
        api_created=True,
        stage_name="test",
    )

    session = WebSocketSession.objects.create(
        connection_id="connection-1",
        api_gateway=api_gateway,
        channel_name="general",
    )

    client = Mock()
    client.post_to_connection.return_value = {"ResponseMetadata": {"HTTPStatusCode": 200}}

    with patch(
        "django_aws_api_gateway_websockets.models.get_boto3_client",
        return_value=client,
    ):
        session.send_message(
            {
                "type": "test",
                "message": "Hello",
            }
        )

    client.post_to_connection.assert_called_once()


@pytest.mark.django_db
def test_send_message_to_channel(settings):
    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"

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
    WebSocketSession.objects.create(
        connection_id="connection-2",
        api_gateway=api_gateway,
        channel_name="general",
        connected=True,
    )
    WebSocketSession.objects.create(
        connection_id="connection-3",
        api_gateway=api_gateway,
        channel_name="support",
        connected=True,
    )

    client = Mock()
    client.post_to_connection.return_value = {"ResponseMetadata": {"HTTPStatusCode": 200}}

    with patch(
        "django_aws_api_gateway_websockets.models.get_boto3_client",
        return_value=client,
    ):
        WebSocketSession.objects.filter(
            channel_name="general",
        ).send_message(
            {
                "type": "test",
                "message": "Hello general.",
            }
        )

    assert client.post_to_connection.call_count == 2


gone_error = ClientError(
    {
        "Error": {
            "Code": "GoneException",
            "Message": "Gone",
        }
    },
    "PostToConnection",
)


@pytest.mark.django_db
def test_stale_connection_is_marked_disconnected(api_gateway, websocket_session):
    """The guide's stale-connection outline, completed: gone is normal, not an error."""
    client = Mock()
    client.post_to_connection.side_effect = gone_error

    with patch(
        "django_aws_api_gateway_websockets.models.get_boto3_client",
        return_value=client,
    ):
        response = websocket_session.send_message({"type": "test"})

    websocket_session.refresh_from_db()
    assert websocket_session.connected is False
    assert response is None


@pytest.mark.django_db
def test_send_message_returns_the_post_to_connection_response(api_gateway, websocket_session):
    """Code written for the original package reads the response of a single send."""
    client = Mock()
    client.post_to_connection.return_value = {"ResponseMetadata": {"HTTPStatusCode": 200}}

    with patch(
        "django_aws_api_gateway_websockets.models.get_boto3_client",
        return_value=client,
    ):
        response = websocket_session.send_message({"type": "test"})

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
