"""Functions zappa's ``events`` schedule (and ``{"command": ...}`` invocations) call."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from typing import Any

from django.core.management import call_command


def run_management_command(name: str, *args: str, **options: Any) -> str:
    """Run a management command and return what it printed."""
    output = io.StringIO()
    call_command(name, *args, stdout=output, stderr=output, **options)
    return output.getvalue().strip()


def clear_sessions(event: Any = None, context: Any = None) -> str:
    """Scheduled: delete disconnected WebSocket sessions."""
    return run_management_command("clearWebSocketSessions")


def cleanup_tokens(event: Any = None, context: Any = None) -> str:
    """Scheduled: delete used and expired tokens and old rate-limit records."""
    return run_management_command("cleanupWebSocketTokens")


def call_with_event(function: Callable[..., Any], event: Any, context: Any) -> Any:
    """Call ``function`` with ``(event, context)``, ``(event)`` or ``()``, as it accepts."""
    for arguments in ((event, context), (event,), ()):
        try:
            inspect.signature(function).bind(*arguments)
        except TypeError:
            continue
        return function(*arguments)
    raise TypeError(f"{function!r} must accept (event, context), (event) or no arguments")
