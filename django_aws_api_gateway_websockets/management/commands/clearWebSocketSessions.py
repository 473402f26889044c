from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_aws_api_gateway_websockets.models import WebSocketSession


class Command(BaseCommand):
    help = "Delete WebSocket sessions that are no longer connected."

    def handle(self, *args: Any, **options: Any) -> None:
        deleted, _ = WebSocketSession.objects.filter(connected=False).delete()
        self.stdout.write(f"Deleted {deleted} disconnected WebSocket session(s).")
