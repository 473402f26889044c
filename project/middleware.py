"""Middleware of the example project."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse


class LazyWhiteNoiseMiddleware:
    """WhiteNoise, built on the first request that is not a WebSocket event.

    Its start-up scan of every static file costs ~50 ms; a cold start that serves a
    ``$connect`` should not pay for files it never sends.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.whitenoise: Any = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = request.META.get("apig_wsgi.request_context")
        if isinstance(context, dict) and "eventType" in context:
            return self.get_response(request)
        if self.whitenoise is None:
            from whitenoise.middleware import WhiteNoiseMiddleware

            self.whitenoise = WhiteNoiseMiddleware(self.get_response)
        return self.whitenoise(request)
