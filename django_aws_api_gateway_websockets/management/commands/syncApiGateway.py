from __future__ import annotations

from typing import Any

from django_aws_api_gateway_websockets.models import ApiGateway
from django_aws_api_gateway_websockets.sync import sync_gateway

from ._gateway_command import GatewayCommand


class Command(GatewayCommand):
    help = (
        "Compare an API Gateway in AWS with its Django records, print the differences, and "
        "(without --dry-run) apply them and redeploy the stage once."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Print the plan only.")

    def run(self, gateway: ApiGateway) -> str:
        dry_run = self.options["dry_run"]
        changes = sync_gateway(gateway, dry_run=dry_run)
        if not changes:
            return f"{gateway.api_name!r} is in sync with AWS: nothing to change."
        lines = [f"  - {change}" for change in changes]
        verdict = "Would apply" if dry_run else f"Applied and deployed ({gateway.deployment_id})"
        return f"{verdict} {len(changes)} change(s) to {gateway.api_name!r}:\n" + "\n".join(lines)
