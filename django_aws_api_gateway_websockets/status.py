"""A health report of the WebSocket tables, for ``websocketStatus`` (and anything else)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db.models import Count, Q
from django.utils import timezone

from .models import (
    ApiGateway,
    CleanupRun,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)

# API Gateway closes connections after 2 hours: older "connected" rows missed $disconnect.
STALE_AFTER = timedelta(hours=2, minutes=5)
CLEANUP_COMMANDS = ("clearWebSocketSessions", "cleanupWebSocketTokens")


@dataclass
class StatusReport:
    gateways: list[dict[str, Any]] = field(default_factory=list)
    channels: list[dict[str, Any]] = field(default_factory=list)
    connected: int = 0
    stale: int = 0
    disconnected: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    rate_limit_records: dict[str, int] = field(default_factory=dict)
    cleanups: dict[str, str | None] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def build_report(
    cleanup_max_age: timedelta = timedelta(hours=2),
    backlog_limit: int = 10_000,
    token_max_age: timedelta = timedelta(seconds=300),
    rate_limit_max_age: timedelta = timedelta(days=7),
) -> StatusReport:
    """The report, with ``problems`` listing what needs an operator's attention."""
    now = timezone.now()
    report = StatusReport()
    per_gateway = dict(
        WebSocketSession.objects.filter(connected=True)
        .values_list("api_gateway_id")
        .annotate(n=Count("pk"))
    )
    for gateway in ApiGateway.objects.order_by("pk"):
        report.gateways.append(
            {
                "name": gateway.api_name,
                "api_id": gateway.api_id,
                "stage": gateway.stage_name,
                "created": gateway.api_created,
                "connected": per_gateway.get(gateway.pk, 0),
            }
        )
    report.channels = [
        {"channel": channel, "connected": n}
        for channel, n in WebSocketSession.objects.filter(connected=True)
        .values_list("channel_name")
        .annotate(n=Count("pk"))
        .order_by("-n", "channel_name")[:50]
    ]
    sessions = WebSocketSession.objects.aggregate(
        n_connected=Count("pk", filter=Q(connected=True)),
        n_stale=Count("pk", filter=Q(connected=True, created_on__lt=now - STALE_AFTER)),
        n_disconnected=Count("pk", filter=Q(connected=False)),
    )
    report.connected = sessions["n_connected"]
    report.stale = sessions["n_stale"]
    report.disconnected = sessions["n_disconnected"]
    report.tokens = WebSocketToken.objects.aggregate(
        total=Count("pk"),
        n_used=Count("pk", filter=Q(used=True)),
        expired=Count("pk", filter=Q(used=False, created_at__lt=now - token_max_age)),
    )
    report.rate_limit_records = ConnectionRateLimit.objects.aggregate(
        total=Count("pk"), old=Count("pk", filter=Q(attempt_time__lt=now - rate_limit_max_age))
    )
    runs = {run.command: run.last_run for run in CleanupRun.objects.all()}
    for command in CLEANUP_COMMANDS:
        last = runs.get(command)
        report.cleanups[command] = last.isoformat() if last else None
        if last is None:
            report.problems.append(f"{command} has never run")
        elif now - last > cleanup_max_age:
            report.problems.append(f"{command} last ran {now - last} ago")
    if not any(gateway["created"] for gateway in report.gateways):
        report.problems.append("no API Gateway has been created in AWS")
    if report.stale:
        report.problems.append(f"{report.stale} session(s) connected for over 2 hours (stale)")
    report.tokens["used"] = report.tokens.pop("n_used")
    backlog = report.disconnected + report.tokens["used"] + report.tokens["expired"]
    if backlog > backlog_limit:
        report.problems.append(f"{backlog} rows are waiting for cleanup")
    return report
