from __future__ import annotations

from django.core.management.base import CommandError

from django_aws_api_gateway_websockets.models import ApiGateway

from ._gateway_command import GatewayCommand


class Command(GatewayCommand):
    help = "Create the API Gateway WebSocket API described by an ApiGateway record."

    def run(self, gateway: ApiGateway) -> str:
        if gateway.api_created:
            # create_gateway() would do nothing; a deploy script should hear that, not "Created".
            raise CommandError(f"API Gateway {gateway.api_name!r} is already created.")
        gateway.create_gateway()
        return (
            f"Created API Gateway {gateway.api_name!r}: api_id={gateway.api_id}, "
            f"endpoint={gateway.api_endpoint}/{gateway.stage_name}, "
            f"deployment={gateway.deployment_id}."
        )
