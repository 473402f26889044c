"""Events of the exact shape API Gateway sends to Lambda, built for local connections.

Pure functions: no asyncio, no Django.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

BODY_SELECTOR = "$request.body."


def aws_id() -> str:
    """An id shaped like API Gateway's connection and request ids (16 base64 characters)."""
    return base64.b64encode(os.urandom(11)).decode()


def now_ms() -> int:
    return int(time.time() * 1000)


def request_time(epoch_ms: int) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(epoch_ms / 1000))


@dataclass
class ConnectionInfo:
    """What API Gateway remembers about a connection, and reports through @connections."""

    connection_id: str
    api_id: str
    stage: str
    domain_name: str
    source_ip: str
    user_agent: str
    connected_at_ms: int = field(default_factory=now_ms)
    last_active_at_ms: int = field(default_factory=now_ms)

    def request_context(self, route_key: str, event_type: str, **extra: Any) -> dict[str, Any]:
        request_id = aws_id()
        epoch = now_ms()
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": request_time(epoch),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at_ms,
            "requestTimeEpoch": epoch,
            "identity": {"userAgent": self.user_agent, "sourceIp": self.source_ip},
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": self.api_id,
            **extra,
        }

    def as_connection_info(self) -> dict[str, Any]:
        """The body of GET @connections/{id}."""
        return {
            "connectedAt": _iso(self.connected_at_ms),
            "identity": {"sourceIp": self.source_ip, "userAgent": self.user_agent},
            "lastActiveAt": _iso(self.last_active_at_ms),
        }


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms / 1000)) + (
        f".{epoch_ms % 1000:03d}Z"
    )


def _multi(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    multi: dict[str, list[str]] = {}
    for name, value in headers:
        multi.setdefault(name, []).append(value)
    return multi


def _query(target: str) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    query = urlsplit(target).query
    if not query:
        return None, None
    multi = parse_qs(query, keep_blank_values=True)
    return {name: values[-1] for name, values in multi.items()}, multi


def connect_event(
    info: ConnectionInfo, target: str, headers: list[tuple[str, str]], scheme: str = "http"
) -> dict[str, Any]:
    """``$connect``: the handshake's headers and query string, as API Gateway forwards them."""
    forwarded = [(n, v) for n, v in headers if n.lower() not in ("x-forwarded-proto",)]
    forwarded += [("X-Forwarded-Proto", scheme), ("X-Forwarded-For", info.source_ip)]
    single, multi_query = _query(target)
    event: dict[str, Any] = {
        "headers": {name: value for name, value in forwarded},
        "multiValueHeaders": _multi(forwarded),
        "requestContext": info.request_context("$connect", "CONNECT"),
        "isBase64Encoded": False,
    }
    if single is not None:
        event["queryStringParameters"] = single
        event["multiValueQueryStringParameters"] = multi_query
    return event


def message_event(info: ConnectionInfo, route_key: str, body: str) -> dict[str, Any]:
    """A message: no headers at all, the frame's text as ``body``."""
    return {
        "requestContext": info.request_context(route_key, "MESSAGE", messageId=aws_id()),
        "body": body,
        "isBase64Encoded": False,
    }


def disconnect_event(info: ConnectionInfo, status_code: int, reason: str) -> dict[str, Any]:
    """``$disconnect``: minimal headers, and why the socket closed."""
    headers = {"Host": info.domain_name, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": info.request_context(
            "$disconnect",
            "DISCONNECT",
            disconnectStatusCode=status_code,
            disconnectReason=reason,
        ),
        "isBase64Encoded": False,
    }


def http_event(
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    stage: str,
    api_id: str,
    stage_prefix: bool = False,
) -> dict[str, Any]:
    """A REST (v1) proxy event for the Django site.

    ``stage_prefix``: the request came to ``/STAGE/...`` of an execute-api URL, so, as API
    Gateway does, ``path`` is what follows the stage and ``requestContext.path`` the whole."""
    parts = urlsplit(target)
    full_path = parts.path or "/"
    path = full_path
    if stage_prefix:
        path = full_path[len(stage) + 1 :] or "/"
    single, multi_query = _query(target)
    forwarded = [(n, v) for n, v in headers if n.lower() not in ("x-forwarded-for",)]
    forwarded += [("X-Forwarded-For", source_ip)]
    if not any(n.lower() == "x-forwarded-proto" for n, _ in forwarded):
        forwarded.append(("X-Forwarded-Proto", "http"))
    try:
        text_body: str | None = body.decode("utf-8") if body else None
        encoded = False
    except UnicodeDecodeError:
        text_body, encoded = base64.b64encode(body).decode(), True
    request_id = aws_id()
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {name: value for name, value in forwarded},
        "multiValueHeaders": _multi(forwarded),
        "queryStringParameters": single,
        "multiValueQueryStringParameters": multi_query,
        "requestContext": {
            "httpMethod": method,
            "path": full_path,
            "stage": stage,
            "requestId": request_id,
            "requestTimeEpoch": now_ms(),
            "identity": {"sourceIp": source_ip},
            "apiId": api_id,
        },
        "body": text_body,
        "isBase64Encoded": encoded,
    }


def select_route(expression: str, body: str, route_keys: set[str]) -> str:
    """The route key API Gateway's route selection expression picks for ``body``.

    Supports ``$request.body.<path>``, the expression WebSocket APIs use; anything that
    selects no known route goes to ``$default``.
    """
    if not expression.startswith(BODY_SELECTOR):
        return "$default"
    try:
        value: Any = json.loads(body)
    except (ValueError, RecursionError):
        return "$default"
    for key in expression[len(BODY_SELECTOR) :].split("."):
        if not isinstance(value, dict) or key not in value:
            return "$default"
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "$default"
    selected = str(value)
    return selected if selected in route_keys else "$default"
