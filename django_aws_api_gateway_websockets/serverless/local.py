"""Running the Lambda handler on this machine: a Lambda-like context and a logged-in caller."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LocalLambdaContext:
    """The attributes of AWS's Lambda context object that handlers and powertools read."""

    function_name: str = "local-websockets"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    timeout_seconds: float = 30.0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local-websockets"
    log_stream_name: str = "local"
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        elapsed = time.monotonic() - self.started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


def login_session_and_token(user: Any) -> tuple[str, str]:
    """A Django session logged in as ``user`` and a fresh WebSocket token bound to it."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    from ..models import WebSocketToken

    session = import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    token = WebSocketToken.generate_token(user=user, session_key=session.session_key)
    return session.session_key, token.token


def authenticate_connect_event(event: dict[str, Any], user: Any) -> dict[str, Any]:
    """A copy of a CONNECT event carrying ``user``'s session cookie and a fresh ``ws_token``."""
    from django.conf import settings

    session_key, token = login_session_and_token(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={session_key}"
    event = {**event}
    event["headers"] = {**(event.get("headers") or {}), "Cookie": cookie}
    if isinstance(event.get("multiValueHeaders"), dict):
        event["multiValueHeaders"] = {**event["multiValueHeaders"], "Cookie": [cookie]}
    query = {**(event.get("queryStringParameters") or {}), "ws_token": token}
    event["queryStringParameters"] = query
    if "multiValueQueryStringParameters" in event:
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
    return event
