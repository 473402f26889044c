from __future__ import annotations

from django.apps import AppConfig


class DjangoAwsApiGatewayWebsocketsConfig(AppConfig):
    """Named as in the original package, so an ``INSTALLED_APPS`` entry naming it still works."""

    name = "django_aws_api_gateway_websockets"
    verbose_name = "AWS API Gateway WebSockets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks; importing is enough.
        from . import checks  # noqa: F401
        from .presence import on_messages_sent
        from .signals import messages_sent

        # Sessions any send finds gone leave their channels (a no-op for the others).
        messages_sent.connect(on_messages_sent, dispatch_uid="websocket-presence-gone")
