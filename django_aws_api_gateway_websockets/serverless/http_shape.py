"""Whether an HTTP event (REST v1, HTTP API v2, ALB, function URL) has the shape a request is
built from, decided before apig-wsgi and Django see it.

The rules are what apig-wsgi and Django's ``WSGIRequest`` read while building the request, and
nothing more: an event that passes always becomes a request, so an error raised after that is
the application's (a 500 with its traceback), never the client's. Pure functions over plain
dicts, like ``events``: nothing here imports Django.
"""

from __future__ import annotations

import base64
from typing import Any

from .events import MalformedEvent


def check_http_event(event: dict[str, Any]) -> None:
    """Raise ``MalformedEvent`` naming the first part of ``event`` no request can be built from."""
    context = event.get("requestContext")
    # The format is decided as apig-wsgi decides it: ALB by ``requestContext.elb``, else version.
    version = (
        "alb" if isinstance(context, dict) and "elb" in context else event.get("version", "1.0")
    )
    if version in ("1.0", "alb"):
        _check_v1(event)
    elif version == "2.0":
        _check_v2(event, context)
    else:
        raise MalformedEvent("unknown payload version")
    _check_body(event)


def _check_v1(event: dict[str, Any]) -> None:
    _require_text(event.get("httpMethod"), "httpMethod")
    _require_path(event.get("path"), "path")
    if "multiValueQueryStringParameters" in event:
        _require_mapping(
            event["multiValueQueryStringParameters"], "multiValueQueryStringParameters"
        )
    else:
        _require_mapping(event.get("queryStringParameters"), "queryStringParameters")
    if "multiValueHeaders" in event:
        headers = _require_mapping(event["multiValueHeaders"], "multiValueHeaders")
        for name, values in headers.items():
            if not isinstance(values, list) or not values:
                raise MalformedEvent("multiValueHeaders values are lists of strings")
            for value in values:
                _require_header(name, value)
    else:
        for name, value in _require_mapping(event.get("headers"), "headers").items():
            _require_header(name, value)


def _check_v2(event: dict[str, Any], context: Any) -> None:
    http = context.get("http") if isinstance(context, dict) else None
    if not isinstance(http, dict):
        raise MalformedEvent("requestContext.http missing")
    for key in ("method", "sourceIp", "protocol"):
        _require_text(http.get(key), f"requestContext.http.{key}")
    _require_path(event.get("rawPath"), "rawPath")
    _require_text(event.get("rawQueryString"), "rawQueryString")
    headers = event.get("headers")
    if not isinstance(headers, dict):
        raise MalformedEvent("headers missing")
    for name, value in headers.items():
        _require_header(name, value)
    cookies = event.get("cookies", [])
    if not isinstance(cookies, list) or not all(isinstance(c, str) for c in cookies):
        raise MalformedEvent("cookies is a list of strings")


def _check_body(event: dict[str, Any]) -> None:
    body = event.get("body")
    if not body:
        return
    if not isinstance(body, str):
        raise MalformedEvent("body is a string")
    if event.get("isBase64Encoded"):
        try:
            base64.b64decode(body)  # as leniently as apig-wsgi will decode it
        except ValueError:  # binascii.Error, or a str that is not ASCII
            raise MalformedEvent("body is not base64") from None


def _require_text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise MalformedEvent(f"{name} is a string")
    return value


def _require_path(value: Any, name: str) -> None:
    """WSGI carries the path as ISO-8859-1: a character beyond it cannot be in PATH_INFO."""
    try:
        _require_text(value, name).encode("iso-8859-1")
    except UnicodeEncodeError:
        raise MalformedEvent(f"{name} has characters a URL path cannot carry") from None


def _require_mapping(value: Any, name: str) -> dict[Any, Any]:
    """A mapping, or nothing (None: what the console's test events send)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedEvent(f"{name} is a mapping")
    return value


def _require_header(name: Any, value: Any) -> None:
    # No NUL: HTTP forbids it, and Django's charset lookup raises on one in Content-Type.
    if not isinstance(name, str) or not isinstance(value, str) or "\x00" in value:
        raise MalformedEvent("headers are strings")
