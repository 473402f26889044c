from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets.models import (
    CleanupRun,
    ConnectionRateLimit,
    WebSocketToken,
)


class Command(BaseCommand):
    help = "Delete used and expired WebSocket tokens and old connection rate-limit records."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--token-age",
            dest="token_age",
            type=int,
            default=300,
            help="Delete unused tokens older than this many seconds (default 300).",
        )
        parser.add_argument(
            "--rate-limit-age",
            dest="rate_limit_age",
            type=int,
            default=7,
            help="Delete rate-limit records older than this many days (default 7).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        token_age, rate_limit_age = options["token_age"], options["rate_limit_age"]
        if token_age < 0 or rate_limit_age < 0:
            raise CommandError("--token-age and --rate-limit-age must not be negative.")
        tokens = WebSocketToken.cleanup_expired(max_age_seconds=token_age)
        attempts = ConnectionRateLimit.cleanup_old_records(days=rate_limit_age)
        summary = f"Deleted {tokens} used or expired token(s) and {attempts} rate-limit record(s)."
        CleanupRun.record("cleanupWebSocketTokens", summary)
        self.stdout.write(summary)
