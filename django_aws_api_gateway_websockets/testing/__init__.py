"""Test helpers for projects using the library: header builders, a WebSocket test client that
runs events through the Lambda handler, and an outbox of what was sent to each connection.

pytest users get the fixtures from the installed plugin (``websocket_client``,
``websocket_outbox``, ``api_gateway``, ``websocket_session``); unittest users mix in
``WebSocketTestMixin`` (``testing.cases``, imported on first use: it needs Django's settings).
"""

from __future__ import annotations

from typing import Any

from .client import WebSocketClient, WebSocketResponse
from .headers import api_gateway_connect_headers, api_gateway_headers
from .outbox import Outbox, SentMessage, capture_sends, current_outbox
from .records import create_api_gateway, create_websocket_session

__all__ = [
    "Outbox",
    "SentMessage",
    "WebSocketClient",
    "WebSocketResponse",
    "WebSocketTestCase",
    "WebSocketTestMixin",
    "api_gateway_connect_headers",
    "api_gateway_headers",
    "capture_sends",
    "create_api_gateway",
    "create_websocket_session",
    "current_outbox",
]


def __getattr__(name: str) -> Any:
    # django.test needs configured settings; the rest of this package does not.
    if name in ("WebSocketTestCase", "WebSocketTestMixin"):
        from . import cases

        return getattr(cases, name)
    raise AttributeError(name)
