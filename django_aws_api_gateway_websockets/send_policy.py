"""What one post to a connection can come to, and how every transport reacts to it.

Both transports (boto3 in threads, signed HTTP on an event loop) classify an answer here and
back off here, so they agree on what throttling is and on how long to wait. Pure: no Django
models, no boto3.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from .conf import websocket_setting


class Outcome(StrEnum):
    """The end of one post. A ``StrEnum``: it compares equal to its value ("delivered")."""

    DELIVERED = "delivered"
    # API Gateway no longer knows the connection (GoneException / 410): mark it disconnected.
    GONE = "gone"
    # Any other answer or fault (5xx, 403, timeout, DNS, TLS): logged, not retried.
    FAILED = "failed"
    # Still throttled after the last retry: given up on, reported as failed.
    THROTTLED = "throttled"

    @property
    def failed(self) -> bool:
        """Counted in ``SendReport.failed``."""
        return self in (Outcome.FAILED, Outcome.THROTTLED)


GONE_CODE = "GoneException"
# API Gateway's throttling error types, as boto3's ``Error.Code`` or the raw HTTP answer's
# ``x-amzn-ErrorType`` names them; HTTP 429 means throttling whatever the type.
THROTTLING_CODES = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException"}
)


def is_gone(status: int | None, code: str) -> bool:
    return status == 410 or code == GONE_CODE


def is_throttled(status: int | None, code: str) -> bool:
    return status == 429 or code in THROTTLING_CODES


def classify(status: int | None, code: str) -> Outcome:
    """The outcome of one answer; ``THROTTLED`` means "retry if retries are left"."""
    if status is not None and 200 <= status < 300:
        return Outcome.DELIVERED
    if is_gone(status, code):
        return Outcome.GONE
    if is_throttled(status, code):
        return Outcome.THROTTLED
    return Outcome.FAILED


@dataclass(frozen=True)
class Backoff:
    """Retries of a throttled post: ``max_retries`` after the first try, full-jitter
    exponential pauses starting at ``base_delay`` seconds (jitter keeps many throttled
    senders from retrying in lock-step)."""

    max_retries: int
    base_delay: float

    @classmethod
    def from_settings(cls) -> Backoff:
        """``WEBSOCKETS["send_max_retries"]`` and ``["send_retry_base_delay"]``."""
        return cls(
            max(0, int(websocket_setting("send_max_retries"))),
            max(0.0, float(websocket_setting("send_retry_base_delay"))),
        )

    def delay(self, attempt: int) -> float:
        """The pause before retry number ``attempt + 1`` (``attempt`` counts from 0)."""
        return backoff_delay(attempt, self.base_delay)


# No single pause longer than this: a message route answers within API Gateway's 29 s.
MAX_BACKOFF_SECONDS = 2.0


def backoff_delay(attempt: int, base_delay: float) -> float:
    """Uniform in ``[0, min(base_delay * 2**attempt, MAX_BACKOFF_SECONDS)]``."""
    return random.uniform(0, min(base_delay * (2 ** min(attempt, 30)), MAX_BACKOFF_SECONDS))
