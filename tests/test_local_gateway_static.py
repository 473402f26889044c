"""``runapigateway`` serves static files itself while DEBUG is on, as ``runserver`` does: the
browser client loads in a project with no WhiteNoise and no middleware of its own."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from django.core.management.base import CommandError

from tests.e2e_support import ROOT, GatewayProcess, e2e_database

CLIENT = "django_aws_api_gateway_websockets/websocket-client.js"
CLIENT_SOURCE = (ROOT / "django_aws_api_gateway_websockets" / "static" / CLIENT).read_bytes()
SETTINGS = {"DJANGO_SETTINGS_MODULE": "tests.settings_without_whitenoise"}


def fetch(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@pytest.fixture
def database_url(tmp_path):
    with e2e_database(tmp_path) as url:
        yield url


@pytest.mark.parametrize("site_stage", ["", "dev"])
def test_debug_serves_the_js_client_without_whitenoise(database_url, site_stage):
    extra = ("--site-stage", site_stage) if site_stage else ()
    gateway = GatewayProcess(database_url, *extra, env={**SETTINGS, "DJANGO_DEBUG": "1"})
    try:
        status, content_type, body = fetch(gateway.base_url + "static/" + CLIENT)
        missing, _, _ = fetch(gateway.base_url + "static/no-such-file.js")
    finally:
        gateway.stop()
    assert (status, body) == (200, CLIENT_SOURCE)
    assert "javascript" in content_type
    assert missing == 404


def test_without_debug_static_files_are_left_to_the_project(database_url):
    gateway = GatewayProcess(database_url, env={**SETTINGS, "DJANGO_DEBUG": "0"})
    try:
        status, _, body = fetch(gateway.base_url + "static/" + CLIENT)
    finally:
        gateway.stop()
    assert status == 404
    assert CLIENT_SOURCE not in body


@pytest.mark.parametrize(
    ("debug", "flags", "served"),
    [
        (True, {}, True),
        (True, {"use_static_handler": False}, False),  # --nostatic
        (False, {}, False),
        (False, {"insecure": True}, True),  # --insecure
    ],
)
def test_runservers_rule_decides_who_serves_static_files(settings, debug, flags, served):
    from django_aws_api_gateway_websockets.management.commands.runapigateway import (
        serves_static_files,
    )

    settings.DEBUG = debug
    options = {"use_static_handler": True, "insecure": False, **flags}
    assert serves_static_files(options) is served
    if served:
        settings.STATIC_URL = None  # runserver refuses to start; so does this command
        with pytest.raises(CommandError, match="STATIC_URL.*--nostatic"):
            serves_static_files(options)
        settings.STATIC_URL = "/static/"
    settings.INSTALLED_APPS = [
        app for app in settings.INSTALLED_APPS if app != "django.contrib.staticfiles"
    ]
    assert serves_static_files(options) is False
