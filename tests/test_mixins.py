"""Template mixins: the page learns where its socket is and which channel it joins.

Both the original package's context (``api_gateway_route``, ``channel_name``) and this
library's (``websocket_url``, ``websocket_channel``)."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django.views.generic import TemplateView

from django_aws_api_gateway_websockets.mixins import (
    AddWebSocketRouteToContextMixin,
    AppChannelWebSocketMixin,
)
from django_aws_api_gateway_websockets.models import ApiGateway, ApiGatewayAdditionalRoute

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


# --------------------------------------------------------------------------- original's keys


class PlainContext:
    """A minimal base, as a project's own view hierarchy may have: no request, no setup()."""

    def get_context_data(self, **kwargs):
        return kwargs


class OriginalStyleRouteView(AddWebSocketRouteToContextMixin, PlainContext):
    pass


class DashboardView(AddWebSocketRouteToContextMixin, TemplateView):
    template_name = "x.html"
    websocket_route_key = "dashboard"
    channel_name = "dashboard"


def route(gateway, route_key, name="Route"):
    return ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway,
        name=name,
        route_key=route_key,
        integration_url=f"https://www.example.com/ws/{route_key}",
    )


@pytest.fixture
def gateway():
    return ApiGateway.objects.create(
        api_name="Site",
        target_base_endpoint="https://www.example.com/ws/",
        domain_name="ws.example.com",
    )


def test_route_of_the_default_key_with_its_gateway_in_one_query(gateway, django_assert_num_queries):
    default = route(gateway, "default")
    route(gateway, "dashboard")
    view = OriginalStyleRouteView()
    view.channel_name = "test-channel"

    context = view.get_context_data(existing=True)

    assert context["existing"] is True
    assert context["api_gateway_route"] == default
    assert context["channel_name"] == context["websocket_channel"] == "test-channel"
    with django_assert_num_queries(1):
        found = view.get_api_gateway_route()
        assert found.api_gateway.domain_name == "ws.example.com"


def test_no_matching_route_is_none():
    view = OriginalStyleRouteView()
    view.websocket_route_key = "missing-route"
    view.channel_name = "missing-channel"

    context = view.get_context_data()

    assert context["api_gateway_route"] is None
    assert context["channel_name"] == "missing-channel"


def test_route_key_attribute_selects_the_route(gateway):
    route(gateway, "default")
    dashboard = route(gateway, "dashboard")

    context = context_of(DashboardView)

    assert context["api_gateway_route"] == dashboard
    assert context["channel_name"] == "dashboard"


def test_gateway_name_narrows_the_route_to_that_gateway(gateway):
    other = ApiGateway.objects.create(api_name="Second", api_endpoint="wss://def.example")
    route(gateway, "default")
    on_second = route(other, "default")

    assert context_of(NamedRouteView)["api_gateway_route"] == on_second


@pytest.mark.urls("tests.mixin_app.urls")
class TestAppChannel:
    """Route key and channel named after the app holding the view: a page rendered for real."""

    @pytest.fixture(autouse=True)
    def installed(self, settings):
        settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.mixin_app"]

    def test_route_and_channel_are_the_apps_label(self, client, gateway, django_assert_num_queries):
        route(gateway, "mixin_app")
        # The route with its gateway, and the gateway for websocket_url: nothing per access.
        with django_assert_num_queries(2):
            page = client.get("/blog/").content.decode()
        assert "wss://ws.example.com?channel=mixin_app" in page
        assert "channel=mixin_app" in page.splitlines()[1]

    def test_override_changes_the_channel_not_the_route_key(self, client, gateway):
        route(gateway, "mixin_app")
        page = client.get("/public/").content.decode()
        assert "wss://ws.example.com?channel=public_blog" in page

    def test_channel_url_argument_wins(self, client, gateway):
        route(gateway, "mixin_app")
        page = client.get("/rooms/support/").content.decode()
        assert "wss://ws.example.com?channel=support" in page

    def test_no_route_for_the_app_renders_without_one(self, client, gateway):
        route(gateway, "default")
        page = client.get("/blog/").content.decode()
        assert page.startswith("no route")
        assert "channel=mixin_app" in page

    def test_route_key_and_channel_are_kept_on_the_view(self, gateway):
        from tests.mixin_app.views import PublicBlogView

        view = PublicBlogView()
        view.setup(RequestFactory().get("/public/"))
        view.get_context_data()
        assert (view.websocket_route_key, view.channel_name) == ("mixin_app", "public_blog")

    def test_a_view_that_sets_its_route_key_keeps_it(self, gateway):
        chat = route(gateway, "chat")

        class ChatPage(AppChannelWebSocketMixin, PlainContext):
            websocket_route_key = "chat"

        view = ChatPage()
        view.request = RequestFactory().get("/blog/")
        context = view.get_context_data()
        assert context["api_gateway_route"] == chat
        assert context["channel_name"] == "mixin_app"


def test_app_channel_outside_any_installed_app_uses_the_package_name():
    class Page(AppChannelWebSocketMixin, PlainContext):
        pass

    # tests/ is not an installed app: the last part of the view's package.
    assert Page().get_context_data()["channel_name"] == "tests"


def test_app_of_the_view_the_url_resolves_to(monkeypatch):
    """The module comes from resolve(), as in the original, so patching it still steers it."""

    class Page(AppChannelWebSocketMixin, PlainContext):
        pass

    resolved = type("Match", (), {"func": type("View", (), {"__module__": "site_apps.blog.views"})})
    monkeypatch.setattr("django_aws_api_gateway_websockets.mixins.resolve", lambda path: resolved)
    view = Page()
    view.request = RequestFactory().get("/anywhere/")

    assert view.get_context_data()["channel_name"] == "blog"
    assert view.websocket_route_key == "blog"
