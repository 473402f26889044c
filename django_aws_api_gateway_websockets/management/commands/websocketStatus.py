from __future__ import annotations

import json
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets.status import StatusReport, build_report


class Command(BaseCommand):
    help = (
        "Report gateways, connected sessions per gateway and channel, stale sessions, token and "
        "rate-limit table sizes and the last cleanups. Exits 1 when something needs attention."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument(
            "--cleanup-max-age-hours",
            type=float,
            default=2.0,
            help="A cleanup older than this needs attention (default 2).",
        )
        parser.add_argument(
            "--backlog-limit",
            type=int,
            default=10_000,
            help="More rows awaiting cleanup than this needs attention (default 10000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["cleanup_max_age_hours"] <= 0 or options["backlog_limit"] < 0:
            raise CommandError("--cleanup-max-age-hours must be positive, --backlog-limit >= 0.")
        report = build_report(
            cleanup_max_age=timedelta(hours=options["cleanup_max_age_hours"]),
            backlog_limit=options["backlog_limit"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(asdict(report), indent=2))
        else:
            self.print_table(report)
        if report.problems:
            raise SystemExit(1)

    def print_table(self, report: StatusReport) -> None:
        write = self.stdout.write
        write("Gateways:")
        for gateway in report.gateways or [{"name": "(none)"}]:
            write(
                f"  {gateway['name']:<30} {gateway.get('api_id', ''):<12} "
                f"{gateway.get('stage', ''):<12} created={gateway.get('created', '')} "
                f"connected={gateway.get('connected', '')}"
            )
        write(
            f"Sessions: {report.connected} connected, {report.stale} stale, "
            f"{report.disconnected} disconnected awaiting cleanup"
        )
        for channel in report.channels[:20]:
            write(f"  {channel['channel'] or '(no channel)':<30} {channel['connected']}")
        tokens = report.tokens
        write(f"Tokens: {tokens['total']} ({tokens['used']} used, {tokens['expired']} expired)")
        records = report.rate_limit_records
        write(f"Rate-limit records: {records['total']} ({records['old']} older than 7 days)")
        for command, last in report.cleanups.items():
            write(f"Last {command}: {last or 'never'}")
        if report.problems:
            write(self.style.ERROR("Needs attention:"))
            for problem in report.problems:
                write(f"  - {problem}")
        else:
            write(self.style.SUCCESS("All good."))
