"""A local emulator of API Gateway WebSocket APIs: run the whole product on one laptop."""

from .server import GatewayLimits, LocalApiGateway

__all__ = ("GatewayLimits", "LocalApiGateway")
