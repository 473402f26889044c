"""The deployed site through the Lambda handler, under zappa's stage prefix and without it:
REST API v1 events for ``https://<rest-id>.execute-api.<region>.amazonaws.com/dev/...`` (and a
custom domain's, which have no prefix), then a ``$connect`` on the WebSocket API's host with
the token the page got, carrying none of the site's cookies."""

from __future__ import annotations

import copy
import json
import re
from http.cookies import SimpleCookie
from typing import Any

import pytest

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession, WebSocketToken
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from tests.lambda_support import SAMPLE_API_ID, load_event
from websocket_app.models import Room

pytestmark = pytest.mark.django_db

SITE_HOST = "rest123456.execute-api.eu-west-1.amazonaws.com"
SITE = f"https://{SITE_HOST}"
SOCKET_URL = f"wss://{SAMPLE_API_ID}.execute-api.eu-west-1.amazonaws.com/production"


@pytest.fixture
def handler(settings, keep_test_connection):
    # The example project's own defaults: no origin or binding configured for the topology.
    settings.ALLOWED_HOSTS = [".amazonaws.com", ".on.aws"]
    settings.WEBSOCKETS = {}
    settings.CSRF_TRUSTED_ORIGINS = []
    return make_lambda_handler()


@pytest.fixture(autouse=True)
def deployed(django_user_model):
    ApiGateway.objects.create(
        api_name="chat",
        api_id=SAMPLE_API_ID,
        stage_name="production",
        api_endpoint=f"wss://{SAMPLE_API_ID}.execute-api.eu-west-1.amazonaws.com",
    )
    Room.objects.create(slug="general", title="General")
    django_user_model.objects.create_user(username="alice", password="alice")


class Site:
    """A browser on the site: REST v1 events for one host and stage, and its cookie jar."""

    def __init__(self, handler: Any, stage: str = "dev", host: str = SITE_HOST) -> None:
        self.handler, self.stage, self.host = handler, stage, host
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: str = "", **headers: str) -> dict:
        """``path`` as the browser requests it (``/dev/...`` when there is a stage)."""
        event = copy.deepcopy(load_event("http_rest_v1"))
        path, _, query = path.partition("?")
        prefix = f"/{self.stage}" if self.stage else ""
        assert path.startswith(prefix)
        all_headers = {
            **{k: v[0] for k, v in event["multiValueHeaders"].items()},
            "Host": self.host,
            **headers,
        }
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        params = dict(pair.split("=", 1) for pair in query.split("&")) if query else None
        event.update(
            httpMethod=method,
            path=path[len(prefix) :] or "/",
            headers=all_headers,
            multiValueHeaders={k: [v] for k, v in all_headers.items()},
            queryStringParameters=params,
            multiValueQueryStringParameters={k: [v] for k, v in params.items()} if params else None,
            body=body or None,
        )
        event["requestContext"].update(
            httpMethod=method, path=path, stage=self.stage or "$default", domainName=self.host
        )
        response = self.handler(event, None)
        for cookie in (response.get("multiValueHeaders") or {}).get("Set-Cookie", []):
            for name, morsel in SimpleCookie(cookie).items():
                self.cookies[name] = morsel.value
        return response

    def page(self, path: str) -> str:
        response = self.request("GET", path)
        assert response["statusCode"] == 200, response["statusCode"]
        return response["body"]

    def log_in(self, login_path: str) -> dict:
        form = self.page(login_path)
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        return self.request(
            "POST",
            login_path,
            f"username=alice&password=alice&csrfmiddlewaretoken={csrf}",
            **{"Content-Type": "application/x-www-form-urlencoded", "Origin": self.origin},
        )

    @property
    def origin(self) -> str:
        return f"https://{self.host}"


def location(response: dict) -> str:
    return response["multiValueHeaders"]["Location"][0]


def chat_config(html: str) -> dict:
    return json.loads(
        re.search(r'id="chat-config" type="application/json">(.*?)</script>', html)[1]
    )


def connect_on_the_socket_host(handler, token: str, origin: str) -> dict:
    """A browser's $connect to the WebSocket API: the site's page as Origin, no cookie."""
    event = load_event("connect")
    for headers in (event["headers"], event["multiValueHeaders"]):
        headers["Origin"] = origin if headers is event["headers"] else [origin]
    event["queryStringParameters"] = {"channel": "general", "ws_token": token}
    event["multiValueQueryStringParameters"] = {"channel": ["general"], "ws_token": [token]}
    assert "Cookie" not in event["headers"]
    return handler(event, None)


@pytest.mark.parametrize(
    ("stage", "host"),
    [
        ("dev", SITE_HOST),  # zappa's REST API URL
        ("", "chat.example.com"),  # a custom domain mapped to the same REST API: no stage
    ],
)
def test_log_in_and_connect_from_the_deployed_site(settings, handler, stage, host):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "chat.example.com"]
    site = Site(handler, stage, host)
    root = f"/{stage}/" if stage else "/"

    # The login redirect keeps the prefix, and so does the redirect after logging in.
    anonymous = site.request("GET", f"{root}rooms/general/")
    assert anonymous["statusCode"] == 302
    assert location(anonymous) == f"{root}login/?next={root}rooms/general/"
    logged_in = site.log_in(location(anonymous))
    assert logged_in["statusCode"] == 302
    assert location(logged_in) == f"{root}rooms/general/"

    # The page: static files and the token endpoint under the prefix, the socket's URL.
    html = site.page(location(logged_in))
    assert f'href="{root}static/websocket_app/chat.css"' in html
    assert f'"websocket-client": "{root}static/django_aws_api_gateway_websockets/' in html
    assert f'src="{root}static/websocket_app/chat.js"' in html
    config = chat_config(html)
    assert (config["url"], config["tokenUrl"]) == (SOCKET_URL, f"{root}api/ws-token/")
    script = site.request(
        "GET", f"{root}static/django_aws_api_gateway_websockets/websocket-client.js"
    )
    assert script["statusCode"] == 200 and "export class WebSocketClient" in script["body"]

    # The JS client's token request, as the browser sends it.
    token_response = site.request(
        "POST",
        config["tokenUrl"],
        **{"X-CSRFToken": site.cookies["csrftoken"], "Origin": site.origin},
    )
    assert token_response["statusCode"] == 200
    token = json.loads(token_response["body"])["token"]
    assert WebSocketToken.objects.get(token=token).origin == site.origin

    # The socket on the other host: no cookie, the site's origin, the shipped settings.
    connected = connect_on_the_socket_host(handler, token, site.origin)
    assert connected["statusCode"] == 200, connected
    assert WebSocketSession.objects.get().user.username == "alice"


def test_the_stage_root_without_a_slash_keeps_the_prefix(handler):
    site = Site(handler)
    html = site.page("/dev")
    assert 'href="/dev/login/' in html and 'href="/dev/static/websocket_app/chat.css"' in html


def test_another_page_origin_cannot_use_the_sites_token(handler):
    site = Site(handler)
    site.log_in("/dev/login/")
    token_response = site.request(
        "POST", "/dev/api/ws-token/", **{"X-CSRFToken": site.cookies["csrftoken"], "Origin": SITE}
    )
    token = json.loads(token_response["body"])["token"]
    refused = connect_on_the_socket_host(handler, token, "https://evil.example")
    assert refused["statusCode"] == 403
    assert connect_on_the_socket_host(handler, token, SITE)["statusCode"] == 200


def test_static_urls_follow_the_request_prefix_but_leave_cdn_urls_alone(settings):
    from django.urls import set_script_prefix

    from django_aws_api_gateway_websockets.serverless.staticfiles import (
        ScriptPrefixStaticFilesStorage,
    )

    storage = ScriptPrefixStaticFilesStorage(base_url="/static/")
    cdn = ScriptPrefixStaticFilesStorage(base_url="https://cdn.example.com/static/")
    try:
        set_script_prefix("/dev/")
        assert storage.url("a.js") == "/dev/static/a.js"
        assert cdn.url("a.js") == "https://cdn.example.com/static/a.js"
        set_script_prefix("/")
        assert storage.url("a.js") == "/static/a.js"
    finally:
        set_script_prefix("/")


def http_api_v2(path: str, stage: str) -> dict:
    """An HTTP API (v2) request as AWS sends it: a named stage stays in ``rawPath``."""
    event = copy.deepcopy(load_event("http_api_v2"))
    event["rawPath"] = path
    event["rawQueryString"] = ""
    event["headers"]["host"] = SITE_HOST
    event.pop("cookies", None)
    event["requestContext"].update(stage=stage, domainName=SITE_HOST)
    event["requestContext"]["http"].update(method="GET", path=path)
    return event


@pytest.mark.parametrize(
    ("path", "stage", "prefix"),
    [("/dev/rooms/general/", "dev", "/dev"), ("/rooms/general/", "$default", "")],
)
def test_http_api_v2_named_stage_is_the_script_name(handler, path, stage, prefix):
    response = handler(http_api_v2(path, stage), None)
    assert response["statusCode"] == 302
    headers = {name.lower(): value for name, value in response["headers"].items()}
    assert headers["location"] == f"{prefix}/login/?next={prefix}/rooms/general/"
    login = handler(http_api_v2(f"{prefix}/login/", stage), None)
    assert login["statusCode"] == 200
    assert f'src="{prefix}/static/' in login["body"] or f'href="{prefix}/static/' in login["body"]


def test_http_api_v2_path_merely_starting_like_the_stage_is_left_alone(handler):
    # "/devices/" is not under the stage "dev": not stripped, so Django sees it whole (404).
    assert handler(http_api_v2("/devices/", "dev"), None)["statusCode"] == 404
