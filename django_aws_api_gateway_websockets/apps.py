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
