"""The per-connection message rate limit: a token bucket per connection id, in this process.

API Gateway throttles per account, stage and route, never per connection: one client sending
frames in a loop (``{"action": "ping"}`` included) costs an invocation and a database read per
frame, at everyone's expense. Each connection may send ``messages`` frames at once and then
``messages`` every ``seconds`` (the bucket refills continuously); beyond that its frames are
refused before any handler runs, with no database write.

The buckets live in this process's memory, so they cost no query, and are per process: on
Lambda each concurrent execution environment keeps its own (a flood is spread over the few
environments that are warm), under ``runapigateway`` or a server every worker process does.
Memory is bounded: a bucket untouched for ``seconds`` is full again, the same as none, and is
dropped; at most ``MAX_TRACKED`` buckets are kept, the least recently used going first.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from .conf import DEFAULTS, websocket_setting

# A few hundred bytes each: some MB at most, whatever the number of connections.
MAX_TRACKED = 20_000

Limit = tuple[int, float]


class Verdict(NamedTuple):
    """``allowed``: let the frame through. ``warn``: the first refusal of this connection's
    window, worth one log line (the others are not: a flood must not flood the log too)."""

    allowed: bool
    warn: bool


class _Bucket:
    __slots__ = ("tokens", "updated", "warned_at", "seconds")

    def __init__(self, tokens: float, now: float, seconds: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.warned_at: float | None = None
        self.seconds = seconds


class MessageRateLimiter:
    """Token buckets keyed by connection id and limit; thread-safe (one lock, held for a few
    dictionary operations). ``clock`` is injectable so tests need not wait."""

    def __init__(
        self, max_tracked: int = MAX_TRACKED, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_tracked = max_tracked
        self.clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[tuple[str, int, float], _Bucket] = OrderedDict()

    def take(self, connection_id: str, messages: int, seconds: float) -> Verdict:
        """Spend one of ``connection_id``'s tokens under the limit ``messages`` per ``seconds``."""
        key = (connection_id, messages, seconds)
        with self._lock:
            now = self.clock()
            self._drop_expired(now)
            bucket = self._buckets.pop(key, None)
            if bucket is None:
                bucket = _Bucket(float(messages), now, seconds)
            else:
                refill = (now - bucket.updated) * messages / seconds
                bucket.tokens = min(float(messages), bucket.tokens + refill)
                bucket.updated = now
            self._buckets[key] = bucket  # the most recently used at the end
            if len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return Verdict(allowed=True, warn=False)
            warn = bucket.warned_at is None or now - bucket.warned_at >= seconds
            if warn:
                bucket.warned_at = now
            return Verdict(allowed=False, warn=warn)

    def _drop_expired(self, now: float) -> None:
        """Drop the least recently used buckets that are full again (idle for their window)."""
        while self._buckets:
            bucket = next(iter(self._buckets.values()))
            if now - bucket.updated < bucket.seconds:
                return
            self._buckets.popitem(last=False)

    def clear(self) -> None:
        """Forget every bucket (between tests; every connection starts with a full one)."""
        with self._lock:
            self._buckets.clear()

    def reset_after_fork(self) -> None:
        """A forked child starts empty, with a new lock (another thread may have held the
        parent's at the fork)."""
        self._lock = threading.Lock()
        self._buckets = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)


def parse_limit(value: Any) -> Limit | None:
    """``(messages, seconds)`` as a limit; None for off (None, 0, False or ``(0, x)``).

    Raises ``ValueError`` for anything else (system check E008 reports it at start-up)."""
    if value is None or value is False or value == 0:
        return None
    if isinstance(value, (tuple, list)) and len(value) == 2:
        messages, seconds = value
        if isinstance(messages, int) and not isinstance(messages, bool) and messages == 0:
            return None
        if (
            isinstance(messages, int)
            and not isinstance(messages, bool)
            and messages > 0
            and isinstance(seconds, (int, float))
            and not isinstance(seconds, bool)
            and 0 < seconds < float("inf")
        ):
            return messages, float(seconds)
    raise ValueError(
        f"a message rate limit must be (messages, seconds) with a positive integer and a "
        f"positive number of seconds, or None / 0 for off; not {value!r}"
    )


def limit_for(view_limit: Any) -> Limit | None:
    """The limit a view applies: its own (``WebSocketView.MESSAGE_RATE_LIMIT``) unless None,
    else ``WEBSOCKETS["message_rate_limit"]``. A malformed value (which start-up's system
    check reports) means the default, never no limit and never a failing message."""
    configured = websocket_setting("message_rate_limit") if view_limit is None else view_limit
    try:
        return parse_limit(configured)
    except ValueError:
        return parse_limit(DEFAULTS["message_rate_limit"])


# The process's buckets, shared by every view.
limiter = MessageRateLimiter()


def _reset_after_fork() -> None:
    limiter.reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
