"""Answers for a function that is deployed wrongly: clean JSON errors and one log line each.

A misconfigured deployment must tell its operator what to fix, once per event, in the log they
read (``zappa tail``, CloudWatch), and tell the client nothing but that the service is
unavailable: no traceback, no setting's value. Without this, a settings error at import time
fails Lambda's init, and Lambda retries the init on every event with a traceback that is easy
to misread; an unreachable database becomes Django's HTML 500 page plus a traceback per event.
"""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Callable
from typing import Any

from .events import EventKind, classify

LambdaHandler = Callable[[Any, Any], Any]
DATABASE_HINT = (
    "check DATABASE_URL, the function's subnets and security group, "
    "and that the database is running"
)
# Kinds whose work starts with a database query; keep-warm must stay free of any.
DATABASE_KINDS = frozenset(
    {
        EventKind.WEBSOCKET,
        EventKind.HTTP,
        EventKind.MANAGE,
        EventKind.SCHEDULED,
        EventKind.COMMAND,
        EventKind.FANOUT,
    }
)


def error_answer(kind: EventKind, event: Any, status: int, public: str, detail: str) -> Any:
    """The result for ``kind``: ``public`` for clients; ``detail`` only for operators' calls."""
    body = json.dumps({"error": public})
    if kind is EventKind.HTTP:
        return {
            "statusCode": status,
            "headers": {"Content-Type": "application/json"},
            "body": body,
            "isBase64Encoded": False,
        }
    if kind is EventKind.WEBSOCKET:
        return {"statusCode": status, "body": body}
    if kind is EventKind.MANAGE:
        command = event.get("manage") if isinstance(event, dict) else None
        return {"statusCode": status, "command": command, "error": detail}
    # Schedules, commands, keep-warm, fan-outs: invoked by the operator's own resources.
    return {"statusCode": status, "error": detail}


def setup_failure_message(error: BaseException) -> str:
    """One line naming what to fix: an ImproperlyConfigured message names the setting; for
    any other error, the settings line that raised it names the variable (e.g. an ``int()``
    of a non-numeric environment variable)."""
    from django.core.exceptions import ImproperlyConfigured

    if isinstance(error, ImproperlyConfigured):
        return str(error)
    message = f"{type(error).__name__}: {error}"
    settings_file = os.environ.get("DJANGO_SETTINGS_MODULE", "").replace(".", os.sep) + ".py"
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if settings_file != ".py" and frame.filename.endswith(os.sep + settings_file):
            return f"{message} (in {settings_file}, line {frame.lineno}: {frame.line})"
    return message


def misconfigured_handler(error: BaseException) -> LambdaHandler:
    """A handler for a function whose set-up failed: every event gets a 500 and one line.

    Init succeeds (no crash loop); the traceback of an unexpected set-up error is logged once,
    at init, where it belongs. An ImproperlyConfigured message is the whole story.
    """
    from django.core.exceptions import ImproperlyConfigured

    from .observability import get_logger

    logger = get_logger()
    message = setup_failure_message(error)
    if not isinstance(error, ImproperlyConfigured):
        logger.error(
            "Function set-up failed",
            extra={"exception": "".join(traceback.format_exception(error))},
        )

    def handler(event: Any, context: Any) -> Any:
        kind = classify(event)
        logger.error(
            "Function misconfigured: %s",
            message,
            extra={"event_kind": kind.value, "status": 500},
        )
        return error_answer(kind, event, 500, "Service misconfigured", message)

    return handler


def database_unavailable(kind: EventKind, event: Any, logger: Any) -> Any:
    """None if the database answers (or ``kind`` needs none); else the 503 to return.

    Connecting first turns "no database" into one line naming DATABASE_URL, instead of an
    exception inside whatever view or command ran first. A connection kept from an earlier
    event costs nothing here.
    """
    if kind not in DATABASE_KINDS:
        return None
    from django.db import DatabaseError, connection

    try:
        connection.ensure_connection()
    except DatabaseError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        detail = f"Database unavailable ({DATABASE_HINT}): {reason}"
        logger.error(detail, extra={"status": 503})
        return error_answer(kind, event, 503, "Service unavailable", detail)
    return None


def websocket_host_refused(domain_name: str, kind: EventKind, event: Any, logger: Any) -> Any:
    """None if the WebSocket event's host is allowed; else the 400 to return.

    Django would refuse the host too, but with an HTML page; a WebSocket client deserves JSON
    and the operator a line saying which setting to extend.
    """
    from django.conf import settings
    from django.http.request import split_domain_port, validate_host

    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # Django's own DEBUG default
    domain, _ = split_domain_port(domain_name)
    if domain and validate_host(domain, allowed):
        return None
    logger.warning(
        "WebSocket host %r is not in ALLOWED_HOSTS: add it (DJANGO_ALLOWED_HOSTS in the "
        "example project)",
        domain_name,
        extra={"status": 400},
    )
    return error_answer(kind, event, 400, "Host not allowed", "")
