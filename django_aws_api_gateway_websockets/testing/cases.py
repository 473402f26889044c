"""The test client and the outbox for ``unittest`` (Django's ``TestCase`` and friends)."""

from __future__ import annotations

from typing import Any

from django.test import TestCase

from ..message_rate import limiter
from .client import WebSocketClient
from .outbox import Outbox, capture_sends


class WebSocketTestMixin:
    """Records the library's sends in ``self.websocket_outbox``, a fresh one per test.

    Mix into any ``unittest.TestCase`` (Django's ``TransactionTestCase`` included) before the
    base class; a ``setUp`` of your own must call ``super().setUp()``.
    """

    websocket_outbox: Outbox

    def setUp(self) -> None:
        super().setUp()  # type: ignore[misc]
        self.websocket_outbox = self.enterContext(capture_sends())  # type: ignore[attr-defined]
        # The message rate limit is per process: each test's connections start afresh.
        limiter.clear()

    def websocket_client(self, *args: Any, **kwargs: Any) -> WebSocketClient:
        """A ``WebSocketClient`` (same arguments) whose sends land in this test's outbox."""
        kwargs.setdefault("outbox", self.websocket_outbox)
        return WebSocketClient(*args, **kwargs)


class WebSocketTestCase(WebSocketTestMixin, TestCase):
    """Django's ``TestCase`` with ``websocket_outbox`` and ``websocket_client()``."""
