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
from urllib.parse import urlsplit

from .events import EventKind, classify

LambdaHandler = Callable[[Any, Any], Any]
DATABASE_HINT = (
    "check DATABASE_URL, the function's subnets and security group, "
    "and that the database is running"
)
# Direct invocations that run code against the database. HTTP and WebSocket events are probed
# inside the request instead (probe_database_on_request); keep-warm must stay free of any.
DIRECT_DATABASE_KINDS = frozenset(
    {
        EventKind.MANAGE,
        EventKind.SCHEDULED,
        EventKind.COMMAND,
        EventKind.FANOUT,
        EventKind.REPLAY,
    }
)


class DatabaseUnavailable(Exception):
    """The database cannot be reached: the event gets a 503 and one line naming DATABASE_URL."""


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


def ensure_database() -> None:
    """Connect if there is no connection yet; raise DatabaseUnavailable if that fails.

    Connecting first turns "no database" into one line naming DATABASE_URL, instead of an
    exception (and Django's HTML 500 with a traceback) inside whatever ran first. An open
    connection costs nothing here.
    """
    from django.db import DatabaseError, connection

    try:
        connection.ensure_connection()
    except DatabaseError as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DatabaseUnavailable(f"Database unavailable ({DATABASE_HINT}): {reason}") from None


def probe_database_on_request(sender: Any, environ: Any = None, **kwargs: Any) -> None:
    """``request_started`` receiver for the requests the Lambda handler builds.

    Connected after Django's own ``close_old_connections``, so the connection it opens is the
    one the view uses: no second connect with ``CONN_MAX_AGE=0``, no extra health check.
    Static files need no database and are left alone.
    """
    if not isinstance(environ, dict) or "apig_wsgi.full_event" not in environ:
        return
    from django.conf import settings

    static_path = urlsplit(str(getattr(settings, "STATIC_URL", "") or "")).path
    if static_path.startswith("/") and environ.get("PATH_INFO", "").startswith(static_path):
        return
    ensure_database()


def database_unavailable_answer(
    error: DatabaseUnavailable, kind: EventKind, event: Any, logger: Any
) -> Any:
    logger.error(str(error), extra={"status": 503})
    return error_answer(kind, event, 503, "Service unavailable", str(error))


def websocket_host_refused(domain_name: str, kind: EventKind, event: Any, logger: Any) -> Any:
    """None if the WebSocket event's host is allowed; else the 400 to return.

    Django would refuse the host too, but with an HTML page; a WebSocket client deserves JSON
    and the operator a line saying which setting to extend.
    """
    from ..request_checks import host_allowed

    if host_allowed(domain_name):
        return None
    logger.warning(
        "WebSocket host %r is not in ALLOWED_HOSTS: add it (DJANGO_ALLOWED_HOSTS in the "
        "example project)",
        domain_name,
        extra={"status": 400},
    )
    return error_answer(kind, event, 400, "Host not allowed", "")
