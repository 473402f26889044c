"""Template mixins: the page learns where its socket is and which channel it joins."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.views.generic import TemplateView

from django_aws_api_gateway_websockets.mixins import (
    AddWebSocketRouteToContextMixin,
    AppChannelWebSocketMixin,
)
from django_aws_api_gateway_websockets.models import ApiGateway

pytestmark = pytest.mark.django_db


def context_of(view_class, **kwargs):
    view = view_class()
    view.setup(RequestFactory().get("/"), **kwargs)
    return view.get_context_data(**kwargs)


class RouteView(AddWebSocketRouteToContextMixin, TemplateView):
    template_name = "x.html"


class NamedRouteView(RouteView):
    websocket_api_name = "Second"


class FixedRouteView(RouteView):
    websocket_url = "ws://127.0.0.1:8001/local"


class ChannelView(AppChannelWebSocketMixin, TemplateView):
    template_name = "x.html"
    channel_name = "lobby"


def test_no_gateway_gives_empty_url():
    assert context_of(RouteView)["websocket_url"] == ""


def test_stage_url_of_the_first_gateway():
    ApiGateway.objects.create(
        api_name="First",
        api_endpoint="wss://abc.execute-api.eu-west-1.amazonaws.com",
        stage_name="production",
    )
    ApiGateway.objects.create(api_name="Second", api_endpoint="wss://def.example", stage_name="dev")
    assert context_of(RouteView)["websocket_url"] == (
        "wss://abc.execute-api.eu-west-1.amazonaws.com/production"
    )
    assert context_of(NamedRouteView)["websocket_url"] == "wss://def.example/dev"


def test_custom_domain_wins_once_created():
    ApiGateway.objects.create(
        api_name="First",
        api_endpoint="wss://abc.example",
        domain_name="ws.example.com",
        custom_domain_created=True,
    )
    assert context_of(RouteView)["websocket_url"] == "wss://ws.example.com"


def test_gateway_not_created_yet_gives_empty_url():
    ApiGateway.objects.create(api_name="First")
    assert context_of(RouteView)["websocket_url"] == ""


def test_fixed_url():
    assert context_of(FixedRouteView)["websocket_url"] == "ws://127.0.0.1:8001/local"


def test_channel_from_url_kwarg_or_attribute():
    assert context_of(ChannelView)["websocket_channel"] == "lobby"
    assert context_of(ChannelView, channel="support")["websocket_channel"] == "support"


def test_gateways_without_an_endpoint_are_skipped():
    ApiGateway.objects.create(api_name="Record only", api_id="abc")
    ApiGateway.objects.create(
        api_name="Local", api_endpoint="ws://127.0.0.1:8001", stage_name="local"
    )
    assert context_of(RouteView)["websocket_url"] == "ws://127.0.0.1:8001/local"
