"""A local emulator of API Gateway WebSocket APIs: run the whole product on one laptop."""

from .server import GatewayLimits, LocalApiGateway
from .sigv4 import SignatureCheck

__all__ = ("GatewayLimits", "LocalApiGateway", "SignatureCheck")
