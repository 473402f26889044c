"""The testing guide's records: an API Gateway matching the header helpers, and its session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .headers import DEFAULT_API_ID, DEFAULT_CONNECTION_ID, TEST_HOST

if TYPE_CHECKING:
    from ..models import ApiGateway, WebSocketSession


def create_api_gateway(**fields: Any) -> ApiGateway:
    """An ``ApiGateway`` whose ``api_id`` is the one the header helpers and the client send."""
    from ..models import ApiGateway

    values: dict[str, Any] = {
        "api_name": "Test API",
        "target_base_endpoint": f"https://{TEST_HOST}/ws/",
        "api_id": DEFAULT_API_ID,
        "api_created": True,
        "stage_name": "test",
    }
    values.update(fields)
    return ApiGateway.objects.create(**values)


def create_websocket_session(api_gateway: ApiGateway, **fields: Any) -> WebSocketSession:
    """A connected session of ``api_gateway`` with the header helpers' connection id."""
    from ..models import WebSocketSession

    values: dict[str, Any] = {
        "connection_id": DEFAULT_CONNECTION_ID,
        "api_gateway": api_gateway,
        "channel_name": "general",
    }
    values.update(fields)
    return WebSocketSession.objects.create(**values)
