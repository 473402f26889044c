"""Template-view mixins that tell the page where its WebSocket is and which channel it joins.

The context keys of the original package (``api_gateway_route``, ``channel_name``) and this
library's (``websocket_url``, ``websocket_channel``) are all set, so templates written for
either keep working.
"""

from __future__ import annotations

import sys
from typing import Any

from django.apps import apps
from django.db.models import Q
from django.urls import Resolver404, resolve

from .models import ApiGateway, ApiGatewayAdditionalRoute


class AddWebSocketRouteToContextMixin:
    """Adds to the template context:

    - ``api_gateway_route``: the ``ApiGatewayAdditionalRoute`` whose ``route_key`` is
      ``websocket_route_key`` (default ``"default"``), its ``api_gateway`` loaded by the same
      query; None when there is none.
    - ``channel_name`` and ``websocket_channel``: the channel the page joins
      (``get_channel_name()``; here the ``channel_name`` attribute).
    - ``websocket_url``: the wss:// address of the API Gateway stage the page connects to.

    Set ``websocket_api_name`` to pick a gateway by name (default: the first one that has an
    endpoint; the route is then looked up on that gateway only), or ``websocket_url`` to use a
    fixed address.
    """

    websocket_route_key: str | None = "default"
    channel_name: str | None = ""
    websocket_api_name: str | None = None
    websocket_url: str | None = None

    def get_api_gateway_route(self) -> ApiGatewayAdditionalRoute | None:
        routes = ApiGatewayAdditionalRoute.objects.filter(route_key=self.websocket_route_key)
        if self.websocket_api_name:
            routes = routes.filter(api_gateway__api_name=self.websocket_api_name)
        return routes.select_related("api_gateway").order_by("pk").first()

    def get_channel_name(self) -> str:
        return str(self.channel_name or "")

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
        channel = self.get_channel_name()
        context["api_gateway_route"] = self.get_api_gateway_route()
        context["channel_name"] = channel
        context["websocket_channel"] = channel
        context["websocket_url"] = self.get_websocket_url()
        return context


class AppChannelWebSocketMixin(AddWebSocketRouteToContextMixin):
    """Names the route key and the channel after the app that holds the view.

    Route key: ``websocket_route_key`` if the view sets one, else the app's label. Channel: the
    ``channel`` URL keyword argument, else ``app_channel_override``, else ``channel_name``, else
    the app's label. The app is the installed app containing the module of the view the
    request's URL resolves to (normally the module that defines this view).
    """

    websocket_route_key: str | None = None
    app_channel_override: str | None = None

    def get_app_label(self) -> str:
        """The label of the installed app holding the view; outside any installed app, the
        last part of the view's package name."""
        module = self._view_module()
        config = apps.get_containing_app_config(module)
        if config is not None:
            return config.label
        package = getattr(sys.modules.get(module), "__package__", None)
        if package is None:
            package = module.rpartition(".")[0] or module
        return package.rpartition(".")[2]

    def _view_module(self) -> str:
        # resolve(), as the original package does, so code that patches
        # ``mixins.resolve`` keeps working; without a request, this class's module.
        request = getattr(self, "request", None)
        if request is not None:
            try:
                return resolve(request.path_info).func.__module__
            except Resolver404:
                pass
        return type(self).__module__

    def get_channel_name(self) -> str:
        kwargs = getattr(self, "kwargs", None) or {}
        return str(
            kwargs.get("channel")
            or self.app_channel_override
            or self.channel_name
            or self.get_app_label()
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # Both kept on the view, as the original does, for code that reads them afterwards.
        self.websocket_route_key = self.websocket_route_key or self.get_app_label()
        context = super().get_context_data(**kwargs)
        self.channel_name = context["channel_name"]
        return context
