"""Test helpers for projects using the library: header builders, a WebSocket test client that
runs events through the Lambda handler, and an outbox of what was sent to each connection.

pytest users get the fixtures from the installed plugin (``websocket_client``,
``websocket_outbox``, ``api_gateway``, ``websocket_session``); unittest users subclass
``WebSocketTestCase`` or mix in ``WebSocketTestMixin``.
"""

from __future__ import annotations

from typing import Any

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


# Imported on first use: django.test needs configured settings, and the client brings in the
# local gateway's modules (~60 ms), which the pytest plugin must not cost every test run.
_LAZY = {
    "WebSocketClient": "client",
    "WebSocketResponse": "client",
    "WebSocketTestCase": "cases",
    "WebSocketTestMixin": "cases",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_LAZY[name]}"), name)
