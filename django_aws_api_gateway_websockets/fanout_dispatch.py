"""Opt-in: spread one very large fan-out over asynchronous invocations of the function.

One invocation sends ~1 800 messages/s, and a message route must answer within API Gateway's
29 s. With ``WEBSOCKETS["fanout_invocation_batch"]`` set, a fan-out to more connections than
that keeps the first batch and hands each further batch to an ``InvocationType="Event"``
invocation of the same function, whose handler sends it with the same code path
(``sending.run_fanout_event``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

from . import aws
from .conf import websocket_setting

FANOUT_EVENT_KEY = "websocket_fanout"
# Asynchronous invocations carry at most 256 KB; keep a margin for the envelope.
MAX_EVENT_BYTES = 250_000


def fanout_function() -> str:
    """The function that takes extra batches: the setting, else the running Lambda itself.

    Itself means the same version: a published one (SnapStart, an alias) is named with its
    number, so the batches run the same code and restore from the same snapshot, never
    ``$LATEST``.
    """
    configured = str(websocket_setting("fanout_function_name") or "")
    if configured:
        return configured
    name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
    version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    return f"{name}:{version}" if name and version != "$LATEST" else name


def batches(connection_ids: list[str], size: int, payload_text: str) -> Iterator[list[str]]:
    """Consecutive batches of at most ``size`` ids whose event stays within the size limit."""
    budget = MAX_EVENT_BYTES - len(payload_text.encode("utf-8")) - 200
    batch: list[str] = []
    used = 0
    for connection_id in connection_ids:
        cost = len(connection_id) + 4
        if batch and (len(batch) >= size or used + cost > budget):
            yield batch
            batch, used = [], 0
        batch.append(connection_id)
        used += cost
    if batch:
        yield batch


def queue_batches(connection_ids: list[str], payload: bytes) -> int:
    """Invoke the function asynchronously once per batch; return how many ids were queued."""
    size = int(websocket_setting("fanout_invocation_batch"))
    text = payload.decode("utf-8")
    client = aws.client("lambda")
    function = fanout_function()
    queued = 0
    for batch in batches(connection_ids, size, text):
        event = {FANOUT_EVENT_KEY: {"connection_ids": batch, "payload": text}}
        client.invoke(
            FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode()
        )
        queued += len(batch)
    return queued
