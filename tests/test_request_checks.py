"""Unit tests of the pure request checks: client address, connection ids, origins."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from django_aws_api_gateway_websockets.request_checks import (
    client_ip,
    host_allowed,
    is_valid_connection_id,
    normalize_origin,
    origin_allowed,
    session_cookie_reaches,
    site_origin,
)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (
            {
                "apig_wsgi.request_context": {"identity": {"sourceIp": "203.0.113.9"}},
                "HTTP_X_FORWARDED_FOR": "1.1.1.1",
            },
            "203.0.113.9",
        ),
        ({"HTTP_X_FORWARDED_FOR": "6.6.6.6, 203.0.113.9"}, "203.0.113.9"),
        ({"HTTP_X_FORWARDED_FOR": "garbage", "HTTP_X_REAL_IP": "203.0.113.8"}, "203.0.113.8"),
        ({"HTTP_X_FORWARDED_FOR": "", "REMOTE_ADDR": "10.0.0.1"}, "10.0.0.1"),
        ({"HTTP_X_FORWARDED_FOR": "2001:db8::1"}, "2001:db8::1"),
        ({"REMOTE_ADDR": "not-an-ip"}, "0.0.0.0"),
    ],
)
def test_client_ip(meta, expected):
    request = RequestFactory().post("/")
    request.META.pop("REMOTE_ADDR")
    request.META.update(meta)
    assert client_ip(request) == expected


@pytest.mark.parametrize(
    ("connection_id", "valid"),
    [
        ("L0SM9cOFvHcCIhw=", True),
        ("connection-1", True),
        ("", False),
        (None, False),
        ("a b", False),
        ("x" * 129, False),
        ("id\n", False),
    ],
)
def test_connection_id(connection_id, valid):
    assert is_valid_connection_id(connection_id) is valid


@pytest.mark.parametrize(
    ("origin", "host", "secure", "allowed"),
    [
        ("https://example.com", "example.com", True, True),
        ("https://example.com:443", "example.com", True, True),
        ("https://EXAMPLE.com", "example.com", True, True),
        ("http://example.com", "example.com", True, False),
        ("http://localhost:8001", "localhost:8001", False, True),
        ("http://localhost:8002", "localhost:8001", False, False),
        ("https://example.com.evil.net", "example.com", True, False),
        ("https://sub.example.com", "example.com", True, False),
        ("https://[::1]:8443", "[::1]:8443", True, True),
        ("https://example.com/path", "example.com", True, False),
        ("https://example.com:99999", "example.com", True, False),
        ("javascript:alert(1)", "example.com", True, False),
        (None, "example.com", True, False),
    ],
)
def test_origin_against_own_host(settings, origin, host, secure, allowed):
    settings.CSRF_TRUSTED_ORIGINS = []
    assert origin_allowed(origin, host, secure) is allowed


def test_malformed_allowed_origin_entries_match_nothing(settings):
    settings.WEBSOCKETS = {"allowed_origins": ["example.com", "https://", "https://*.x.com"]}
    assert origin_allowed("https://example.com", "api.test", True) is False
    assert origin_allowed("https://a.x.com", "api.test", True) is True
    assert origin_allowed("http://a.x.com", "api.test", True) is False


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        ("https://WWW.Example.com", "https://www.example.com"),
        ("https://www.example.com:443", "https://www.example.com"),
        ("http://127.0.0.1:8001/", "http://127.0.0.1:8001"),
        ("http://[::1]:80", "http://[::1]"),
        ("https://x.io/dev", None),
        ("null", None),
        ("ws://x.io", None),
        ("", None),
        (None, None),
    ],
)
def test_normalize_origin(origin, expected):
    assert normalize_origin(origin) == expected


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        (
            {
                "HTTP_HOST": "abc.execute-api.eu-west-1.amazonaws.com",
                "HTTP_X_FORWARDED_PROTO": "https",
            },
            "https://abc.execute-api.eu-west-1.amazonaws.com",
        ),
        ({"HTTP_HOST": "127.0.0.1:8001", "SCRIPT_NAME": "/dev"}, "http://127.0.0.1:8001"),
    ],
)
def test_site_origin_is_scheme_and_host_behind_the_proxy_header(settings, meta, expected):
    settings.ALLOWED_HOSTS = ["*"]
    assert site_origin(RequestFactory().get("/", **meta)) == expected


@pytest.mark.parametrize(
    ("cookie_domain", "host", "reaches"),
    [
        (".example.com", "ws.example.com", True),
        ("example.com", "ws.example.com:443", True),
        (".example.com", "example.com", True),
        (".example.com", "ws.example.com.evil.net", False),
        (".example.com", "abc.execute-api.eu-west-1.amazonaws.com", False),
        (None, "ws.example.com", False),
        ("", "ws.example.com", False),
    ],
)
def test_session_cookie_reaches(settings, cookie_domain, host, reaches):
    settings.SESSION_COOKIE_DOMAIN = cookie_domain
    assert session_cookie_reaches(host) is reaches


@pytest.mark.parametrize(
    ("allowed", "debug", "host", "ok"),
    [
        ([".amazonaws.com"], False, "abc.execute-api.eu-west-1.amazonaws.com", True),
        ([".amazonaws.com"], False, "localhost:3001", False),
        ([], True, "localhost:3001", True),
        ([], False, "localhost:3001", False),
        (["*"], False, "*.execute-api.eu-central-1.amazonaws.com", False),
    ],
)
def test_host_allowed(settings, allowed, debug, host, ok):
    settings.ALLOWED_HOSTS, settings.DEBUG = allowed, debug
    assert host_allowed(host) is ok
