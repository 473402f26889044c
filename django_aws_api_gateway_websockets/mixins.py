"""Template-view mixins that tell the page where its WebSocket is."""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from .models import ApiGateway


class AddWebSocketRouteToContextMixin:
    """Adds ``websocket_url``: the wss:// address of the API Gateway stage the page connects to.

    Set ``websocket_api_name`` to pick a gateway by name (default: the first one that has an
    endpoint), or
    ``websocket_url`` to use a fixed address.
    """

    websocket_api_name: str | None = None
    websocket_url: str | None = None

    def get_websocket_url(self) -> str:
        if self.websocket_url:
            return self.websocket_url
        # Only gateways that exist somewhere a browser can reach.
        gateways = ApiGateway.objects.filter(
            Q(api_endpoint__gt="") | Q(custom_domain_created=True, domain_name__gt="")
        )
        if self.websocket_api_name:
            gateways = gateways.filter(api_name=self.websocket_api_name)
        gateway = gateways.order_by("pk").first()
        if gateway is None:
            return ""
        if gateway.custom_domain_created and gateway.domain_name:
            return f"wss://{gateway.domain_name}"
        if gateway.api_endpoint:
            return f"{gateway.api_endpoint.rstrip('/')}/{gateway.stage_name}"
        return ""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)  # type: ignore[misc]
        context["websocket_url"] = self.get_websocket_url()
        return context


class AppChannelWebSocketMixin(AddWebSocketRouteToContextMixin):
    """Also adds ``websocket_channel``: the channel the page joins (``channel_name``, or the
    ``channel`` URL keyword argument)."""

    channel_name: str | None = None

    def get_channel_name(self) -> str:
        kwargs = getattr(self, "kwargs", {}) or {}
        return str(kwargs.get("channel") or self.channel_name or "")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["websocket_channel"] = self.get_channel_name()
        return context
