"""The Lambda handler factory: one handler for every event the function receives.

WebSocket events become WSGI requests for the WebSocket view; HTTP events (REST v1, HTTP API
v2, ALB, function URLs) go to the Django site; schedules, ``{"manage": ...}`` and
``{"command": ...}`` run code; keep-warm pings return at once. The handler never raises: a
malformed or unknown event gets a logged, clear error result.
"""

from __future__ import annotations

import base64
import gc
import importlib
import os
import re
import shlex
import time
from collections.abc import Callable
from typing import Any

from .events import EventKind, MalformedEvent, WebSocketEvent, classify, scheduled_function_name
from .http_shape import check_http_event

LambdaHandler = Callable[[Any, Any], Any]
SLUG = re.compile(r"^[A-Za-z0-9_-]+$")
EVENT_METRICS = {"CONNECT": "Connects", "MESSAGE": "Messages", "DISCONNECT": "Disconnects"}


def error_result(status: int, message: str) -> dict[str, Any]:
    return {"statusCode": status, "body": message}


def make_lambda_handler(
    settings_module: str = "project.settings",
    websocket_path: str | None = None,
    *,
    serve_static: bool = False,
) -> LambdaHandler:
    """Set Django up once (per container) and return ``handler(event, context)``.

    ``websocket_path`` is where WebSocket events are delivered: ``{route}`` is replaced by
    ``connect``, ``disconnect``, ``default`` or a custom route key. Default: the
    ``WEBSOCKETS["websocket_path"]`` setting (``/ws/{route}``). ``serve_static``: answer
    requests under ``STATIC_URL`` from the staticfiles finders, as ``runserver`` does (the
    local gateway in development; a deployment serves them with WhiteNoise or a CDN).
    """
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module)
    # What set-up creates (modules, models, URL patterns) lives as long as the container, yet
    # the cyclic collector would walk it again and again: ~30 ms during django.setup() and a
    # ~40 ms full collection in the first event. Collect nothing while setting up, then move
    # it all out of the collector's sight (gc.freeze) and collect as usual from there.
    # Only in a cold start: a process that had set Django up already (a test run, a command)
    # keeps its own objects in the collector's sight.
    from django.apps import apps

    cold = not apps.ready
    collecting = gc.isenabled()
    gc.disable()
    try:
        handler = _build_handler(websocket_path, serve_static)
    except Exception as error:
        # A settings error here would fail Lambda's init, again on every event, and show
        # clients nothing useful: answer each event with a 500 and a line naming the fix.
        from .misconfiguration import misconfigured_handler

        handler = misconfigured_handler(error)
    finally:
        if cold:
            gc.freeze()
        if collecting:
            gc.enable()
    # With SnapStart, the init just done is snapshotted: nothing live may go into it.
    from .snapstart import register_hooks

    register_hooks(handler)
    return handler


def _build_handler(websocket_path: str | None, serve_static: bool) -> LambdaHandler:
    import django
    from django.apps import apps

    # On Lambda nothing has set Django up yet. In a process that has (the test client, a
    # management command), setting up again (as get_wsgi_application does) would only re-run
    # LOGGING, whose default disable_existing_loggers=True silences every logger made since.
    if not apps.ready:
        django.setup(set_prefix=False)
    import apig_wsgi
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.signals import request_started

    from ..conf import websocket_setting
    from .misconfiguration import (
        DIRECT_DATABASE_KINDS,
        DatabaseUnavailable,
        database_unavailable_answer,
        ensure_database,
        probe_database_on_request,
        websocket_host_refused,
    )
    from .observability import current_metrics, get_logger
    from .response_headers import trim_header_values

    path_template = websocket_path or websocket_setting("websocket_path")
    application = WSGIHandler()
    if serve_static:
        from .staticfiles import serving_static_files

        application = serving_static_files(application)
    wsgi_handler = apig_wsgi.make_lambda_handler(
        with_stage_script_name(trim_header_values(application)), binary_support=True
    )
    logger = get_logger()
    cold_start = [True]
    # After django.db's close_old_connections (connected during set-up): see the receiver.
    request_started.connect(probe_database_on_request, dispatch_uid="websockets-probe-database")

    def websocket(event: dict[str, Any], context: Any) -> dict[str, Any]:
        parsed = WebSocketEvent.from_event(event)
        logger.thread_safe_append_keys(
            connection_id=parsed.connection_id,
            route_key=parsed.route_key,
            event_type=parsed.event_type,
        )
        current_metrics.add(EVENT_METRICS[parsed.event_type])
        refused = websocket_host_refused(parsed.domain_name, EventKind.WEBSOCKET, event, logger)
        if refused is not None:
            return refused
        route = parsed.route_name if SLUG.match(parsed.route_name) else "default"
        path = path_template.replace("{route}", route)
        # Built from validated parts, so apig-wsgi can always read it: no second check.
        response = wsgi_handler(parsed.as_wsgi_event(path, {}), context)
        body = response.get("body") or ""
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8", errors="replace")
        result = {"statusCode": response["statusCode"], "body": body}
        if parsed.event_type == "CONNECT" and response.get("headers"):
            result["headers"] = response["headers"]
        return result

    def dispatch(kind: EventKind, event: Any, context: Any) -> Any:
        if kind in DIRECT_DATABASE_KINDS:
            ensure_database()
        if kind is EventKind.WEBSOCKET:
            return websocket(event, context)
        if kind is EventKind.HTTP:
            check_http_event(event)
            method, path = _http_request_line(event)
            # An access log's two fields, on the "Event handled" line of this request.
            logger.thread_safe_append_keys(http_method=method, path=path)
            return wsgi_handler(event, context)
        if kind is EventKind.KEEP_WARM:
            return {"status": "warm"}
        if kind is EventKind.FANOUT:
            from ..sending import run_fanout_event

            return run_fanout_event(event["websocket_fanout"])
        if kind is EventKind.REPLAY:
            from ..replay import run_replay_event

            return run_replay_event(event["websocket_replay"])
        if kind is EventKind.MANAGE:
            return run_manage(event["manage"])
        if kind is EventKind.SCHEDULED:
            return run_function(scheduled_function_name(event), event, context)
        if kind is EventKind.COMMAND:
            return run_function(event["command"], event, context)
        logger.warning("Unrecognised event", extra={"event_keys": _keys(event)})
        return error_result(400, "Unrecognised event")

    def handler(event: Any, context: Any) -> Any:
        started = time.perf_counter()
        kind = classify(event)
        # Per-invocation keys live in the thread's context: the local gateway runs several
        # invocations at once in threads, and their log lines must not borrow each other's.
        logger.thread_safe_append_keys(
            cold_start=cold_start[0],
            event_kind=kind.value,
            correlation_id=_request_id(event, context),
        )
        cold_start[0] = False
        try:
            result = dispatch(kind, event, context)
        except MalformedEvent as error:
            logger.warning("Malformed event: %s", error)
            result = error_result(400, "Malformed event")
        except DatabaseUnavailable as error:
            result = database_unavailable_answer(error, kind, event, logger)
        except Exception:
            logger.exception("Unhandled error in Lambda handler")
            result = error_result(500, "Internal error")
        status = result.get("statusCode") if isinstance(result, dict) else None
        if isinstance(status, int) and status >= 500:
            current_metrics.add("Errors")
        logger.info(
            "Event handled",
            extra={
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        logger.thread_safe_clear_keys()
        _flush_metrics(current_metrics, logger)
        return result

    def mark_cold_start() -> None:
        """The next event is a cold start again (a SnapStart copy's first, after a rehearsal)."""
        cold_start[0] = True

    handler.mark_cold_start = mark_cold_start  # type: ignore[attr-defined]
    return handler


def _http_request_line(event: dict[str, Any]) -> tuple[str, str]:
    """Method and path of a (shape-checked) HTTP event, the path cut at 200 characters."""
    http = (event.get("requestContext") or {}).get("http") or {}
    method = event.get("httpMethod") or http.get("method") or ""
    path = event.get("rawPath") or event.get("path") or ""
    return str(method)[:16], str(path)[:200]


def with_stage_script_name(application: Any) -> Any:
    """WSGI wrapper: on an execute-api URL the stage is the first path segment, so put
    ``/<stage>`` in SCRIPT_NAME and reversed URLs and redirects keep it.

    A REST API (v1) already strips it from ``path`` (``requestContext.path`` has it); an HTTP
    API (v2) on a named stage leaves it in ``rawPath``, so it is taken off PATH_INFO here.
    """

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        event = environ.get("apig_wsgi.full_event") or {}
        context = event.get("requestContext") if isinstance(event, dict) else None
        if isinstance(context, dict) and event.get("version") == "2.0":
            stage = context.get("stage")
            prefix = f"/{stage}" if _is_stage(stage) and stage != "$default" else ""
            path = environ.get("PATH_INFO", "")
            if prefix and (path == prefix or path.startswith(prefix + "/")):
                environ["SCRIPT_NAME"] = prefix
                environ["PATH_INFO"] = path[len(prefix) :] or "/"
        elif isinstance(context, dict) and "eventType" not in context:
            full_path, path = context.get("path"), event.get("path")
            if isinstance(full_path, str) and isinstance(path, str):
                # The stage's root without a slash (".../dev") arrives as path "/".
                if path == "/":
                    prefix = full_path.rstrip("/")
                elif len(full_path) > len(path) and full_path.endswith(path):
                    prefix = full_path[: -len(path)].rstrip("/")
                else:
                    prefix = ""
                if _is_stage(prefix):
                    environ["SCRIPT_NAME"] = prefix
        return application(environ, start_response)

    return wrapped


def _is_stage(value: Any) -> bool:
    """Stage names are ASCII on AWS; Django could not even decode another SCRIPT_NAME."""
    return isinstance(value, str) and value.isascii()


def _flush_metrics(metrics: Any, logger: Any) -> None:
    try:
        metrics.flush()
    except Exception:  # Metrics must never turn a handled event into a failed invocation.
        logger.exception("Could not flush metrics")


def _request_id(event: Any, context: Any) -> str | None:
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict):
        request_id = event["requestContext"].get("requestId")
        if isinstance(request_id, str):
            return request_id
    return getattr(context, "aws_request_id", None)


def _keys(event: Any) -> list[str]:
    return sorted(str(key) for key in event)[:20] if isinstance(event, dict) else []


def run_manage(command_line: Any) -> dict[str, Any]:
    """``{"manage": "command args"}``: run a management command, return its output."""
    from django.core.management import CommandError
    from django.db import close_old_connections

    from .scheduled import run_management_command

    if not isinstance(command_line, str) or not command_line.strip():
        return error_result(400, "'manage' must be a command line")
    close_old_connections()
    try:
        name, *args = shlex.split(command_line)
        output = run_management_command(name, *args)
    except (CommandError, ValueError) as error:
        result = {"statusCode": 400, "command": command_line, "error": str(error)}
    except SystemExit as exit_:  # argparse exits on bad arguments
        result = {"statusCode": 400, "command": command_line, "error": f"exit status {exit_.code}"}
    else:
        result = {"statusCode": 200, "command": command_line, "output": output}
    finally:
        close_old_connections()
    # `zappa manage` shows the function's log, not its result: put the outcome there too.
    from .observability import get_logger

    log = get_logger().info if result["statusCode"] == 200 else get_logger().warning
    log("manage %s", command_line, extra={k: v for k, v in result.items() if k != "command"})
    return result


def run_function(dotted_path: Any, event: Any, context: Any) -> Any:
    """Import ``module.function`` and call it (zappa schedules and ``{"command": ...}``)."""
    from django.db import close_old_connections

    from .scheduled import call_with_event

    if not isinstance(dotted_path, str) or "." not in dotted_path:
        return error_result(400, "A function is named as module.function")
    module_name, _, function_name = dotted_path.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError, ValueError):
        return error_result(400, f"No function {dotted_path}")
    close_old_connections()
    try:
        return call_with_event(function, event, context)
    finally:
        close_old_connections()
