from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets import models
from django_aws_api_gateway_websockets.logs import build_query, run_query

DURATION = re.compile(r"^(\d+)([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
COLUMNS = ("@timestamp", "level", "event_type", "route_key", "status", "duration_ms", "message")


def seconds(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise CommandError(f"{text!r} is not a duration like 30m, 2h or 1d.")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


class Command(BaseCommand):
    help = (
        "Inspect the deployed function's logs: one connection's or request's history, errors, "
        "or the slowest events (CloudWatch Logs Insights, else filter_log_events)."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--connection-id")
        what.add_argument("--request-id", help="API Gateway requestId (the correlation_id).")
        what.add_argument("--errors", action="store_true")
        what.add_argument("--slowest", action="store_true")
        parser.add_argument("--function", help="Lambda function name: /aws/lambda/<name>.")
        parser.add_argument("--log-group", help="Log group (instead of --function).")
        parser.add_argument("--since", default="1h", help="Window start, e.g. 30m, 2h, 1d.")
        parser.add_argument("--until", default="0s", help="Window end, ago (default: now).")
        parser.add_argument("--limit", type=int, default=50)
        parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")

    def handle(self, *args: Any, **options: Any) -> None:
        log_group = options["log_group"] or (
            f"/aws/lambda/{options['function']}"
            if options["function"]
            else os.environ.get("WEBSOCKETS_LOG_GROUP", "")
        )
        if not log_group:
            raise CommandError(
                "Name the log group: --log-group, --function or WEBSOCKETS_LOG_GROUP."
            )
        if not 1 <= options["limit"] <= 10_000:
            raise CommandError("--limit must be between 1 and 10000.")
        now = int(time.time())
        start, end = now - seconds(options["since"]), now - seconds(options["until"])
        if start >= end:
            raise CommandError("--since must reach further back than --until.")
        kind, value = "errors", ""
        if options["connection_id"]:
            kind, value = "connection", options["connection_id"]
        elif options["request_id"]:
            kind, value = "request", options["request_id"]
        elif options["slowest"]:
            kind = "slowest"
        try:
            query = build_query(kind, value, options["limit"])
        except ValueError as error:
            raise CommandError(str(error)) from None
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = models.get_boto3_client("logs")
            source, rows = run_query(client, log_group, query, start, end, options["limit"])
        except (ClientError, BotoCoreError, RuntimeError, TimeoutError) as error:
            raise CommandError(f"Could not read {log_group}: {error}") from None
        if options["json"]:
            self.stdout.write(json.dumps({"source": source, "rows": rows}, indent=2))
            return
        self.stdout.write(f"{len(rows)} line(s) from {log_group} ({source}):")
        for row in rows:
            cells = [str(row.get(column, ""))[:80] for column in COLUMNS]
            self.stdout.write("  " + " | ".join(cell for cell in cells if cell))
