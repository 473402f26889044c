from __future__ import annotations

from django.core.management.base import CommandError

from django_aws_api_gateway_websockets.models import ApiGateway

from ._gateway_command import GatewayCommand


class Command(GatewayCommand):
    help = "Create the custom domain of an ApiGateway record and map it to its stage."

    def run(self, gateway: ApiGateway) -> str:
        if gateway.custom_domain_created:
            raise CommandError(
                f"The custom domain {gateway.domain_name} of {gateway.api_name!r} is already "
                "created."
            )
        gateway.create_custom_domain()
        return (
            f"Created custom domain {gateway.domain_name} for {gateway.api_name!r}: point a DNS "
            f"alias at {gateway.api_gateway_domain_name} (hosted zone {gateway.hosted_zone_id})."
        )
