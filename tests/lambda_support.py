"""Helpers for driving the real Lambda handler with the sample events in ``events/``."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
SAMPLE_API_ID = "a1b2c3d4e5"
SAMPLE_CONNECTION_ID = "L0SM9cOFvHcCIhw="
SAMPLE_DOMAIN = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"


def load_event(name: str, **context_overrides: Any) -> dict[str, Any]:
    """A fresh copy of ``events/<name>.json`` with ``requestContext`` keys replaced."""
    event = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    if context_overrides:
        event["requestContext"].update(context_overrides)
    return copy.deepcopy(event)


def message_event(body: Any, connection_id: str = SAMPLE_CONNECTION_ID, **context: Any) -> dict:
    event = load_event("message_chat", connectionId=connection_id, **context)
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def log_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among captured stdout lines (log lines and EMF metric documents)."""
    lines = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines
