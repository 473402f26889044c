"""Django views that API Gateway WebSocket events are delivered to, and the token endpoint.

``WebSocketView.dispatch`` is a flat sequence of named checks. Every rejection is a 4xx with a
short, generic reason (details go to the log only); nothing a client sends can make it call a
method that is not an allowed message handler.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
import threading
import time
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import DisallowedHost, ImproperlyConfigured
from django.core.mail import mail_admins
from django.db import IntegrityError, router, transaction
from django.db.models import F, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.crypto import constant_time_compare
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from . import message_rate, presence
from .conf import token_binding, websocket_setting
from .endpoints import endpoint_from_event
from .models import (
    TOKEN_PATTERN,
    ApiGateway,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
    get_region_name,
    serialize_on,
)
from .prepared import PreparedGet, PreparedUpdate
from .request_checks import (
    channel_name_valid,
    client_ip,
    host_allowed,
    is_valid_connection_id,
    normalize_origin,
    origin_allowed,
    request_context,
    session_cookie_reaches,
    site_origin,
    valid_since,
)

logger = logging.getLogger(__name__)

# (view class, exception type) -> when its last error mail went out (time.monotonic()).
_LAST_MAIL: dict[tuple[type, type | None], float] = {}
_LAST_MAIL_LOCK = threading.Lock()
# True while the SnapStart rehearsal plays its events: a handler error there mails no one and
# leaves no "last mailed" time in the snapshot (serverless/snapstart_rehearsal.py).
MAIL_MUTED: ContextVar[bool] = ContextVar("websocket_error_mail_muted", default=False)


def _mail_due(view_class: type, error_type: type | None, view: Any) -> bool:
    """Whether this kind of failure may be mailed now (and note that it was)."""
    now = time.monotonic()
    key = (view_class, error_type)
    with _LAST_MAIL_LOCK:
        last = _LAST_MAIL.get(key)
        if last is not None and now - last < float(view.EXCEPTION_MAIL_INTERVAL):
            return False
        _LAST_MAIL[key] = now
        return True


# The statements of every message and disconnect, compiled to SQL once per database: compiling
# them cost more than running them (see prepared.py and bench/event_latency.py).
find_session = PreparedGet(
    lambda connection_id: WebSocketSession.objects.select_related("api_gateway", "user").filter(
        connection_id=connection_id
    )
)
count_request = PreparedUpdate(
    WebSocketSession, "connection_id", request_count=F("request_count") + 1
)
mark_disconnected = PreparedUpdate(WebSocketSession, "connection_id", connected=False)

CONNECT = "connect"
DISCONNECT = "disconnect"
MESSAGE = "message"
INTEGRATION_SECRET_HEADER = "X-Websocket-Integration-Secret"
EVENT_TYPE_ROUTES = {"CONNECT": CONNECT, "DISCONNECT": DISCONNECT, "MESSAGE": MESSAGE}
# The JS client's keepalive: API Gateway closes a connection that carries no message from the
# client for 10 minutes. Answered by the library itself, with no database write.
KEEPALIVE_ACTION = "ping"
PONG = {"type": "pong"}
# {"action": "replay", "since": N}: what the channel broadcast after N, again (the JS client
# asks when it sees a hole in the seqs). Library-provided like the ping.
REPLAY_ACTION = "replay"
# A replay request re-sends up to the channel's whole retained log: (requests, seconds) per
# connection, on top of the message rate limit. The JS client asks once per hole.
REPLAY_REQUESTS = (6, 60.0)
INVALID_SINCE = "Invalid 'since'"


class Rejection(Exception):
    """Raised by a check to end the request with ``response``; carries the log reason."""

    def __init__(self, response: HttpResponse, reason: str) -> None:
        super().__init__(reason)
        self.response = response
        self.reason = reason


def error_response(message: str, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def _is_success(response: HttpResponse) -> bool:
    return 200 <= response.status_code < 300


def too_many_messages(reason: str = "Too many messages") -> JsonResponse:
    """429 for a message past the connection's rate limit; logged once per window by the
    view, so Django must not log every one of a flood's responses again."""
    response = error_response(reason, 429)
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _allowed_client_host(request: HttpRequest) -> str:
    """The handshake's own ``Host`` (port included), if ``ALLOWED_HOSTS`` accepts it, else ""."""
    host = request.headers.get("X-Websocket-Client-Host", "")
    return host if host_allowed(host) else ""


class WebSocketView(View):
    """Base view for API Gateway WebSocket routes: ``connect``, ``disconnect`` and messages.

    Mount it as ``path("ws/<slug:route>", View.as_view())`` (HTTP integration: one URL per
    route) or ``path("ws/", View.as_view())`` (Lambda: the route comes from the event).
    """

    http_method_names = ["post"]

    # Message handlers. None (or empty): "default", ADDITIONAL_ALLOWED_HANDLERS and the public
    # methods the subclasses define themselves.
    ALLOWED_HANDLERS: set[str] | frozenset[str] | list[str] | None = None
    ADDITIONAL_ALLOWED_HANDLERS: set[str] | frozenset[str] | list[str] = frozenset()

    USE_WS_TOKEN = True
    RATE_LIMIT_ENABLED = True
    # None: the WEBSOCKETS settings rate_limit_max_attempts / rate_limit_window_minutes.
    RATE_LIMIT_MAX_ATTEMPTS: int | None = None
    RATE_LIMIT_WINDOW_MINUTES: int | None = None
    # Messages per connection: (messages, seconds), 0 for off, None: the WEBSOCKETS setting
    # message_rate_limit (default (120, 60)). See message_rate.py.
    MESSAGE_RATE_LIMIT: tuple[int, float] | int | None = None
    MAX_BODY_SIZE = 128 * 1024
    CHANNEL_NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
    MAX_CHANNEL_NAME_LENGTH = 191
    # mail_admins when a handler raises (a no-op while ADMINS is empty), at most once per
    # view class and exception type every EXCEPTION_MAIL_INTERVAL seconds: a client sending
    # frames that fail must not be able to flood the admins' mailbox.
    SEND_EXCEPTION_MAIL = True
    EXCEPTION_MAIL_INTERVAL = 60
    # Announce joins and leaves to the channel's other present sessions (presence.py), and
    # count the sessions in WebSocketSession.objects.present_in() / present_users().
    PRESENCE = False

    handler_selection_key = "handler"
    route_selection_key = "action"
    # ``as_view(debug=True)`` while developing: a refusal's log line also names the headers the
    # request arrived with (names only), to see what a tunnel or proxy dropped.
    debug = False

    # When set, only this API Gateway id may call the view.
    aws_api_gateway_id: str | None = None
    expected_useragent_prefix = "AmazonAPIGateway_"
    required_headers: list[str] = [
        "Host",
        "Connectionid",
        "User-Agent",
        "X-Amzn-Apigateway-Api-Id",
    ]
    additional_required_headers: list[str] = []
    # No "Origin": browsers always send one, but mobile apps, scripts and IoT clients do not,
    # and the Origin check exists to stop other sites' pages (WEBSOCKETS["require_origin"]).
    required_connection_headers: list[str] = [
        "Sec-Websocket-Key",
        "Sec-Websocket-Version",
    ]

    # Django permission names ("app_label.codename"): any of / all of. Both apply when both set.
    permissions_required: list[str] = []
    all_permissions_required: list[str] = []

    body: dict[str, Any]
    api_gateway: ApiGateway | None
    websocket_session: WebSocketSession | None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        # API Gateway cannot send a CSRF token; its requests are authenticated by the checks.
        return csrf_exempt(super().as_view(**initkwargs))

    # ----------------------------------------------------------------- dispatch

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.body = {}
        self.api_gateway = None
        self.websocket_session = None
        if request.method is None or request.method.lower() not in self.http_method_names:
            return self.http_method_not_allowed(request, *args, **kwargs)
        route = self.route_for(request, kwargs)
        try:
            if route == CONNECT:
                return self._dispatch_connect(request, *args, **kwargs)
            self._check_gateway_request(request)
            if route == DISCONNECT:
                return self._dispatch_disconnect(request, *args, **kwargs)
            return self._dispatch_message(request, *args, **kwargs)
        except Rejection as rejection:
            logger.warning(
                "WebSocket %s rejected (%s): %s",
                route,
                rejection.response.status_code,
                rejection.reason,
                extra={"connection_id": self.connection_id_header(request), "route": route},
            )
            if self.debug:
                logger.warning(
                    "WebSocket %s request arrived with headers: %s",
                    route,
                    ", ".join(sorted(request.headers.keys())),
                    extra={"connection_id": self.connection_id_header(request), "route": route},
                )
            return rejection.response

    def route_for(self, request: HttpRequest, kwargs: dict[str, Any]) -> str:
        """``connect``, ``disconnect`` or ``message``: from the Lambda event when there is one
        (a custom route named "connect" is still a message), else from the URL."""
        event_type = request_context(request).get("eventType")
        if isinstance(event_type, str) and event_type in EVENT_TYPE_ROUTES:
            return EVENT_TYPE_ROUTES[event_type]
        route = kwargs.get("route")
        return route if route in (CONNECT, DISCONNECT) else MESSAGE

    @staticmethod
    def connection_id_header(request: HttpRequest) -> str:
        return request.headers.get("Connectionid", "")

    # ----------------------------------------------------------------- shared checks

    def _check_gateway_request(self, request: HttpRequest, connecting: bool = False) -> None:
        """Headers, user agent, API id and connection id of a request from API Gateway."""
        expected = [*self.required_headers, *self.additional_required_headers]
        if connecting:
            expected += self.required_connection_headers
        missing = [name for name in expected if not request.headers.get(name)]
        if missing:
            raise Rejection(self.missing_headers(request, missing), f"missing headers {missing}")
        if not self._useragent_valid(request):
            raise Rejection(self.invalid_useragent(request), "unexpected user agent or API id")
        if not self._delivered_by_api_gateway(request):
            raise Rejection(error_response("Forbidden", 403), "not a WebSocket event")
        if not is_valid_connection_id(self.connection_id_header(request)):
            raise Rejection(error_response("Invalid connection id", 400), "bad connection id")

    def _useragent_valid(self, request: HttpRequest) -> bool:
        useragent = request.headers.get("User-Agent", "")
        if not useragent.startswith(self.expected_useragent_prefix):
            return False
        if self.aws_api_gateway_id:
            api_id = request.headers.get("X-Amzn-Apigateway-Api-Id", "")
            expected = f"{self.expected_useragent_prefix}{self.aws_api_gateway_id}"
            return useragent == expected and api_id == self.aws_api_gateway_id
        return True

    def _delivered_by_api_gateway(self, request: HttpRequest) -> bool:
        """Lambda: the event must be a WebSocket event of this connection, not an HTTP event
        with forged headers. HTTP integration: the integration's shared secret, if set."""
        context = request_context(request)
        if context or "apig_wsgi.full_event" in request.META:
            # Delivered by the Lambda handler: only a WebSocket event of this connection counts.
            return (
                context.get("eventType") in ("CONNECT", "MESSAGE", "DISCONNECT")
                and context.get("connectionId") == self.connection_id_header(request)
                and context.get("apiId") == request.headers.get("X-Amzn-Apigateway-Api-Id")
            )
        secret = websocket_setting("integration_secret")
        if not secret:
            return True
        offered = request.headers.get(INTEGRATION_SECRET_HEADER, "")
        return constant_time_compare(offered, secret)

    def _check_permissions(self, request: HttpRequest) -> None:
        if not (self.has_any_permission(request) and self.has_all_permission(request)):
            raise Rejection(self.permission_denied(request), "missing permission")

    # ----------------------------------------------------------------- connect

    def _dispatch_connect(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        ip_address = client_ip(request)
        if not self._delivered_by_api_gateway(request):
            # Not from API Gateway at all (forged, or a wrong integration secret): its address
            # is unverified, so it must not count against, or lock out, anyone.
            raise Rejection(error_response("Forbidden", 403), "not a WebSocket event")
        user = self._session_user(request)
        # Counted and recorded in one step, so a burst cannot slip past the limit; refusals
        # below turn the recorded attempt into a failed one.
        attempt = self._admit(ip_address, user)
        try:
            self._check_gateway_request(request, connecting=True)
            vouch_for_origin = self._check_host_and_origin(request)
            user = self._check_token(request, user, vouch_for_origin)
            request.user = user if user is not None else request_user_or_anonymous(request)
            self._check_permissions(request)
            ok, message = self._additional_connection_checks(request, *args, **kwargs)
            if not ok:
                raise Rejection(error_response(message or "Connection refused", 403), message)
            channel_name = self._check_channel(request)
            since = self._check_since(request)
            response = self._store_connection(request, channel_name, user, *args, **kwargs)
        except Rejection:
            self._attempt_failed(attempt, ip_address, user)
            raise
        if not _is_success(response):
            self._attempt_failed(attempt, ip_address, user)
            return response
        self._store_learned_endpoint()
        if attempt is None:
            ConnectionRateLimit.record_attempt(ip_address, user=user, successful=True)
        elif user is not None and attempt.user_id != user.pk:
            # An unbound token named the user the session did not: count it against them.
            ConnectionRateLimit.objects.filter(pk=attempt.pk).update(user=user)
        if since is not None:
            self._schedule_replay(request, channel_name, since)
        return response

    def _check_since(self, request: HttpRequest) -> int | None:
        """``?since=<seq>``: None when absent (live only); 400 unless 1 to 18 digits."""
        raw = request.GET.get("since")
        if raw is None:
            return None
        since = valid_since(raw)
        if since is None:
            raise Rejection(error_response(INVALID_SINCE, 400), f"bad since {raw[:40]!r}")
        return since

    def _schedule_replay(self, request: HttpRequest, channel_name: str, since: int) -> None:
        """After the connect commits (the deliverer reads the session from another connection
        or invocation): what the channel broadcast after ``since``, to this connection."""
        connection_id = self.connection_id_header(request)

        def schedule() -> None:
            from . import replay

            replay.schedule(connection_id, channel_name, since, presence=self.PRESENCE)

        transaction.on_commit(schedule, using=router.db_for_write(WebSocketSession))

    def _admit(self, ip_address: str, user: Any) -> ConnectionRateLimit | None:
        """The recorded attempt, or None when rate limiting is off; 429 beyond the limit."""
        if not self.RATE_LIMIT_ENABLED:
            return None
        max_attempts = self.RATE_LIMIT_MAX_ATTEMPTS or websocket_setting("rate_limit_max_attempts")
        window = self.RATE_LIMIT_WINDOW_MINUTES or websocket_setting("rate_limit_window_minutes")
        allowed, count, attempt = ConnectionRateLimit.admit(
            ip_address, user=user, max_attempts=max_attempts, window_minutes=window
        )
        if not allowed:
            raise Rejection(
                error_response("Too many connection attempts", 429),
                f"rate limit: {count} attempts from {ip_address}",
            )
        return attempt

    def _attempt_failed(self, attempt: ConnectionRateLimit | None, ip_address: str, user: Any):
        if attempt is not None:
            attempt.mark_failed()
        else:
            ConnectionRateLimit.record_attempt(ip_address, user=user, successful=False)

    def _session_user(self, request: HttpRequest) -> Any:
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None

    def _check_host_and_origin(self, request: HttpRequest) -> str | None:
        """400 for a disallowed host; 403 for an Origin that can never be allowed. Returns the
        Origin (normalised) when only the connect's token can vouch for it: a page of the site
        that issued the token, on another host than the socket's (the deployed topology)."""
        try:
            host = request.get_host()
        except DisallowedHost:
            raise Rejection(error_response("Host not allowed", 400), "host not allowed") from None
        origin = request.headers.get("Origin")
        if not origin:
            # Not a browser: no other site's page can be behind it. The token still applies.
            if websocket_setting("require_origin"):
                raise Rejection(error_response("Origin required", 403), "no Origin header")
            return None
        if origin_allowed(origin, host, request.is_secure()):
            return None
        normalized = normalize_origin(origin)
        if normalized is None or not self.USE_WS_TOKEN or not request.GET.get("ws_token"):
            raise Rejection(error_response("Origin not allowed", 403), f"origin {origin!r}")
        return normalized

    def _check_token(self, request: HttpRequest, user: Any, origin: str | None = None) -> Any:
        """The token's user when tokens are required, else the session's user (or None).

        ``origin``: the token must have been issued by this origin (see
        ``_check_host_and_origin``)."""
        if not self.USE_WS_TOKEN:
            return user
        token = request.GET.get("ws_token", "")
        if not token:
            raise Rejection(error_response("Token required", 401), "no ws_token")
        session = getattr(request, "session", None)
        binding = token_binding()
        # "auto": bound when the handshake carries a logged-in session, or when the site's
        # cookie reaches this host (then a handshake without it is not one of the site's
        # browsers); a socket host the cookie never reaches redeems the token on its own.
        if binding == "auto":
            bound = user is not None or session_cookie_reaches(request.get_host())
        else:
            bound = bool(binding)
        token_user = WebSocketToken.validate_and_consume(
            token_value=token,
            session_key=getattr(session, "session_key", None),
            max_age_seconds=int(websocket_setting("token_expiry_seconds")),
            bind_to_session=bound,
            # A bound token belongs to the session's user, already loaded: no second query.
            user=user if bound else None,
            origin=origin,
        )
        if token_user is None:
            if origin is not None:
                self._check_issuing_origin(token, origin)
            raise Rejection(error_response("Invalid or expired token", 401), "token rejected")
        return token_user

    def _check_issuing_origin(self, token: str, origin: str) -> None:
        """After a failed redemption: 403 unless this origin issued the token (then the token
        itself is the problem: used or expired), with the origin to configure in the log."""
        issued_by = (
            WebSocketToken.objects.filter(token=token).values_list("origin", flat=True).first()
            if TOKEN_PATTERN.fullmatch(token)
            else None
        )
        if issued_by != origin:
            issuer = f"token issued by {issued_by!r}" if issued_by is not None else "unknown token"
            raise Rejection(
                error_response("Origin not allowed", 403),
                f"origin {origin!r}: not the socket's host, not in allowed_origins, {issuer}",
            )

    def _check_channel(self, request: HttpRequest) -> str:
        requested = (
            request.GET.get("channel") or self._connecting_gateway(request).default_channel_name
        )
        if not channel_name_valid(
            requested, self.CHANNEL_NAME_PATTERN, self.MAX_CHANNEL_NAME_LENGTH
        ):
            raise Rejection(error_response("Invalid channel name", 400), "bad channel name")
        if not self.is_channel_allowed(request, requested):
            raise Rejection(error_response("Channel not allowed", 403), f"channel {requested!r}")
        return requested

    def _connecting_gateway(self, request: HttpRequest) -> ApiGateway:
        if self.api_gateway is None:
            api_id = request.headers.get("X-Amzn-Apigateway-Api-Id", "")
            gateway = ApiGateway.objects.filter(api_id=api_id).first() if api_id else None
            if gateway is None:
                raise Rejection(error_response("Unknown API", 403), f"no gateway {api_id!r}")
            self._learn_management_endpoint(request, gateway)
            self.api_gateway = gateway
        return self.api_gateway

    def _learn_management_endpoint(self, request: HttpRequest, gateway: ApiGateway) -> None:
        """Under Lambda, a gateway without an explicit endpoint gets the one of its events:
        the execute-api URL on AWS, the emulator itself elsewhere (see endpoints.py)."""
        context = request_context(request)
        if gateway.management_endpoint_url or not context:
            return
        try:
            region = get_region_name()
        except ImproperlyConfigured:
            region = ""
        endpoint = endpoint_from_event(
            str(context.get("domainName", "")),
            gateway.api_id,
            str(context.get("stage", "")),
            region,
            client_host=_allowed_client_host(request),
            client_scheme=request.headers.get("X-Websocket-Client-Proto", ""),
        )
        if endpoint:
            # Used by this connect's own sends at once, stored only once the connect succeeds.
            gateway.management_endpoint_url = endpoint
            self._learned_endpoint = endpoint

    def _store_learned_endpoint(self) -> None:
        """After a successful connect: keep the endpoint it taught, unless one is stored."""
        endpoint, gateway = getattr(self, "_learned_endpoint", ""), self.api_gateway
        if endpoint and gateway is not None:
            ApiGateway.objects.filter(pk=gateway.pk, management_endpoint_url="").update(
                management_endpoint_url=endpoint
            )
            logger.info("API %s: management endpoint learned: %s", gateway.api_id, endpoint)

    def _store_connection(
        self, request: HttpRequest, channel_name: str, user: Any, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        gateway = self._connecting_gateway(request)
        connection_id = self.connection_id_header(request)
        try:
            with transaction.atomic():
                self.websocket_session = WebSocketSession.objects.create(
                    connection_id=connection_id,
                    channel_name=channel_name,
                    user=user,
                    api_gateway=gateway,
                    presence=self.PRESENCE,
                )
                if self.PRESENCE:
                    # Sent once this commits (a refused connect sends nothing); the connection
                    # cannot receive until its $connect completes (410), so it is left out.
                    presence.announce(
                        [presence.begin(self.websocket_session)],
                        self.presence_audience,
                        exclude=connection_id,
                    )
                response = self._run_handler(self.connect, request, *args, **kwargs)
                if not _is_success(response):
                    # The connect hook refused: API Gateway will drop the socket, keep no row.
                    transaction.set_rollback(True)
        except IntegrityError:
            raise Rejection(
                error_response("Connection already exists", 409), "duplicate connection id"
            ) from None
        return response

    # ----------------------------------------------------------------- disconnect

    def _dispatch_disconnect(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        session = self._find_session(request)
        if session is None:
            connection_id = self.connection_id_header(request)
            logger.info("Disconnect of unknown connection %s", connection_id)
            # API Gateway does not order a connection's events: this $disconnect may have
            # overtaken its $connect. Remember the id as disconnected, so a late $connect finds
            # it taken (409) instead of leaving a session that no socket stands behind.
            WebSocketSession.objects.bulk_create(
                [WebSocketSession(connection_id=connection_id, connected=False)],
                ignore_conflicts=True,
            )
            return JsonResponse({"status": "disconnected"})
        self._use_session(request, session)
        mark_disconnected(session.connection_id)
        session.connected = False
        if session.presence:
            presence.announce([presence.end(session)], self.presence_audience)
        return self._run_handler(self.disconnect, request, *args, **kwargs)

    # ----------------------------------------------------------------- messages

    def _dispatch_message(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.body = self._parse_body(request)
        session = self._find_session(request)
        if session is None or not session.connected:
            raise Rejection(error_response("Unknown connection", 403), "unknown connection")
        self._use_session(request, session)
        if session.user is not None and not session.user.is_active:
            raise Rejection(error_response("Forbidden", 403), "user deactivated")
        if not self._message_admitted(session):
            return too_many_messages()
        self._check_permissions(request)
        if self._is_keepalive():
            # Every check above still applied (and API Gateway's throttling counts it as any
            # message); only the request_count UPDATE is skipped, so an idle tab costs one read.
            return JsonResponse(PONG)
        if self._is_replay_request():
            count_request(session.connection_id)
            return self._run_handler(self._replay_missed, request, *args, **kwargs)
        handler = self._select_handler(request)
        count_request(session.connection_id)
        return self._run_handler(handler, request, *args, **kwargs)

    def _parse_body(self, request: HttpRequest) -> dict[str, Any]:
        declared = request.META.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit():
            raise Rejection(error_response("Invalid Content-Length", 400), "bad content length")
        if int(declared) > self.MAX_BODY_SIZE:
            raise Rejection(error_response("Message too large", 413), "body too large")
        raw = request.body
        if len(raw) > self.MAX_BODY_SIZE:
            raise Rejection(error_response("Message too large", 413), "body too large")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise Rejection(error_response("Message must be JSON", 400), "bad JSON") from None
        if not isinstance(body, dict):
            raise Rejection(error_response("Message must be a JSON object", 400), "not an object")
        return body

    def _find_session(self, request: HttpRequest) -> WebSocketSession | None:
        """The session of this connection, if it belongs to the calling API."""
        session = find_session(self.connection_id_header(request))
        if session is None or session.api_gateway is None:
            return session
        calling_api = request.headers.get("X-Amzn-Apigateway-Api-Id", "")
        if session.api_gateway.api_id and calling_api != session.api_gateway.api_id:
            raise Rejection(error_response("Unknown connection", 403), "connection of another API")
        return session

    def _use_session(self, request: HttpRequest, session: WebSocketSession) -> None:
        self.websocket_session = session
        self.api_gateway = session.api_gateway
        # Messages carry no cookies over Lambda: the user is the one who connected.
        request.user = session.user or request_user_or_anonymous(request)

    def _message_admitted(self, session: WebSocketSession) -> bool:
        """The connection's message rate limit: False past it (pings count, so a ping flood is
        refused like any other), with one WARNING per connection per window, not per frame."""
        limit = message_rate.limit_for(self.MESSAGE_RATE_LIMIT)
        if limit is None:
            return True
        verdict = message_rate.limiter.take(session.connection_id, *limit)
        if verdict.warn:
            logger.warning(
                "Connection %s went over its limit of %d messages per %g s: its messages are "
                "refused (429) until it slows down",
                session.connection_id,
                *limit,
                extra={"connection_id": session.connection_id, "route": MESSAGE},
            )
        return verdict.allowed

    def _is_keepalive(self) -> bool:
        """``{"action": "ping"}`` with no handler key, on a view without its own ``ping``
        handler (a project's handler of that name keeps its messages)."""
        return (
            self.body.get(self.route_selection_key) == KEEPALIVE_ACTION
            and self.handler_selection_key not in self.body
            and KEEPALIVE_ACTION not in self.allowed_handler_names()
        )

    def _is_replay_request(self) -> bool:
        """``{"action": "replay"}`` with no handler key, on a view without its own ``replay``
        handler (as for the keepalive, a project's handler of that name keeps its messages)."""
        return (
            self.body.get(self.route_selection_key) == REPLAY_ACTION
            and self.handler_selection_key not in self.body
            and REPLAY_ACTION not in self.allowed_handler_names()
        )

    def _replay_missed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """The replay action: delivered now, to this open connection, from its channel."""
        since = valid_since(self.body.get("since"))
        if since is None:
            logger.warning(
                "Replay refused: bad since %r",
                str(self.body.get("since"))[:40],
                extra={"connection_id": self.connection_id_header(request)},
            )
            return error_response(INVALID_SINCE, 400)
        session = self.websocket_session
        assert session is not None
        # The log is the channel's: whoever the view still lets into the channel may read it
        # (someone removed from a private room keeps their socket, not the room's history).
        if not self.is_channel_allowed(request, session.channel_name):
            logger.warning(
                "Replay refused: channel %s not allowed",
                session.channel_name,
                extra={"connection_id": session.connection_id},
            )
            return error_response("Channel not allowed", 403)
        verdict = message_rate.limiter.take(f"replay:{session.connection_id}", *REPLAY_REQUESTS)
        if not verdict.allowed:
            if verdict.warn:
                logger.warning(
                    "Connection %s asked for more than %d replays per %g s: refused (429)",
                    session.connection_id,
                    *REPLAY_REQUESTS,
                    extra={"connection_id": session.connection_id},
                )
            return too_many_messages("Too many replay requests")
        from . import aws, replay

        try:
            replay.deliver(session.connection_id, session.channel_name, since, connect_wait=0)
        except aws.errors() as error:
            logger.warning(
                "Replay to %s failed: %s",
                session.connection_id,
                aws.describe(error),
                extra={"connection_id": session.connection_id},
            )
            return error_response("Replay failed, try again later", 503)
        return JsonResponse({})

    def _select_handler(self, request: HttpRequest) -> Any:
        keys = (self.handler_selection_key, self.route_selection_key)
        if not any(key in self.body for key in keys):
            raise Rejection(self.handler_selection_key_missing(request), "no handler key")
        allowed = self.allowed_handler_names()
        for key in keys:
            name = self.body.get(key)
            if isinstance(name, str) and name in allowed:
                return getattr(self, name)
        return self.default

    @classmethod
    def allowed_handler_names(cls) -> frozenset[str]:
        """Method names a message may select; lifecycle and framework methods never qualify."""
        if cls.ALLOWED_HANDLERS:  # empty, as the original's default set(), is automatic too
            names = set(cls.ALLOWED_HANDLERS)
        else:
            names = {"default"}
            for klass in cls.__mro__:
                # Only the WebSocketView subclasses themselves: a mixin's public methods
                # (Django's or the app's) are not message handlers unless listed.
                if klass is WebSocketView or not issubclass(klass, WebSocketView):
                    continue
                names.update(
                    name for name, value in vars(klass).items() if inspect.isfunction(value)
                )
        names.update(cls.ADDITIONAL_ALLOWED_HANDLERS)
        return frozenset(
            name
            for name in names
            if isinstance(name, str)
            and not name.startswith("_")
            and name not in RESERVED_NAMES
            and callable(getattr(cls, name, None))
        )

    def _run_handler(self, handler: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """Call a handler; one that returns nothing answers ``{}`` (handlers that only send,
        as the original package's documentation writes them, end with ``return None``)."""
        try:
            response = handler(request, *args, **kwargs)
            return JsonResponse({}) if response is None else response
        except Exception:
            logger.exception(
                "WebSocket handler %s failed",
                getattr(handler, "__name__", handler),
                extra={"connection_id": self.connection_id_header(request)},
            )
            if (
                self.SEND_EXCEPTION_MAIL
                and not MAIL_MUTED.get()
                and _mail_due(type(self), sys.exc_info()[0], self)
            ):
                mail_admins(
                    "WebSocket handler error",
                    f"Handler {getattr(handler, '__name__', handler)} raised; see the logs for "
                    f"connection {self.connection_id_header(request)}.",
                    fail_silently=True,
                )
            response = error_response("Internal error", 500)
            # Logged (with traceback) above; keep Django from logging and mailing it again.
            response._has_been_logged = True  # type: ignore[attr-defined]
            return response

    # ----------------------------------------------------------------- hooks

    def connect(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Called after the session is stored; a non-2xx response refuses the connection."""
        return JsonResponse({"status": "connected"})

    def disconnect(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Called after the session is marked disconnected."""
        return JsonResponse({"status": "disconnected"})

    def default(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Handles messages that name no allowed handler. Override it."""
        return error_response("Unknown handler", 400)

    def change_channel(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """Move this connection to ``body["channel"]`` (a handler only when allowed)."""
        channel = self.body.get("channel")
        if not isinstance(channel, str) or not channel_name_valid(
            channel, self.CHANNEL_NAME_PATTERN, self.MAX_CHANNEL_NAME_LENGTH
        ):
            return error_response("A valid 'channel' is required", 400)
        if not self.is_channel_allowed(request, channel):
            return error_response("Channel not allowed", 403)
        session = self.websocket_session
        assert session is not None
        present = session.presence or self.PRESENCE
        if session.presence:
            # A leave of the old channel, then a join of the new one, each once committed.
            presence.announce([presence.end(session)], self.presence_audience)
        with transaction.atomic(using=router.db_for_write(WebSocketSession)):
            session.channel_name = channel
            session.presence = present
            session.save(update_fields=["channel_name", "presence", "updated_on"])
            if session.presence:
                presence.announce(
                    [presence.begin(session)], self.presence_audience, session.connection_id
                )
        return JsonResponse({"channel": channel})

    def presence_audience(self, channel_name: str) -> QuerySet[WebSocketSession]:
        """The sessions that may hear ``channel_name``'s joins and leaves (of those present
        in it). Default: all of them; narrow it, as for any send, e.g. to a room's members."""
        return WebSocketSession.objects.all()

    def is_channel_allowed(self, request: HttpRequest, channel_name: str) -> bool:
        """Object-level access: may ``request.user`` join ``channel_name``? Default: yes."""
        return True

    def permission_denied(self, request: HttpRequest) -> HttpResponse:
        return error_response("Permission denied", 403)

    def missing_headers(self, request: HttpRequest, missing: list[str]) -> HttpResponse:
        return error_response("Missing required headers", 400)

    def invalid_useragent(self, request: HttpRequest) -> HttpResponse:
        return error_response("Forbidden", 403)

    def handler_selection_key_missing(self, request: HttpRequest) -> HttpResponse:
        return error_response(
            f"Message needs a '{self.handler_selection_key}' or '{self.route_selection_key}' key",
            400,
        )

    def has_any_permission(self, request: HttpRequest) -> bool:
        if not self.permissions_required:
            return True
        user = request.user
        return any(user.has_perm(permission) for permission in self.permissions_required)

    def has_all_permission(self, request: HttpRequest) -> bool:
        if not self.all_permissions_required:
            return True
        return request.user.has_perms(self.all_permissions_required)

    def _additional_connection_checks(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> tuple[bool, str]:
        """Extra connect-time checks for subclasses: ``(ok, reason shown to the client)``."""
        return True, ""


def request_user_or_anonymous(request: HttpRequest) -> Any:
    from django.contrib.auth.models import AnonymousUser

    user = getattr(request, "user", None)
    return user if user is not None else AnonymousUser()


# Everything WebSocketView and Django's View define is framework, not a message handler, except
# the two handlers the library provides.
RESERVED_NAMES = frozenset(dir(WebSocketView)) - {"default", "change_channel"}


@method_decorator([csrf_protect, never_cache], name="dispatch")
class WebSocketTokenView(View):
    """POST: a one-time token for opening a WebSocket, for the logged-in user's session.

    The token records the origin of the site that issued it (this request's scheme and host,
    behind CSRF protection), so pages of this site may use it on a socket of another host."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return error_response("Authentication required", 403)
        limit = int(websocket_setting("token_rate_limit_per_minute"))
        if not request.session.session_key:
            request.session.save()
        alias = router.db_for_write(WebSocketToken)
        with transaction.atomic(using=alias):
            # One user's concurrent requests queue here, so a burst cannot exceed the limit.
            serialize_on(alias, f"websocket-token-user:{user.pk}")
            if not WebSocketToken.check_rate_limit(user, max_tokens_per_minute=limit):
                logger.warning("Token rate limit hit by user %s", user.pk)
                return error_response("Too many token requests", 403)
            token = WebSocketToken.generate_token(
                user=user, session_key=request.session.session_key, origin=site_origin(request)
            )
        return JsonResponse(
            {"token": token.token, "expires_in": int(websocket_setting("token_expiry_seconds"))}
        )
