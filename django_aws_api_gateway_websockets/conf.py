"""The library's settings: the ``WEBSOCKETS`` dict, read in one place with its defaults."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Tokens one user may request per minute from the token endpoint.
    "token_rate_limit_per_minute": 20,
    # Lifetime of a connection token, in the token response and at validation.
    "token_expiry_seconds": 60,
    # "auto": a $connect that carries a logged-in Django session must redeem a token of that
    # session; one without (a socket host the site's cookies never reach, such as
    # *.execute-api.amazonaws.com) redeems the token on its own. True: always bound (no
    # session, no connect). False: never bound.
    "token_bound_to_session": "auto",
    # Connection attempts allowed per IP address (and per user) in the window.
    "rate_limit_max_attempts": 20,
    "rate_limit_window_minutes": 1,
    # Threads used to post one message to many connections.
    "send_concurrency": 16,
    # Fan-outs through real boto3 clients post signed HTTP requests themselves ("auto"), at
    # most http_concurrency at once per endpoint; "boto3" keeps every post in boto3.
    "fanout_transport": "auto",
    "http_concurrency": 64,
    # Opt-in: a fan-out to more connections than this sends the first batch itself and hands
    # each further batch to an asynchronous invocation of fanout_function_name (default: the
    # running Lambda function). 0: off.
    "fanout_invocation_batch": 0,
    "fanout_function_name": "",
    # Retries of a throttled post_to_connection call (a single send; a fan-out too when
    # send_rate_limit is 0), and the first back-off in seconds.
    "send_max_retries": 5,
    "send_retry_base_delay": 0.05,
    # Largest message (its UTF-8 JSON, in bytes) a send accepts; one over API Gateway's
    # 128 KiB is posted in parts that the browser client reassembles. Larger: ValueError.
    "max_message_bytes": 1_048_576,
    # Posts to @connections per second from this process, every send path together (burst: one
    # second's worth); halved on throttling, recovered 10 % a second. 0: unlimited.
    "send_rate_limit": 3000,
    # With send_rate_limit on, a fan-out retries throttled posts until this many seconds after
    # it began (instead of send_max_retries times); then they count as failed.
    "send_throttle_deadline_seconds": 25.0,
    # Origins (scheme://host[:port]) allowed to open sockets besides the socket's own host and
    # the site that issued the connect's token. None means "use CSRF_TRUSTED_ORIGINS".
    "allowed_origins": None,
    # A handshake without Origin comes from a non-browser client (app, script, device) and is
    # allowed (the token still applies); True refuses it with 403.
    "require_origin": False,
    # Where the Lambda handler delivers WebSocket events; {route} becomes connect, disconnect,
    # default or a custom route key.
    "websocket_path": "/ws/{route}",
    # HTTP integrations only: a secret API Gateway adds as X-Websocket-Integration-Secret, so
    # requests forged straight at the view's URL are refused. Empty: not checked.
    "integration_secret": "",
    # runapigateway verifies the SigV4 signature of @connections requests as AWS does (the
    # project's credentials, service execute-api, its region); False accepts any request.
    "local_gateway_verify_signature": True,
    # Seconds runapigateway keeps a socket that receives nothing from its client before closing
    # it with 1001 "Going away", as API Gateway does after 10 minutes (--idle-timeout wins).
    "local_gateway_idle_timeout": 600.0,
    # Messages one connection may send per number of seconds (a token bucket per connection,
    # in each process; the keepalive ping counts): past it, 429 "Too many messages" and no
    # handler. None or 0: off. WebSocketView.MESSAGE_RATE_LIMIT overrides it per view.
    "message_rate_limit": (120, 60),
    # Seconds runapigateway lets a connection live before closing it with 1001 "Going away",
    # as API Gateway does after 2 hours (--max-duration wins).
    "local_gateway_max_duration": 7200.0,
    # Replay (queryset.broadcast): how many stored messages each channel keeps, and for how
    # long, as clearWebSocketSessions trims them (a channel's newest is always kept). None: no
    # limit of that kind.
    "replay_max_messages": 1000,
    "replay_max_age_seconds": 86400,
    # API Gateway answers 410 to posts until a $connect's handshake completes: how long the
    # replay after a connect with ?since= keeps trying before it takes the connection as gone.
    "replay_connect_wait_seconds": 5.0,
    # SnapStart: before the snapshot, CONNECT and DISCONNECT a made-up user through the
    # project's own view, in a transaction that is rolled back, so that restored copies find
    # that path's caches warm (serverless/snapstart_rehearsal.py says what runs).
    "snapstart_rehearsal": False,
}


def websocket_setting(name: str) -> Any:
    """Return ``settings.WEBSOCKETS[name]``, or the documented default."""
    configured = getattr(settings, "WEBSOCKETS", None) or {}
    if name in configured:
        return configured[name]
    return DEFAULTS[name]


TOKEN_BINDINGS = (True, False, "auto")


def token_binding() -> bool | str:
    """``WEBSOCKETS["token_bound_to_session"]``: True, False or "auto" (checked by E007)."""
    value = websocket_setting("token_bound_to_session")
    return value if value in TOKEN_BINDINGS else True


def allowed_origins() -> list[str]:
    """Origins allowed to connect in addition to the socket's own host."""
    origins = websocket_setting("allowed_origins")
    if origins is None:
        origins = getattr(settings, "CSRF_TRUSTED_ORIGINS", [])
    return list(origins)
