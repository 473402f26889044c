"""AWS's rules for the names a gateway record sends to API Gateway.

Checked in ``ApiGateway.clean()`` so that a bad value is a form error on its field, not an
AWS error halfway through ``create_gateway()``. Each function returns the problem with a
value, or "" when AWS will accept it.

- API name: 1 to 128 characters (``CreateApi``'s ``Name``). AWS publishes no character set;
  the name becomes a CloudWatch dimension value and appears in consoles and CLIs, so we accept
  the conservative set letters, digits, spaces, hyphens, underscores and periods, starting with
  a letter or digit.
- Stage name: letters, digits, hyphens and underscores, at most 128 characters (API Gateway's
  documented rule for REST and WebSocket stages).
- Custom domain name: a DNS host name (RFC 1035: labels of 1 to 63 letters, digits or hyphens,
  not starting or ending with a hyphen; 253 characters in all), with at least two labels and a
  top-level label that is not all digits (an IP address is not a domain). A leading ``*.`` is
  allowed: API Gateway supports wildcard custom domain names.
"""

from __future__ import annotations

import re

MAX_API_NAME = 128
MAX_STAGE_NAME = 128
MAX_DOMAIN_NAME = 253

_API_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]*", re.ASCII)
_STAGE_NAME = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII | re.IGNORECASE)


def api_name_problem(value: str) -> str:
    if not value or len(value) > MAX_API_NAME:
        return f"Enter 1 to {MAX_API_NAME} characters."
    if not _API_NAME.fullmatch(value) or value != value.rstrip():
        return (
            "Use letters, digits, spaces, hyphens, underscores or periods, starting with a "
            "letter or digit and not ending with a space."
        )
    return ""


def stage_name_problem(value: str) -> str:
    if not value or len(value) > MAX_STAGE_NAME or not _STAGE_NAME.fullmatch(value):
        return f"Use 1 to {MAX_STAGE_NAME} letters, digits, hyphens or underscores."
    return ""


def domain_name_problem(value: str) -> str:
    if "://" in value or "/" in value or ":" in value:
        return "Enter the host name only, e.g. ws.example.com (no scheme, port or path)."
    if len(value) > MAX_DOMAIN_NAME:
        return f"A domain name has at most {MAX_DOMAIN_NAME} characters."
    labels = value.split(".")
    if labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return (
            "Enter a domain name such as ws.example.com: labels of letters, digits and "
            "hyphens (not at either end), separated by single dots."
        )
    if labels[-1].isdigit():
        return "Enter a domain name, not an IP address."
    return ""
