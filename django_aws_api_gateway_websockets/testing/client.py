"""A WebSocket test client: events shaped as API Gateway sends them, through the Lambda handler.

Each call builds the event API Gateway would send for one browser socket (``$connect`` with
the handshake's headers and query string, a message frame, ``$disconnect``) and runs it through
the same handler a deployed function uses (``serverless.make_lambda_handler``), so routing,
identity headers, origin and token checks are the production ones. It answers with what the
view returned; what the library sent back to the socket is in the outbox (``received``).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..local_gateway import events
from .headers import DEFAULT_API_ID, TEST_HOST
from .outbox import Outbox, current_outbox

if TYPE_CHECKING:
    from ..models import ApiGateway

DEFAULT_STAGE = "test"
DEFAULT_ROUTE_SELECTION = "$request.body.action"
_handlers: dict[tuple[Any, ...], Any] = {}


@dataclass
class WebSocketResponse:
    """What the view answered to one event (API Gateway's integration response)."""

    status_code: int
    content: str
    connection_id: str
    headers: dict[str, str] = field(default_factory=dict)
    # The function's log lines for this event (JSON, as CloudWatch would show them).
    logs: list[str] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.content)


def lambda_handler(websocket_path: str) -> Any:
    """The project's Lambda handler delivering to ``websocket_path``; built once per path and
    middleware list (Django loads the middleware when the handler is built)."""
    import os

    from django.conf import settings

    from ..serverless import make_lambda_handler

    key = (websocket_path, tuple(settings.MIDDLEWARE))
    handler = _handlers.get(key)
    if handler is None:
        # Django is set up already (the handler leaves it be): only name what is running.
        module = settings.SETTINGS_MODULE or os.environ.get("DJANGO_SETTINGS_MODULE", "")
        handler = _handlers[key] = make_lambda_handler(module, websocket_path=websocket_path)
    return handler


def invoke(handler: Any, event: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Run one event as Lambda would: its result, and the lines it wrote to the log.

    Two differences, both for the test's sake. The test's database connection is kept: Django
    closes stale connections around each request, which inside a test transaction would drop
    it (its own test client does the same). And the function's log (stdout on Lambda) is
    captured: its per-event INFO lines and metrics documents would bury a test run's output;
    warnings, errors and anything not a structured line still go through.
    """
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.urls import get_script_prefix, set_script_prefix

    from ..serverless.local import LocalLambdaContext

    prefix = get_script_prefix()
    started = request_started.disconnect(close_old_connections)
    finished = request_finished.disconnect(close_old_connections)
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            result = handler(event, LocalLambdaContext())
    finally:
        if started:
            request_started.connect(close_old_connections)
        if finished:
            request_finished.connect(close_old_connections)
        set_script_prefix(prefix)
        lines = log.getvalue().splitlines()
        shown = [line for line in lines if _worth_showing(line)]
        if shown:
            sys.stdout.write("\n".join(shown) + "\n")
    return result, lines


def _worth_showing(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return True
    if not isinstance(record, dict):
        return True
    return "_aws" not in record and record.get("level") not in ("DEBUG", "INFO")


class WebSocketClient:
    """One browser socket: ``connect()``, ``send()``, ``disconnect()``.

    ``api_gateway`` (a record) gives the API id and stage; without it the testing guide's
    ``abc123``/``test`` are used, and a record with that ``api_id`` must exist for the connect
    to be accepted. ``force_login(user)`` makes every connect carry that user's session cookie
    and a fresh ``ws_token``, as the browser client does after fetching one.
    """

    def __init__(
        self,
        api_gateway: ApiGateway | None = None,
        *,
        api_id: str | None = None,
        stage: str | None = None,
        domain_name: str = TEST_HOST,
        source_ip: str = "127.0.0.1",
        origin: str | None = f"https://{TEST_HOST}",
        websocket_path: str | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.api_id = api_id or (api_gateway.api_id if api_gateway else DEFAULT_API_ID)
        self.stage = stage or (api_gateway.stage_name if api_gateway else DEFAULT_STAGE)
        self.domain_name = domain_name
        self.source_ip = source_ip
        self.origin = origin
        self.websocket_path = websocket_path
        self._outbox = outbox
        self.user: Any = None
        self.connection_id = ""
        self.connected = False
        self._info: events.ConnectionInfo | None = None
        # The route selection expression and additional route keys, read at connect.
        self._routes: tuple[str, set[str]] = (DEFAULT_ROUTE_SELECTION, set())

    # ------------------------------------------------------------------ identity

    def force_login(self, user: Any) -> None:
        """Connect as ``user`` from now on (a logged-in session and a token per connect)."""
        self.user = user

    def logout(self) -> None:
        self.user = None

    # ------------------------------------------------------------------ events

    def connect(
        self,
        channel: str | None = None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        connection_id: str | None = None,
    ) -> WebSocketResponse:
        """``$connect``: the view's answer; on a 2xx the socket is open.

        ``token`` overrides the ``ws_token`` made for a logged-in user; ``headers`` are added
        to (or replace) the handshake's own."""
        if self.connected:
            raise RuntimeError("This client is already connected: disconnect() first.")
        info = events.ConnectionInfo(
            connection_id=connection_id or events.aws_id(),
            api_id=self.api_id,
            stage=self.stage,
            domain_name=self.domain_name,
            source_ip=self.source_ip,
            user_agent="websocket-test-client",
        )
        params = dict(query or {})
        if channel is not None:
            params["channel"] = channel
        handshake = {
            "Host": self.domain_name,
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
            "User-Agent": "websocket-test-client",
            "X-Forwarded-Port": "443",
        }
        if self.origin:
            handshake["Origin"] = self.origin
        if self.user is not None:
            from django.conf import settings

            from ..serverless.local import login_session_and_token

            session_key, fresh_token = login_session_and_token(self.user)
            handshake["Cookie"] = f"{settings.SESSION_COOKIE_NAME}={session_key}"
            params.setdefault("ws_token", fresh_token)
        if token is not None:
            params["ws_token"] = token
        handshake.update(headers or {})
        target = f"/{self.stage}" + (f"?{urlencode(params)}" if params else "")
        event = events.connect_event(info, target, list(handshake.items()), scheme="https")
        # Read before the event, so a test counting the queries of send() counts the view's.
        self._routes = self._route_config()
        response = self._invoke(event, info.connection_id)
        self.connection_id = info.connection_id
        if 200 <= response.status_code < 300:
            self._info, self.connected = info, True
        return response

    def send(self, data: Any, *, route_key: str | None = None) -> WebSocketResponse:
        """One message frame: ``data`` as JSON (a ``str`` is sent as is), routed by the
        gateway's route selection expression and additional routes (as they were at connect),
        unless ``route_key`` is given."""
        info = self._require_connection()
        body = data if isinstance(data, str) else json.dumps(data)
        expression, keys = self._routes
        key = route_key or events.select_route(expression, body, keys)
        return self._invoke(events.message_event(info, key, body), info.connection_id)

    def disconnect(self, status_code: int = 1000, reason: str = "") -> WebSocketResponse:
        """``$disconnect``; from then on API Gateway answers posts to it with 410."""
        info = self._require_connection()
        self.connected, self._info = False, None
        outbox = self.outbox_or_none()
        if outbox is not None:
            outbox.mark_gone(info.connection_id)
        return self._invoke(events.disconnect_event(info, status_code, reason), info.connection_id)

    # ------------------------------------------------------------------ what arrived

    def outbox_or_none(self) -> Outbox | None:
        return self._outbox if self._outbox is not None else current_outbox()

    @property
    def received(self) -> list[Any]:
        """The messages the library sent to this client's connection, decoded, oldest first."""
        outbox = self.outbox_or_none()
        if outbox is None:
            raise RuntimeError(
                "No outbox is recording: use the websocket_outbox fixture, "
                "WebSocketTestMixin, or `with capture_sends():`."
            )
        return outbox.to(self.connection_id)

    # ------------------------------------------------------------------ internals

    def _require_connection(self) -> events.ConnectionInfo:
        if not self.connected or self._info is None:
            raise RuntimeError("This client is not connected: connect() first.")
        return self._info

    def _route_config(self) -> tuple[str, set[str]]:
        from ..models import ApiGateway, ApiGatewayAdditionalRoute

        gateway = ApiGateway.objects.filter(api_id=self.api_id).first()
        if gateway is None:
            return DEFAULT_ROUTE_SELECTION, set()
        keys = set(
            ApiGatewayAdditionalRoute.objects.filter(api_gateway=gateway).values_list(
                "route_key", flat=True
            )
        )
        return gateway.route_selection_expression, keys

    def _invoke(self, event: dict[str, Any], connection_id: str) -> WebSocketResponse:
        from ..conf import websocket_setting

        path = self.websocket_path or str(websocket_setting("websocket_path"))
        result, logs = invoke(lambda_handler(path), event)
        return WebSocketResponse(
            status_code=int(result.get("statusCode", 500)),
            content=str(result.get("body") or ""),
            connection_id=connection_id,
            headers=dict(result.get("headers") or {}),
            logs=logs,
        )

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.connected:
            self.disconnect(1001, "Going away")
