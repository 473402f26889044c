"""The library's ``WEBSOCKETS`` settings from ``WEBSOCKETS_<KEY>`` environment variables.

Every key the library knows has a variable (``token_expiry_seconds`` is
``WEBSOCKETS_TOKEN_EXPIRY_SECONDS``), parsed as the type of its default; an unset or empty
variable keeps the library's default. A value that does not parse stops start-up with the
variable's name, rather than running with a setting nobody chose.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from django_aws_api_gateway_websockets.conf import DEFAULTS

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
# Keys whose default (None) says nothing about their type.
LIST_KEYS = frozenset({"allowed_origins"})
# "MESSAGES/SECONDS" (120/60), or 0 / off for none.
RATE_KEYS = frozenset({"message_rate_limit"})


def variable_name(key: str) -> str:
    return f"WEBSOCKETS_{key.upper()}"


def websockets_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The ``WEBSOCKETS`` dict for the variables set in ``environ``."""
    configured: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        raw = environ.get(variable_name(key), "").strip()
        if raw:
            configured[key] = _parse(key, default, raw)
    return configured


def _parse(key: str, default: Any, raw: str) -> Any:
    word = raw.lower()
    if key in LIST_KEYS:
        return [item.strip() for item in raw.split(",") if item.strip()]
    if key in RATE_KEYS:
        return _parse_rate(key, raw)
    if key == "token_bound_to_session" and word == "auto":
        return "auto"
    if isinstance(default, bool) or key == "token_bound_to_session":
        if word in TRUE_WORDS | FALSE_WORDS:
            return word in TRUE_WORDS
        allowed = "true, false or auto" if key == "token_bound_to_session" else "true or false"
        raise _invalid(key, raw, allowed)
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise _invalid(key, raw, "an integer") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise _invalid(key, raw, "a number") from None
    return raw


def _parse_rate(key: str, raw: str) -> tuple[int, float] | None:
    if raw.lower() in FALSE_WORDS | {"none"}:
        return None
    messages, slash, seconds = raw.partition("/")
    try:
        rate = (int(messages), float(seconds))
    except ValueError:
        rate = None
    if not slash or rate is None or rate[0] < 0 or not 0 < rate[1] < float("inf"):
        raise _invalid(key, raw, "MESSAGES/SECONDS such as 120/60, or off")
    return None if rate[0] == 0 else rate


def _invalid(key: str, raw: str, wanted: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{variable_name(key)} must be {wanted}, not {raw!r}.")
