"""pytest fixtures, registered by the ``pytest11`` entry point when the library is installed.

They need pytest-django (``db``). Imports happen inside the fixtures: the plugin loads before
Django is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def websocket_message_rate_reset() -> Iterator[None]:
    """Every test starts with full message rate buckets: the limit is per process, and tests
    reuse connection ids (``connection-1``) far faster than 120 messages a minute."""
    from ..message_rate import limiter

    limiter.clear()
    yield
    limiter.clear()


@pytest.fixture
def api_gateway(db: Any) -> Any:
    """The testing guide's ``ApiGateway`` (``api_id="abc123"``, stage ``test``)."""
    from .records import create_api_gateway

    return create_api_gateway()


@pytest.fixture
def websocket_session(api_gateway: Any) -> Any:
    """A connected session ``connection-1`` of ``api_gateway``, channel ``general``."""
    from .records import create_websocket_session

    return create_websocket_session(api_gateway)


@pytest.fixture
def websocket_outbox() -> Iterator[Any]:
    """What the library sends to connections during the test, recorded and not sent."""
    from .outbox import capture_sends

    with capture_sends() as outbox:
        yield outbox


@pytest.fixture
def websocket_client(api_gateway: Any, websocket_outbox: Any) -> Any:
    """A ``WebSocketClient`` for ``api_gateway``; its sends land in ``websocket_outbox``."""
    from .client import WebSocketClient

    return WebSocketClient(api_gateway, outbox=websocket_outbox)
