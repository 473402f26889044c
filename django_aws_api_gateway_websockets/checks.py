"""System checks: configuration mistakes reported at start-up, with an id and a hint."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from .conf import DEFAULTS, TOKEN_BINDINGS
from .message_rate import parse_limit

POSITIVE_INTEGER_KEYS = (
    "token_rate_limit_per_minute",
    "token_expiry_seconds",
    "rate_limit_max_attempts",
    "rate_limit_window_minutes",
    "send_concurrency",
    "http_concurrency",
    "max_message_bytes",
)
NON_NEGATIVE_INTEGER_KEYS = ("fanout_invocation_batch", "send_rate_limit")


@checks.register()
def check_websocket_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    if not (
        getattr(settings, "AWS_GATEWAY_REGION_NAME", None)
        or getattr(settings, "AWS_REGION_NAME", None)
    ):
        errors.append(
            checks.Warning(
                "No AWS region is configured, so messages cannot be sent to API Gateway.",
                hint="Set AWS_GATEWAY_REGION_NAME (or AWS_REGION_NAME) in your settings.",
                id="django_aws_api_gateway_websockets.W001",
            )
        )
    has_key = bool(getattr(settings, "AWS_ACCESS_KEY_ID", None))
    has_secret = bool(getattr(settings, "AWS_SECRET_ACCESS_KEY", None))
    if has_key != has_secret:
        errors.append(
            checks.Error(
                "Only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is set.",
                hint="Set both, or neither to use AWS_IAM_PROFILE or the execution role.",
                id="django_aws_api_gateway_websockets.E001",
            )
        )
    if getattr(settings, "AWS_IAM_PROFILE", None) and has_key:
        errors.append(
            checks.Warning(
                "AWS_IAM_PROFILE and AWS_ACCESS_KEY_ID are both set; the profile is used.",
                hint="Remove the one you do not mean to use.",
                id="django_aws_api_gateway_websockets.W002",
            )
        )
    errors.extend(_check_websockets_dict())
    return errors


def _check_websockets_dict() -> list[checks.CheckMessage]:
    configured = getattr(settings, "WEBSOCKETS", None)
    if configured is None:
        return []
    if not isinstance(configured, dict):
        return [
            checks.Error(
                "WEBSOCKETS must be a dict.",
                id="django_aws_api_gateway_websockets.E002",
            )
        ]
    errors: list[checks.CheckMessage] = []
    unknown = sorted(set(configured) - set(DEFAULTS))
    if unknown:
        errors.append(
            checks.Warning(
                f"Unknown WEBSOCKETS keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="django_aws_api_gateway_websockets.W003",
            )
        )
    integer_rules = (
        (POSITIVE_INTEGER_KEYS, 1, "a positive integer", "E003"),
        (NON_NEGATIVE_INTEGER_KEYS, 0, "an integer of 0 or more", "E006"),
    )
    for keys, minimum, wanted, check_id in integer_rules:
        for key in keys:
            value = configured.get(key, DEFAULTS[key])
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                errors.append(
                    checks.Error(
                        f"WEBSOCKETS[{key!r}] must be {wanted}, not {value!r}.",
                        id=f"django_aws_api_gateway_websockets.{check_id}",
                    )
                )
    deadline = configured.get("send_throttle_deadline_seconds", 1.0)
    if isinstance(deadline, bool) or not isinstance(deadline, int | float) or deadline < 0:
        errors.append(
            checks.Error(
                "WEBSOCKETS['send_throttle_deadline_seconds'] must be a number of seconds "
                f"(0 or more), not {deadline!r}.",
                hint="How long a fan-out retries throttled posts (default 25).",
                id="django_aws_api_gateway_websockets.E009",
            )
        )
    errors += _check_replay_settings(configured)
    if configured.get("fanout_transport", "auto") not in ("auto", "boto3"):
        errors.append(
            checks.Error(
                "WEBSOCKETS['fanout_transport'] must be 'auto' or 'boto3'.",
                id="django_aws_api_gateway_websockets.E005",
            )
        )
    if configured.get("token_bound_to_session", "auto") not in TOKEN_BINDINGS:
        errors.append(
            checks.Error(
                "WEBSOCKETS['token_bound_to_session'] must be True, False or 'auto', not "
                f"{configured['token_bound_to_session']!r}.",
                hint="'auto' (default) binds a token to the session when the $connect carries "
                "one; unknown values are treated as True.",
                id="django_aws_api_gateway_websockets.E007",
            )
        )
    try:
        parse_limit(configured.get("message_rate_limit", DEFAULTS["message_rate_limit"]))
    except ValueError:
        errors.append(
            checks.Error(
                "WEBSOCKETS['message_rate_limit'] must be (messages, seconds), not "
                f"{configured['message_rate_limit']!r}.",
                hint="For example (120, 60): 120 messages per connection a minute; None or 0 "
                "turns the limit off. Until fixed, the default (120, 60) applies.",
                id="django_aws_api_gateway_websockets.E008",
            )
        )
    origins = configured.get("allowed_origins")
    if origins is not None and (
        isinstance(origins, str)
        or not all(isinstance(o, str) and o.startswith(("http://", "https://")) for o in origins)
    ):
        errors.append(
            checks.Error(
                "WEBSOCKETS['allowed_origins'] must be a list of origins such as "
                "'https://example.com'.",
                id="django_aws_api_gateway_websockets.E004",
            )
        )
    errors.extend(_check_snapstart_rehearsal(configured))
    return errors


def _check_snapstart_rehearsal(configured: dict[str, Any]) -> list[checks.CheckMessage]:
    """Known before deploying, not only in the init log of a published version."""
    from .serverless.snapstart_rehearsal import SESSION_ENGINES

    engine = getattr(settings, "SESSION_ENGINE", "")
    if not configured.get("snapstart_rehearsal") or engine in SESSION_ENGINES:
        return []
    return [
        checks.Warning(
            f"WEBSOCKETS['snapstart_rehearsal'] is on, but SESSION_ENGINE {engine!r} keeps "
            "sessions outside the database: the SnapStart rehearsal will be skipped.",
            hint="Use the db or signed_cookies session engine, or turn the rehearsal off "
            "(serverless-notes.md, SnapStart).",
            id="django_aws_api_gateway_websockets.W004",
        )
    ]


def _check_replay_settings(configured: dict[str, Any]) -> list[checks.CheckMessage]:
    """The replay log's retention and wait: read by the hourly clean-up and after connects,
    where a bad value would only show as a failing scheduled run."""
    errors: list[checks.CheckMessage] = []
    for key, optional in (
        ("replay_max_messages", True),
        ("replay_max_age_seconds", True),
        ("replay_connect_wait_seconds", False),
    ):
        value = configured.get(key, 0)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            wanted = "a number of 0 or more" + (" or None (no limit)" if optional else "")
            errors.append(
                checks.Error(
                    f"WEBSOCKETS[{key!r}] must be {wanted}, not {value!r}.",
                    hint="See docs/reliable_delivery.md#replay-after-reconnects.",
                    id="django_aws_api_gateway_websockets.E010",
                )
            )
    return errors
