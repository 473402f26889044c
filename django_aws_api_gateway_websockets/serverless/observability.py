"""Structured JSON logs (powertools Logger) and CloudWatch embedded metrics for the handler.

Configured from the environment like powertools itself: ``POWERTOOLS_SERVICE_NAME``,
``POWERTOOLS_METRICS_NAMESPACE``, ``POWERTOOLS_LOG_LEVEL``. The metrics module is imported only
when an invocation has something to flush.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import Counter
from functools import lru_cache
from typing import Any

from ..signals import messages_sent

DEFAULT_SERVICE = "django-websockets"
DEFAULT_NAMESPACE = "ServerlessDjangoWebSockets"
# Library and Django loggers that also write the handler's JSON lines.
STRUCTURED_LOGGERS = ("django_aws_api_gateway_websockets", "django.request", "django.security")
LIBRARY_LOGGER = "django_aws_api_gateway_websockets"


class _CurrentStdout:
    """Writes to whatever ``sys.stdout`` is now, so ``invoke`` can capture the log lines."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


# One per process: a second Logger for the same service (set up again) reuses it, formatter
# and all, and a logger that already has it is not given it twice.
_JSON_HANDLER = logging.StreamHandler(_CurrentStdout())  # type: ignore[arg-type]


@lru_cache(maxsize=1)
def get_logger() -> Any:
    """The handler's powertools Logger; ``STRUCTURED_LOGGERS`` also write its JSON lines.

    A library adds, never replaces: the JSON handler joins whatever handlers the project's
    LOGGING gave those loggers, and propagation is left as it is, so an ``AdminEmailHandler``
    on ``django`` or a Sentry handler on the root still receives every record.
    """
    from aws_lambda_powertools import Logger

    logger = Logger(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", DEFAULT_SERVICE),
        logger_handler=_JSON_HANDLER,
    )
    for name in STRUCTURED_LOGGERS:
        structured = logging.getLogger(name)
        if _JSON_HANDLER not in structured.handlers:
            structured.addHandler(_JSON_HANDLER)
    library = logging.getLogger(LIBRARY_LOGGER)
    if library.level == logging.NOTSET:
        # Our own logger only: Django's keep the levels the project gave them.
        library.setLevel(logging.INFO)
    messages_sent.connect(_count_sends, dispatch_uid="websocket-metrics")
    return logger


class InvocationMetrics:
    """Counts for one invocation, flushed as one EMF document.

    Counts belong to the thread that runs the invocation: Lambda runs one at a time per
    process, but the local gateway runs several in threads, and each must flush its own."""

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def counts(self) -> Counter[str]:
        counts = getattr(self._local, "counts", None)
        if counts is None:
            counts = self._local.counts = Counter()
        return counts

    def add(self, name: str, value: int = 1) -> None:
        if value:
            self.counts[name] += value

    def flush(self) -> None:
        counts = self.counts
        if not counts:
            return
        from aws_lambda_powertools.metrics import MetricUnit

        metrics = _metrics(
            os.environ.get("POWERTOOLS_METRICS_NAMESPACE", DEFAULT_NAMESPACE),
            os.environ.get("POWERTOOLS_SERVICE_NAME", DEFAULT_SERVICE),
        )
        # powertools keeps the metric set on the class, shared by every thread.
        with _flush_lock:
            for name, value in sorted(counts.items()):
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
            metrics.flush_metrics()
        counts.clear()


_flush_lock = threading.Lock()


current_metrics = InvocationMetrics()


@lru_cache(maxsize=4)
def _metrics(namespace: str, service: str) -> Any:
    """One powertools Metrics per namespace and service: building one costs more than a flush."""
    from aws_lambda_powertools.metrics import Metrics

    return Metrics(namespace=namespace, service=service)


def _count_sends(sender: Any, report: Any, **kwargs: Any) -> None:
    current_metrics.add("MessagesSent", report.delivered)
    current_metrics.add("ConnectionsGone", report.gone)
    current_metrics.add("SendFailures", report.failed)
