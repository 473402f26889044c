from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Q
from django.utils import timezone

from django_aws_api_gateway_websockets import presence
from django_aws_api_gateway_websockets.models import CleanupRun, WebSocketSession
from django_aws_api_gateway_websockets.replay import trim as trim_replay_log

# API Gateway closes every connection after 2 hours: an older "connected" row missed its
# $disconnect (best-effort on AWS) and can never receive anything.
MAX_CONNECTION_AGE = timedelta(hours=2, minutes=5)


class Command(BaseCommand):
    help = (
        "Delete WebSocket sessions that are disconnected, or older than API Gateway's 2-hour "
        "connection limit; trim the replay log to WEBSOCKETS['replay_max_messages'] and "
        "['replay_max_age_seconds'] (each channel's newest message stays)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # Sessions past 2 hours become disconnected first, so their channels hear them leave.
        presence.sweep()
        outlived = timezone.now() - MAX_CONNECTION_AGE
        deleted, _ = WebSocketSession.objects.filter(
            Q(connected=False) | Q(created_on__lt=outlived)
        ).delete()
        summary = f"Deleted {deleted} disconnected WebSocket session(s)."
        trimmed = trim_replay_log()
        if trimmed:
            summary += f" Trimmed {trimmed} stored channel message(s)."
        CleanupRun.record("clearWebSocketSessions", summary)
        self.stdout.write(summary)
