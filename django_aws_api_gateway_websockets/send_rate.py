"""One adaptive token bucket per process for every call to @connections.

API Gateway throttles per account and region: 10,000 requests/s shared by every API of the
account, @connections posts included, so one large broadcast can starve everything else (and
be refused itself). Every send path (the signed-HTTP fan-out on its event loop, boto3's
worker threads, single sends) takes a token here before each post:
``WEBSOCKETS["send_rate_limit"]`` tokens a second (0: no limit), a burst of one second's
worth. Throttling answers halve the rate (never below 1 % of the setting, at least 10/s);
every second without one gives back 10 % of the setting, up to the setting.

The bucket never sleeps itself: ``reserve`` says how long to wait, and the caller waits
(``time.sleep`` in a thread, ``await asyncio.sleep`` on the loop), so the event loop is never
blocked. A caller whose wait spans a halving takes a new token (``stale``): the posts queued
at the old rate would otherwise go out at it, into more throttling. Pure: no Django models,
no boto3, no network.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .conf import websocket_setting

# Throttling halves the rate down to this share of the setting (and never below MIN_RATE/s).
FLOOR_SHARE = 0.01
MIN_RATE = 10.0
# Each full second without a throttling answer raises the rate by this share of the setting.
RECOVERY_SHARE = 0.1
RECOVERY_SECONDS = 1.0
# Why a throttled post was given up on: one reason, so one log line per fan-out.
THROTTLE_DEADLINE = (
    "still throttled when the fan-out's deadline passed "
    "(WEBSOCKETS['send_throttle_deadline_seconds'])"
)


@dataclass(frozen=True)
class Grant:
    """One token: wait ``delay`` seconds, then post. ``generation`` tells ``throttled``
    which rate the post was sent at."""

    delay: float
    generation: int


class SendRate:
    """A token bucket whose rate halves on throttling and recovers while nothing is throttled.

    Thread-safe; ``clock`` (seconds, monotonic) is injectable for tests.
    """

    def __init__(self, limit: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit <= 0:
            raise ValueError("a send rate limit must be positive")
        self.limit = float(limit)
        self.floor = min(self.limit, max(self.limit * FLOOR_SHARE, MIN_RATE))
        self.rate = self.limit
        # Full at the start: a broadcast up to one second's worth never waits.
        self.tokens = self.limit
        self.clock = clock
        self.updated = clock()
        # When the last throttling answer came (or the last recovery step was taken).
        self.calm_since = self.updated
        # Bumped by each halving: answers to posts sent before it do not halve again.
        self.generation = 0
        self.halvings = 0
        self.pid = os.getpid()
        self._lock = threading.Lock()

    def _advance(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.updated = max(self.updated, now)
        # The burst is one second of the current rate: a throttled bucket bursts less.
        self.tokens = min(self.rate, self.tokens + elapsed * self.rate)
        if self.rate < self.limit:
            steps = int((now - self.calm_since) // RECOVERY_SECONDS)
            if steps > 0:
                self.rate = min(self.limit, self.rate + steps * RECOVERY_SHARE * self.limit)
                self.calm_since += steps * RECOVERY_SECONDS

    def reserve(self, deadline: float | None = None) -> Grant | None:
        """Take the next token. None (and nothing taken) if the post could not start before
        ``deadline`` (a ``clock`` time)."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            delay = 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate
            if deadline is not None and now + delay > deadline:
                return None
            # Below zero is a queue: each later caller waits for the ones before it.
            self.tokens -= 1
            return Grant(delay, self.generation)

    def throttled(self, grant: Grant) -> bool:
        """A post sent on ``grant`` was answered throttled. Halves the rate, once per
        generation: the answers to posts already on their way at the old rate show nothing
        new. Returns whether this answer halved it."""
        with self._lock:
            now = self.clock()
            self._advance(now)
            self.calm_since = now
            if grant.generation != self.generation:
                return False
            self.generation += 1
            self.halvings += 1
            self.rate = max(self.rate / 2, self.floor)
            # The server said we are over its rate: no saved-up burst on top of that. The
            # queue is dropped too: its posts, timed at the old rate, take new tokens (stale).
            self.tokens = 0.0
            return True

    def stale(self, grant: Grant) -> bool:
        """Whether the rate was halved since ``grant``: a post still waiting on it must
        ``reserve`` again rather than go out on the old rate's schedule."""
        return grant.generation != self.generation


_LIMITER: SendRate | None = None
_LOCK = threading.Lock()


def limiter() -> SendRate | None:
    """This process's bucket for ``WEBSOCKETS["send_rate_limit"]``, or None when it is 0.

    Started on first use, again in a forked child and when the setting changes."""
    global _LIMITER
    limit = float(websocket_setting("send_rate_limit") or 0)
    if limit <= 0:
        return None
    current = _LIMITER
    if current is not None and current.limit == limit and current.pid == os.getpid():
        return current
    with _LOCK:
        current = _LIMITER
        if current is None or current.limit != limit or current.pid != os.getpid():
            current = _LIMITER = SendRate(limit)
        return current


def throttle_deadline_seconds() -> float:
    """``WEBSOCKETS["send_throttle_deadline_seconds"]``: how long a fan-out retries throttled
    posts, counted from its start."""
    return max(0.0, float(websocket_setting("send_throttle_deadline_seconds")))


def forget_limiter() -> None:
    """Drop the bucket (before a SnapStart snapshot, in tests): the next send starts a full
    one, on this copy's own clock."""
    global _LIMITER
    with _LOCK:
        _LIMITER = None


def _forget_limiter_after_fork() -> None:
    # Another thread may have held either lock at the fork: the child gets new ones.
    global _LIMITER, _LOCK
    _LIMITER = None
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_limiter_after_fork)
