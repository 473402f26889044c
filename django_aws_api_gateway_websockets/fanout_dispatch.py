"""Opt-in: spread one very large fan-out over asynchronous invocations of the function.

One invocation sends ~1 800 messages/s, and a message route must answer within API Gateway's
29 s. With ``WEBSOCKETS["fanout_invocation_batch"]`` set, a fan-out to more connections than
that keeps the first batch and hands each further batch to an ``InvocationType="Event"``
invocation of the same function, whose handler sends it with the same code path
(``sending.run_fanout_event``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from typing import Any

from . import aws
from .conf import websocket_setting
from .send_policy import Backoff, Outcome, classify

logger = logging.getLogger(__name__)

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


def _json_size(text: str) -> int:
    """Bytes ``text`` takes inside the event, as ``_event_bytes`` encodes it (escapes count)."""
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8"))


def _event_bytes(batch: list[str], payload_text: str) -> bytes:
    event = {FANOUT_EVENT_KEY: {"connection_ids": batch, "payload": payload_text}}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def batches(connection_ids: list[str], size: int, payload_text: str) -> Iterator[list[str]]:
    """Consecutive batches of at most ``size`` ids whose event stays within the size limit
    (none when the payload alone leaves no room: then nothing can be handed on)."""
    budget = MAX_EVENT_BYTES - _json_size(payload_text) - 200
    batch: list[str] = []
    used = 0
    for connection_id in connection_ids:
        cost = _json_size(connection_id) + 1
        if cost > budget:
            return
        if batch and (len(batch) >= size or used + cost > budget):
            yield batch
            batch, used = [], 0
        batch.append(connection_id)
        used += cost
    if batch:
        yield batch


def queue_batches(connection_ids: list[str], payload: bytes) -> tuple[int, list[str]]:
    """Invoke the function asynchronously once per batch.

    Returns how many ids were queued and the ids that were not, which the caller sends
    itself: when the payload is too large for an event, or when an invocation still fails
    after the throttling retries. Never raises after a batch was queued, so a caller never
    resends what another invocation will deliver.
    """
    size = int(websocket_setting("fanout_invocation_batch"))
    text = payload.decode("utf-8")
    queued = 0
    pending = list(batches(connection_ids, size, text))
    if sum(map(len, pending)) < len(connection_ids):
        logger.warning(
            "Fan-out payload too large to hand on: all %d sent here", len(connection_ids)
        )
        return 0, connection_ids
    client = aws.invoke_client()
    function = fanout_function()
    backoff = Backoff.from_settings()
    for index, batch in enumerate(pending):
        if not invoke_async(client, function, _event_bytes(batch, text), backoff):
            left = [connection_id for rest in pending[index:] for connection_id in rest]
            logger.error(
                "Handing fan-out batches to %s failed; %d connection(s) sent here instead",
                function,
                len(left),
            )
            return queued, left
        queued += len(batch)
    return queued, []


def invoke_async(client: Any, function: str, event: bytes, backoff: Backoff) -> bool:
    """One asynchronous invocation, throttling retried with jittered backoff; False (and a
    warning) when it could not be queued, so the caller does the work itself. Also used by
    ``replay`` to hand a reconnect's delivery to another invocation."""
    for attempt in range(backoff.max_retries + 1):
        try:
            client.invoke(FunctionName=function, InvocationType="Event", Payload=event)
            return True
        except aws.client_error() as error:
            outcome = classify(aws.http_status(error), aws.error_code(error))
            if outcome is not Outcome.THROTTLED or attempt == backoff.max_retries:
                logger.warning("Invoke of %s failed: %s", function, aws.describe(error))
                return False
            time.sleep(backoff.delay(attempt))
        except Exception as error:  # the network, credentials: this invocation sends instead
            logger.warning("Invoke of %s failed: %s", function, error)
            return False
    return False
