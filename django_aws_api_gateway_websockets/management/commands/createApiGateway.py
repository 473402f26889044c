from __future__ import annotations

from django_aws_api_gateway_websockets.models import ApiGateway

from ._gateway_command import GatewayCommand


class Command(GatewayCommand):
    help = "Create the API Gateway WebSocket API described by an ApiGateway record."

    def run(self, gateway: ApiGateway) -> str:
        gateway.create_gateway()
        return (
            f"Created API Gateway {gateway.api_name!r}: api_id={gateway.api_id}, "
            f"endpoint={gateway.api_endpoint}/{gateway.stage_name}, "
            f"deployment={gateway.deployment_id}."
        )
