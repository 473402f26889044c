"""Views whose errors escape Django's own error handling: the Lambda handler must answer them
with a 500 and the traceback, not blame the event (``tests/test_lambda_handler.py``)."""

from __future__ import annotations

from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import include, path

from django_aws_api_gateway_websockets.views import WebSocketView


def key_error(request: HttpRequest) -> HttpResponse:
    return {}["setting the view forgot"]


def broken_stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield b"first chunk"
        raise KeyError("row the stream forgot")

    return StreamingHttpResponse(chunks(), content_type="text/plain")


class KeyErrorInDispatchView(WebSocketView):
    """A project's own dispatch, outside the handlers and hooks the view guards."""

    USE_WS_TOKEN = False

    def dispatch(self, request, *args, **kwargs):
        return {}["session key the dispatch forgot"]


urlpatterns = [
    path("failing/key-error/", key_error),
    path("failing/stream/", broken_stream),
    path("ws/<slug:route>", KeyErrorInDispatchView.as_view()),
    path("", include("project.urls")),
]
