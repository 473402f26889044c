"""Management API (@connections) endpoint URLs. Pure functions: no Django, no boto3."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

# The one copy of API Gateway's default host name; group 1 is the region.
EXECUTE_API_DOMAIN = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")
# Names that no public certificate authority (so no ACM certificate, so no API Gateway custom
# domain) can cover: RFC 6761 special-use names, mDNS (.local), RFC 8375 (.home.arpa), ICANN's
# private-use .internal, and the usual home-router suffixes.
LOCAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".test",
    ".example",
    ".invalid",
    ".home.arpa",
    ".lan",
    ".localdomain",
)
SCHEMES = ("http", "https")
HOSTNAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")


def execute_api_endpoint(api_id: str, region: str, stage: str) -> str:
    return f"https://{api_id}.execute-api.{region}.amazonaws.com/{stage}"


def execute_api_region(endpoint_url: str) -> str:
    """The region of an execute-api URL (``https://id.execute-api.eu-west-1...``), else ""."""
    match = EXECUTE_API_DOMAIN.match(urlsplit(endpoint_url).hostname or "")
    return match.group(1) if match else ""


def split_authority(authority: str) -> tuple[str, int | None] | None:
    """``(hostname, port)`` of a ``host[:port]``, lower-cased; None if it is not one."""
    try:
        parts = urlsplit(f"//{authority}")
        port = parts.port
    except ValueError:
        return None
    hostname = (parts.hostname or "").lower()
    if parts.username or parts.password or parts.path or parts.query or parts.fragment:
        return None
    if not (HOSTNAME.match(hostname) or _is_ip(hostname)):
        return None
    return hostname, port


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def is_loopback(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def is_emulator_host(authority: str) -> bool:
    """True for a host that cannot be API Gateway: an explicit port (API Gateway serves only
    on 443, and its ``domainName`` never carries one), an IP address, a one-label name
    (``localhost``, a container name) or a special-use name (``*.localhost``, ``*.local``,
    ``*.internal``, ``*.test``, ...). Any other name may be an AWS custom domain."""
    parsed = split_authority(authority)
    if parsed is None:
        return False
    hostname, port = parsed
    return (
        port is not None
        or "." not in hostname
        or hostname.endswith(LOCAL_SUFFIXES)
        or _is_ip(hostname)
    )


def emulator_endpoint(domain_name: str, client_host: str = "", client_scheme: str = "") -> str:
    """The emulator itself: ``scheme://host[:port]``, with no path.

    ``domain_name`` is the event's; ``client_host`` is the handshake's ``Host`` and wins when
    it names the same host or a loopback one, because it carries the port the client really
    used (serverless-offline's ``domainName`` is always a bare ``localhost``). The scheme is
    ``client_scheme`` (the handshake's ``X-Forwarded-Proto``), else http.
    """
    authority = domain_name.lower()
    domain = split_authority(authority)
    client = split_authority(client_host) if client_host else None
    if domain is None:
        return ""
    if client is not None and (client[0] == domain[0] or is_loopback(client[0])):
        authority = client_host.lower()
    scheme = client_scheme.lower() if client_scheme.lower() in SCHEMES else "http"
    return f"{scheme}://{authority}"


def endpoint_from_event(
    domain_name: str,
    api_id: str,
    stage: str,
    region: str,
    client_host: str = "",
    client_scheme: str = "",
) -> str:
    """The endpoint for replies to a connection, from its event's domain and stage.

    An execute-api domain is used as is (``https://domain/stage``). An emulator host (see
    ``is_emulator_host``) is the endpoint itself, scheme and port included (see
    ``emulator_endpoint``). Any other domain is an AWS custom domain: it maps to the
    execute-api URL of the same API and stage (its base-path mapping is not in the event).
    Returns "" when the event does not say enough.
    """
    domain = domain_name.lower()
    if not (domain and api_id and stage):
        return ""
    if EXECUTE_API_DOMAIN.match(domain):
        return f"https://{domain}/{stage}"
    if is_emulator_host(domain):
        return emulator_endpoint(domain, client_host, client_scheme)
    return execute_api_endpoint(api_id, region, stage) if region else ""
