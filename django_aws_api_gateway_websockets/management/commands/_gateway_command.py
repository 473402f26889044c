"""Shared argument handling of the commands that act on one ``ApiGateway`` record."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_aws_api_gateway_websockets.models import ApiGateway
from django_aws_api_gateway_websockets.provisioning import GatewayProvisioningError


class GatewayCommand(BaseCommand):
    """Runs ``action`` on the gateway named by ``--pk`` and reports the outcome."""

    action_name = ""

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--pk", type=int, required=True, help="Primary key of the ApiGateway.")

    def run(self, gateway: ApiGateway) -> str:
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        self.options = options
        try:
            gateway = ApiGateway.objects.get(pk=options["pk"])
        except ApiGateway.DoesNotExist:
            raise CommandError(f"No ApiGateway with pk={options['pk']}.") from None
        try:
            outcome = self.run(gateway)
        except GatewayProvisioningError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(self.style.SUCCESS(outcome))
