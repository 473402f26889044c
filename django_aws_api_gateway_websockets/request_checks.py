"""Pure checks on an incoming API Gateway request: identity, origin, client address.

Kept apart from the view so each rule is small, named and testable on its own.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest
from django.http.request import split_domain_port
from django.utils.http import is_same_domain

from .conf import allowed_origins

# API Gateway connection ids are short base64 strings ("L0SM9cOFvHcCIhw="); allow a margin.
CONNECTION_ID_PATTERN = re.compile(r"^[A-Za-z0-9+/=_-]{1,128}$")
DEFAULT_PORTS = {"http": 80, "https": 443}
# A replay position (?since= at $connect, "since" of the replay action): a seq, at most 18
# digits so that it always fits PostgreSQL's bigint.
SINCE_PATTERN = re.compile(r"^[0-9]{1,18}$")
UNKNOWN_IP = "0.0.0.0"


def is_valid_connection_id(connection_id: str | None) -> bool:
    return bool(connection_id) and CONNECTION_ID_PATTERN.fullmatch(connection_id or "") is not None


def valid_since(value: Any) -> int | None:
    """A replay position as an int, or None when ``value`` is not one: a string of 1 to 18
    digits, or (in a JSON message) a non-negative integer of at most 18 digits."""
    if isinstance(value, str):
        return int(value) if SINCE_PATTERN.fullmatch(value) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return value
    return None


def request_context(request: HttpRequest) -> dict:
    """The API Gateway request context the Lambda adapter attached, or ``{}`` over HTTP."""
    context = request.META.get("apig_wsgi.request_context")
    return context if isinstance(context, dict) else {}


def _valid_ip(value: Any) -> str | None:
    if not value or not isinstance(value, str):
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str:
    """The client's address: API Gateway's ``sourceIp`` when delivered by Lambda, else proxy
    headers (the rightmost ``X-Forwarded-For`` entry, the one the nearest proxy added), else
    ``REMOTE_ADDR``. Never raises; an unparseable address becomes ``0.0.0.0``."""
    identity = request_context(request).get("identity")
    source_ip = _valid_ip(identity.get("sourceIp") if isinstance(identity, dict) else None)
    if source_ip:
        return source_ip
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    candidates = [forwarded.split(",")[-1]] if forwarded else []
    candidates += [request.META.get("HTTP_X_REAL_IP"), request.META.get("REMOTE_ADDR")]
    for candidate in candidates:
        ip = _valid_ip(candidate)
        if ip:
            return ip
    return UNKNOWN_IP


def _split_origin(origin: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an http(s) origin, or None if it is not one."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def normalize_origin(origin: str | None) -> str | None:
    """``scheme://host[:port]`` with the host in lower case and a default port left out, or
    None if ``origin`` is not an http(s) origin: the form tokens store their issuing origin in,
    so that one string comparison (in SQL) decides whether a handshake's Origin is that one."""
    parsed = _split_origin(origin) if origin else None
    if parsed is None:
        return None
    scheme, host, port = parsed
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" if port == DEFAULT_PORTS[scheme] else f"{scheme}://{host}:{port}"


def site_origin(request: HttpRequest) -> str:
    """The origin a page served by ``request`` has: its scheme (``SECURE_PROXY_SSL_HEADER``
    honoured) and host. The path, and so a stage prefix in ``SCRIPT_NAME``, plays no part."""
    return normalize_origin(f"{request.scheme}://{request.get_host()}") or ""


def host_allowed(host: str) -> bool:
    """True if ``ALLOWED_HOSTS`` accepts ``host`` (port allowed), as ``request.get_host()``
    would, DEBUG's local default included."""
    from django.conf import settings
    from django.http.request import validate_host

    domain, _ = split_domain_port(host)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # Django's own DEBUG default
    return bool(domain) and validate_host(domain, allowed)


def session_cookie_reaches(host: str) -> bool:
    """True if the site's session cookie is sent to ``host``: ``SESSION_COOKIE_DOMAIN`` (e.g.
    ``.example.com``) covers it, so a handshake without that cookie did not come from a
    browser of the site's users."""
    from django.conf import settings

    cookie_domain = (getattr(settings, "SESSION_COOKIE_DOMAIN", None) or "").lstrip(".")
    domain, _ = split_domain_port(host)
    return bool(cookie_domain and domain) and is_same_domain(domain, "." + cookie_domain)


def origin_allowed(origin: str | None, request_host: str, request_is_secure: bool) -> bool:
    """True if a socket opened from ``origin`` may connect to ``request_host``.

    Allowed are the socket's own host (https always; http only when the request itself is not
    secure, so no downgrade) and the origins configured in ``WEBSOCKETS["allowed_origins"]``
    (default: ``CSRF_TRUSTED_ORIGINS``; ``https://*.example.com`` allows subdomains). Hosts are
    compared whole, never as substrings. (The view also accepts the origin that issued the
    connect's token; that needs the token, so it is not decided here.)
    """
    if not origin:
        return False
    parsed = _split_origin(origin)
    if parsed is None:
        return False
    scheme, host, port = parsed
    own_host, own_port = split_domain_port(request_host)
    same_port = port == (int(own_port) if own_port else DEFAULT_PORTS[scheme])
    if host == own_host.strip("[]") and same_port and (scheme == "https" or not request_is_secure):
        return True
    return any(_matches_allowed(scheme, host, port, allowed) for allowed in allowed_origins())


def _matches_allowed(scheme: str, host: str, port: int, allowed: str) -> bool:
    wildcard = "://*." in allowed
    candidate = _split_origin(allowed.replace("://*.", "://", 1))
    if candidate is None:
        return False
    allowed_scheme, allowed_host, allowed_port = candidate
    if scheme != allowed_scheme or port != allowed_port:
        return False
    if wildcard:
        return is_same_domain(host, "." + allowed_host)
    return host == allowed_host


def channel_name_valid(channel: str, pattern: str, max_length: int) -> bool:
    return 0 < len(channel) <= max_length and re.fullmatch(pattern, channel) is not None
