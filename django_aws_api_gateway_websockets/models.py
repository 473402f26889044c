"""Database models, plus the two documented AWS helpers.

``get_boto3_client`` is the single patch point for AWS access: sending, fan-out and gateway
provisioning all reach it through ``aws.client``, which looks it up here at call time, so one
``mock.patch`` of ``django_aws_api_gateway_websockets.models.get_boto3_client`` intercepts
them all. The clients themselves are made in ``aws``.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections, models, router, transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import aws, naming, provisioning

if TYPE_CHECKING:
    from .sending import SendReport

TOKEN_PATTERN = re.compile(r"^[0-9a-f]{64}$")
# API Gateway closes every connection after 2 hours: an older session missed its $disconnect.
MAX_CONNECTION_SECONDS = 7200


def get_region_name() -> str:
    """The AWS region of the API Gateway: ``AWS_GATEWAY_REGION_NAME``, else ``AWS_REGION_NAME``."""
    return aws.region_from_settings()


def get_boto3_client(service: str = "apigatewayv2", **kwargs: Any) -> Any:
    """A boto3 client for ``service``, using the credentials the settings name.

    ``AWS_IAM_PROFILE`` selects a named profile; otherwise ``AWS_ACCESS_KEY_ID`` and
    ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``, if set) are used when both are set;
    otherwise boto3's default chain (the Lambda execution role). Extra keyword arguments go to
    ``Session.client``. The library calls this through ``aws.client``, at call time.
    """
    return aws.new_client(service, **kwargs)


def validate_endpoint_url(value: str) -> None:
    """Accept any http(s) URL with a host, including dot-less hosts such as ``testserver``."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError("Enter an http:// or https:// URL with a host name.")


class ApiGateway(models.Model):
    """One API Gateway WebSocket API, its stage and (optionally) its custom domain."""

    api_name = models.CharField(max_length=128, unique=True)
    api_description = models.TextField(blank=True, default="")
    default_channel_name = models.CharField(
        max_length=255,
        default="default",
        help_text="Channel for connections that do not ask for one with ?channel=.",
    )
    domain_name = models.CharField(
        max_length=253, blank=True, default="", help_text="Custom domain, e.g. ws.example.com."
    )
    target_base_endpoint = models.CharField(
        max_length=512,
        blank=True,
        default="",
        validators=[validate_endpoint_url],
        help_text="HTTP integration: base URL of the WebSocket view, e.g. https://example.com/ws/.",
    )
    lambda_function_arn = models.CharField(
        max_length=256,
        blank=True,
        default="",
        help_text="Lambda integration: ARN of the function that serves the routes. "
        "When set it is used instead of target_base_endpoint.",
    )
    management_endpoint_url = models.CharField(
        max_length=512,
        blank=True,
        default="",
        validators=[validate_endpoint_url],
        help_text="Where replies are posted (@connections API). Blank: derived from the API id, "
        "region and stage.",
    )
    certificate_arn = models.CharField(max_length=256, blank=True, default="")
    hosted_zone_id = models.CharField(max_length=64, blank=True, default="")
    api_key_selection_expression = models.CharField(
        max_length=128, default="$request.header.x-api-key"
    )
    route_selection_expression = models.CharField(max_length=128, default="$request.body.action")
    route_key = models.CharField(max_length=128, default="$default")
    stage_name = models.CharField(max_length=128, default="production")
    stage_description = models.TextField(blank=True, default="")
    deployment_id = models.CharField(max_length=64, blank=True, default="")
    tags = models.JSONField(default=dict, blank=True)
    api_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    api_endpoint = models.CharField(max_length=512, blank=True, default="")
    api_gateway_domain_name = models.CharField(max_length=253, blank=True, default="")
    api_mapping_id = models.CharField(max_length=64, blank=True, default="")
    api_created = models.BooleanField(default=False)
    custom_domain_created = models.BooleanField(default=False)
    created_on = models.DateTimeField(auto_now_add=True)
    updated_on = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "API Gateway"
        verbose_name_plural = "API Gateways"

    def __str__(self) -> str:
        return self.api_name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Names are checked here too (not only in forms), as the original package did, so code
        creating rows cannot store a name AWS would refuse; saves of other fields skip it."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None or {"api_name", "stage_name", "domain_name"} & set(update_fields):
            self.clean()
        if self.target_base_endpoint and not self.target_base_endpoint.endswith("/"):
            self.target_base_endpoint += "/"
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """The names AWS is sent must follow AWS's rules (``naming``): a bad value is an
        error on its field here, not an AWS error halfway through ``create_gateway()``."""
        super().clean()
        problems = {
            "api_name": naming.api_name_problem(self.api_name),
            "stage_name": naming.stage_name_problem(self.stage_name),
            "domain_name": naming.domain_name_problem(self.domain_name) if self.domain_name else "",
        }
        errors = {field: problem for field, problem in problems.items() if problem}
        if errors:
            raise ValidationError(errors)

    @classmethod
    def register_local(
        cls,
        api_id: str,
        api_name: str,
        stage_name: str,
        api_endpoint: str,
        management_endpoint_url: str,
    ) -> ApiGateway:
        """Create or update the record of a local emulator (``runapigateway``,
        serverless-offline): its events find it by ``api_id``, sends go to
        ``management_endpoint_url``, pages connect to ``api_endpoint``/``stage_name``."""
        record, _ = cls.objects.update_or_create(
            api_id=api_id,
            defaults={
                "api_name": api_name,
                "stage_name": stage_name,
                "api_endpoint": api_endpoint,
                "management_endpoint_url": management_endpoint_url,
            },
        )
        return record

    @property
    def uses_lambda(self) -> bool:
        """True when API Gateway invokes a Lambda function instead of an HTTP endpoint."""
        return bool(self.lambda_function_arn)

    @property
    def management_endpoint(self) -> str:
        """Base URL of the @connections API that replies are posted to."""
        return aws.management_endpoint_for(
            self.management_endpoint_url, self.api_id, self.stage_name
        )

    def integration_url(self, route_name: str) -> str:
        """The HTTP integration URL of one route: target base endpoint plus the route name."""
        return f"{self.target_base_endpoint}{route_name.lstrip('/')}"

    def create_gateway(self) -> None:
        """Create (or finish creating) the API, integrations, routes, stage and deployment."""
        provisioning.create_gateway(self)

    def create_custom_domain(self) -> None:
        """Create the custom domain name and map it to this API's stage."""
        provisioning.create_custom_domain(self)

    def deploy_api(self, client: Any) -> str:
        """Deploy the stage with ``client`` and store the new deployment id."""
        return provisioning.deploy_api(self, client)


class ApiGatewayAdditionalRoute(models.Model):
    """A custom route (besides $connect, $disconnect and $default) of an API Gateway."""

    api_gateway = models.ForeignKey(
        ApiGateway, on_delete=models.CASCADE, related_name="additional_routes"
    )
    name = models.CharField(max_length=128)
    route_key = models.CharField(max_length=128)
    integration_url = models.CharField(
        max_length=512,
        blank=True,
        default="",
        validators=[validate_endpoint_url],
        help_text="HTTP integration URL. Blank: the gateway's target base endpoint plus the "
        "route key.",
    )
    deployed = models.BooleanField(default=False)
    created_on = models.DateTimeField(auto_now_add=True)
    updated_on = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "additional route"
        constraints = [
            models.UniqueConstraint(
                fields=["api_gateway", "route_key"], name="unique_route_key_per_gateway"
            )
        ]

    def __str__(self) -> str:
        # The name alone, as in the original package; it needs no gateway (an unsaved inline
        # row or a form's instance has none yet).
        return self.name or self.route_key

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        if self.api_gateway.api_created and not self.deployed:
            provisioning.create_route_in_aws(self)

    def create_route(self, client: Any, deploy: bool = True) -> None:
        """Create this route (and its integration) in AWS; redeploy the stage if ``deploy``."""
        provisioning.create_additional_route(self, client, deploy=deploy)


def _sending() -> ModuleType:
    """The send machinery, imported on the first send: it brings asyncio, ssl and threads
    (~0.1 s of import) that answering a CONNECT never needs."""
    from . import sending

    return sending


def _replay() -> ModuleType:
    """Replay's publishing and delivery, imported on the first broadcast (it needs the send
    machinery, which a CONNECT without ``since`` never does)."""
    from . import replay

    return replay


class WebSocketSessionQuerySet(models.QuerySet):
    def send_message(self, data: Any) -> SendReport:
        """Send ``data`` as JSON to every connected session in this queryset, concurrently."""
        return _sending().send_to_sessions(self, data)

    def broadcast(self, channel_name: str, data: dict[str, Any]) -> SendReport:
        """Store ``data`` in ``channel_name``'s replay log with the next ``seq`` and send it,
        stamped ``{"seq": N, ...}``, to this queryset's connected sessions in that channel.

        ``WebSocketSession.objects.broadcast(channel, data)`` is the whole channel; a filtered
        queryset is a private audience (the seq still numbers the channel). ``data`` must be a
        dict without a "seq" key (else ``ValueError``). The report's ``seq`` is the number.
        """
        return _replay().broadcast(self, channel_name, data)

    def present_in(self, channel_name: str) -> WebSocketSessionQuerySet:
        """The sessions present in ``channel_name``: connected, stored by a view with
        ``PRESENCE`` on, and younger than API Gateway's 2-hour maximum (a missed
        ``$disconnect`` cannot keep anyone present past it)."""
        cutoff = timezone.now() - timedelta(seconds=MAX_CONNECTION_SECONDS)
        return self.filter(
            channel_name=channel_name, connected=True, presence=True, created_on__gt=cutoff
        )

    def present_users(self, channel_name: str) -> list[str]:
        """The sorted usernames present in ``channel_name`` (anonymous sessions not listed)."""
        from django.contrib.auth import get_user_model

        names = (
            self.present_in(channel_name)
            .filter(user__isnull=False)
            .values_list(f"user__{get_user_model().USERNAME_FIELD}", flat=True)
            .distinct()
        )
        return sorted(names)


class WebSocketSession(models.Model):
    """One open (or recently closed) WebSocket connection."""

    connection_id = models.CharField(max_length=128, unique=True)
    channel_name = models.CharField(max_length=255, blank=True, default="", db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="websocket_sessions",
    )
    connected = models.BooleanField(default=True)
    api_gateway = models.ForeignKey(
        ApiGateway, null=True, blank=True, on_delete=models.CASCADE, related_name="sessions"
    )
    request_count = models.PositiveIntegerField(default=0)
    # Joins and leaves of this connection are announced to its channel (the view's PRESENCE).
    presence = models.BooleanField(default=False)
    created_on = models.DateTimeField(auto_now_add=True)
    updated_on = models.DateTimeField(auto_now=True)

    objects = WebSocketSessionQuerySet.as_manager()

    class Meta:
        verbose_name = "WebSocket session"
        indexes = [models.Index(fields=["channel_name", "connected"], name="ws_session_channel")]

    def __str__(self) -> str:
        return self.connection_id

    def send_message(self, data: Any) -> dict[str, Any] | None:
        """Send ``data`` as JSON to this connection and return the ``post_to_connection``
        response, or None when the connection is gone (it is then marked disconnected)."""
        return _sending().send_to_session(self, data)


class ChannelMessage(models.Model):
    """One stored broadcast of a channel, kept for replay to clients that reconnect.

    ``seq`` numbers a channel's broadcasts 1, 2, 3...; ``payload`` is the message as JSON
    text without its ``seq`` (added when it is sent). The clean-up trims old rows by count
    and age but always keeps a channel's newest, so numbering never starts over.
    """

    channel_name = models.CharField(max_length=255)
    seq = models.PositiveBigIntegerField()
    payload = models.TextField()
    created_on = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "channel message"
        constraints = [
            models.UniqueConstraint(fields=["channel_name", "seq"], name="ws_channel_message_seq")
        ]

    def __str__(self) -> str:
        return f"{self.channel_name} #{self.seq}"


class WebSocketToken(models.Model):
    """A short-lived, single-use token that lets a logged-in browser open a socket."""

    token = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="websocket_tokens"
    )
    session_key = models.CharField(max_length=64)
    # scheme://host[:port] of the site that issued it: a page of that origin may redeem it
    # on a socket host of another origin.
    origin = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    used = models.BooleanField(default=False)

    class Meta:
        verbose_name = "WebSocket token"
        indexes = [models.Index(fields=["user", "created_at"], name="ws_token_user_created")]

    def __str__(self) -> str:
        return f"{self.token[:8]}… ({self.user})"

    @classmethod
    def generate_token(cls, user: Any, session_key: str, origin: str = "") -> WebSocketToken:
        """Create a fresh random token for ``user`` and their Django session, issued by the
        site at ``origin`` (``request_checks.site_origin(request)``; empty: none). An origin
        too long to store (a host no browser would show) is stored as none."""
        if len(origin) > cls._meta.get_field("origin").max_length:
            origin = ""
        return cls.objects.create(
            token=secrets.token_hex(32), user=user, session_key=session_key, origin=origin
        )

    @classmethod
    def validate_and_consume(
        cls,
        token_value: str,
        session_key: str | None,
        max_age_seconds: int = 60,
        *,
        bind_to_session: bool = True,
        user: Any = None,
        origin: str | None = None,
    ) -> Any:
        """The token's user if the token is fresh, unused and bound to ``session_key``; else None.

        ``bind_to_session=False`` drops the session check, for handshakes that carry no session
        cookie (a socket host the site's cookies do not reach). ``user`` (the session's user,
        when the caller has it) must own the token and saves loading it again. ``origin``, when
        given, must be the origin that issued the token. Consumption is one conditional UPDATE
        with all of these conditions, so of several concurrent callers exactly one wins, and a
        caller that fails a condition consumes nothing.
        """
        if not isinstance(token_value, str) or not TOKEN_PATTERN.fullmatch(token_value):
            return None
        if bind_to_session and not session_key:
            return None
        if origin is not None and not origin:
            return None
        cutoff = timezone.now() - timedelta(seconds=max_age_seconds)
        unused = cls.objects.filter(token=token_value, used=False, created_at__gte=cutoff)
        if bind_to_session:
            unused = unused.filter(session_key=session_key)
        if user is not None:
            unused = unused.filter(user=user)
        if origin is not None:
            unused = unused.filter(origin=origin)
        consumed = unused.update(used=True)
        if consumed != 1:
            return None
        if user is None:
            consumed_token = cls.objects.select_related("user").filter(token=token_value).first()
            if consumed_token is None:  # the clean-up deleted it in between: as if never valid
                return None
            user = consumed_token.user
        return user if user.is_active else None

    @classmethod
    def cleanup_expired(cls, max_age_seconds: int = 300) -> int:
        """Delete used tokens and tokens older than ``max_age_seconds``; return how many."""
        cutoff = timezone.now() - timedelta(seconds=max_age_seconds)
        deleted, _ = cls.objects.filter(Q(used=True) | Q(created_at__lt=cutoff)).delete()
        return deleted

    @classmethod
    def check_rate_limit(cls, user: Any, max_tokens_per_minute: int = 10) -> bool:
        """True while ``user`` has requested fewer than the limit in the last minute."""
        since = timezone.now() - timedelta(minutes=1)
        recent = cls.objects.filter(user=user, created_at__gte=since).count()
        return recent < max_tokens_per_minute


class ConnectionRateLimit(models.Model):
    """One connection attempt, kept for rate limiting by IP address and by user."""

    ip_address = models.CharField(max_length=45, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="connection_attempts",
    )
    attempt_time = models.DateTimeField(default=timezone.now, db_index=True)
    successful = models.BooleanField(default=False)

    class Meta:
        verbose_name = "connection attempt"
        indexes = [
            models.Index(fields=["ip_address", "attempt_time"], name="ws_ratelimit_ip_time"),
        ]

    def __str__(self) -> str:
        outcome = "ok" if self.successful else "failed"
        return f"{self.ip_address} {self.attempt_time:%Y-%m-%d %H:%M:%S} {outcome}"

    @classmethod
    def check_rate_limit(
        cls,
        ip_address: str,
        user: Any = None,
        max_attempts: int = 20,
        window_minutes: int = 5,
    ) -> tuple[bool, int]:
        """``(allowed, attempt_count)``: attempts in the window from this IP, or by this user.

        The larger of the two counts is compared with ``max_attempts``.
        """
        since = timezone.now() - timedelta(minutes=window_minutes)
        user_id = _user_id(user)
        if user_id is None:
            count = cls.objects.filter(ip_address=ip_address, attempt_time__gte=since).count()
        else:
            counts = cls.objects.filter(
                Q(ip_address=ip_address) | Q(user_id=user_id), attempt_time__gte=since
            ).aggregate(
                by_ip=Count("pk", filter=Q(ip_address=ip_address)),
                by_user=Count("pk", filter=Q(user_id=user_id)),
            )
            count = max(counts["by_ip"], counts["by_user"])
        return count < max_attempts, count

    @classmethod
    def admit(
        cls,
        ip_address: str,
        user: Any = None,
        max_attempts: int = 20,
        window_minutes: int = 5,
    ) -> tuple[bool, int, ConnectionRateLimit]:
        """Check the limit and record this attempt as one step: ``(allowed, earlier_attempts,
        attempt)``; the attempt is stored as successful when allowed (mark it failed later).

        On PostgreSQL the IP and, for a signed-in user, the user are locked first (advisory
        transaction locks) and the count and insert are one statement, so a burst of
        concurrent connects never admits more than ``max_attempts``; connects that share
        neither an address nor a user never wait for each other. Elsewhere it is a count and
        an insert in a transaction: exact only where transactions serialise writers (SQLite
        ``transaction_mode`` ``IMMEDIATE``).
        """
        user_id = _user_id(user)
        since = timezone.now() - timedelta(minutes=window_minutes)
        alias = router.db_for_write(cls)
        with transaction.atomic(using=alias):
            if connections[alias].vendor == "postgresql":
                return cls._admit_postgresql(alias, ip_address, user_id, max_attempts, since)
            allowed, count = cls.check_rate_limit(ip_address, user, max_attempts, window_minutes)
            attempt = cls.objects.using(alias).create(
                ip_address=ip_address, user_id=user_id, successful=allowed
            )
            return allowed, count, attempt

    @classmethod
    def _admit_postgresql(
        cls, alias: str, ip_address: str, user_id: int | None, max_attempts: int, since: Any
    ) -> tuple[bool, int, ConnectionRateLimit]:
        table = connections[alias].ops.quote_name(cls._meta.db_table)
        now = timezone.now()
        # Lock what the limit counts: the address, and the user when there is one. Anonymous
        # connects from different addresses share nothing, so they never wait on each other.
        keys = [f"websocket-ip:{ip_address}"]
        if user_id is not None:
            keys.append(f"websocket-user:{user_id}")
        serialize_on(alias, *keys)
        with connections[alias].cursor() as cursor:
            # A new statement after the locks: its snapshot sees every attempt committed by
            # whoever held them before.
            cursor.execute(
                f"""
                WITH counts AS (
                    SELECT GREATEST(
                        (SELECT COUNT(*) FROM {table}
                         WHERE ip_address = %s AND attempt_time >= %s),
                        (SELECT COUNT(*) FROM {table}
                         WHERE user_id = %s AND attempt_time >= %s)
                    ) AS n
                ), inserted AS (
                    INSERT INTO {table} (ip_address, user_id, attempt_time, successful)
                    SELECT %s, %s, %s, n < %s FROM counts
                    RETURNING id, successful
                )
                SELECT inserted.id, inserted.successful, counts.n FROM inserted, counts
                """,
                [ip_address, since, user_id, since, ip_address, user_id, now, max_attempts],
            )
            attempt_id, allowed, count = cursor.fetchone()
        attempt = cls(
            id=attempt_id,
            ip_address=ip_address,
            user_id=user_id,
            attempt_time=now,
            successful=allowed,
        )
        attempt._state.adding, attempt._state.db = False, alias
        return allowed, count, attempt

    def mark_failed(self) -> None:
        """The connect this attempt admitted was refused after all."""
        type(self).objects.filter(pk=self.pk).update(successful=False)
        self.successful = False

    @classmethod
    def record_attempt(
        cls, ip_address: str, user: Any = None, successful: bool = False
    ) -> ConnectionRateLimit:
        """Store one attempt (anonymous users are stored without a user)."""
        return cls.objects.create(
            ip_address=ip_address, user_id=_user_id(user), successful=successful
        )

    @classmethod
    def cleanup_old_records(cls, days: int = 7) -> int:
        """Delete attempts older than ``days``; return how many."""
        cutoff = timezone.now() - timedelta(days=days)
        deleted, _ = cls.objects.filter(attempt_time__lt=cutoff).delete()
        return deleted


def serialize_on(alias: str, *keys: str) -> None:
    """Inside a transaction: wait until no other transaction holds any of ``keys``
    (PostgreSQL advisory transaction locks, always taken in the given order). Other
    databases: nothing to do here (serialise them with their transaction mode)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return
    locks = ", ".join(["pg_advisory_xact_lock(hashtext(%s))"] * len(keys))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {locks}", list(keys))


def _user_id(user: Any) -> int | None:
    """The primary key of an authenticated user, else None."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class CleanupRun(models.Model):
    """When each cleanup command last ran and what it did, for ``websocketStatus``."""

    command = models.CharField(max_length=64, unique=True)
    last_run = models.DateTimeField()
    last_output = models.TextField(blank=True, default="")

    class Meta:
        verbose_name = "cleanup run"

    def __str__(self) -> str:
        return f"{self.command} at {self.last_run:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def record(cls, command: str, output: str) -> None:
        cls.objects.update_or_create(
            command=command, defaults={"last_run": timezone.now(), "last_output": output}
        )
