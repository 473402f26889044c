"""Server-to-client sends through the API Gateway Management API (@connections).

A payload is JSON-encoded once and size-checked before any network call. A connection that
API Gateway reports gone (``GoneException``, HTTP 410) is normal: its session is marked
disconnected. Throttling is retried with exponential back-off; other errors surface (single
send) or are counted (fan-out), so one bad connection never stops a broadcast.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder

from .conf import websocket_setting
from .connections_http import DELIVERED, FAILED, GONE, FanOut, Signer, Target, target_for
from .fanout_dispatch import fanout_function, queue_batches
from .signals import messages_sent

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import WebSocketSession

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024
THROTTLING_CODES = frozenset(
    {"LimitExceededException", "TooManyRequestsException", "ThrottlingException"}
)
GONE_UPDATE_BATCH = 5000
EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


@dataclass
class SendReport:
    """What happened to one send or fan-out."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0
    gone_connection_ids: list[str] = field(default_factory=list)
    # Handed to other invocations (WEBSOCKETS["fanout_invocation_batch"]); sent there.
    queued: int = 0

    @property
    def attempted(self) -> int:
        return self.delivered + self.gone + self.failed


def encode_payload(data: Any) -> bytes:
    """JSON-encode ``data`` as UTF-8; ``ValueError`` if API Gateway would refuse its size."""
    payload = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))
    encoded = payload.encode("utf-8")
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise ValueError(
            f"Message is {len(encoded)} bytes; API Gateway accepts at most "
            f"{MAX_MESSAGE_BYTES} bytes per WebSocket message."
        )
    return encoded


def management_client(endpoint_url: str) -> Any:
    """A client for the @connections API at ``endpoint_url`` (via ``models.get_boto3_client``).

    A real botocore client is kept for the process (one per endpoint, region, credential
    settings and factory): building one costs ~3 ms, and a warm container sends often.
    ``models.get_boto3_client`` is still looked up on every call, so patching it (the testing
    guide does) intercepts every send; mocks it returns are never kept.
    """
    from botocore.client import BaseClient

    from . import models

    factory = models.get_boto3_client
    # SigV4 is signed for the endpoint's own region; a non-AWS endpoint (the local gateway)
    # accepts any region, so a missing region setting must not stop it.
    region = region_of_endpoint(endpoint_url) or configured_region() or "us-east-1"
    concurrency = max(10, int(websocket_setting("send_concurrency")))
    key = (factory, endpoint_url, region, concurrency, _credential_settings())
    client = _CLIENTS.get(key)
    if client is not None:
        return client
    client = factory(
        "apigatewaymanagementapi",
        endpoint_url=endpoint_url,
        config=_client_config(concurrency),
        region_name=region,
    )
    if isinstance(client, BaseClient):
        with _CLIENTS_LOCK:
            if len(_CLIENTS) >= MAX_CACHED_CLIENTS:
                _CLIENTS.clear()
            _CLIENTS[key] = client
    return client


def _client_config(max_pool_connections: int) -> Any:
    from botocore.config import Config

    return Config(
        # Our own loop retries throttling; botocore's retries would multiply with it.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        # Fail fast (e.g. a VPC without a NAT route) instead of outliving the invocation.
        connect_timeout=5,
        read_timeout=10,
    )


def _credential_settings() -> tuple[Any, ...]:
    """The settings ``get_boto3_client`` builds credentials from: a change means a new client."""
    from django.conf import settings

    return tuple(
        getattr(settings, name, None)
        for name in (
            "AWS_IAM_PROFILE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
        )
    )


# Real botocore clients are thread-safe once built; building them is serialised by models.
_CLIENTS: dict[tuple[Any, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()
MAX_CACHED_CLIENTS = 64


def configured_region() -> str:
    from .models import get_region_name

    try:
        return get_region_name()
    except ImproperlyConfigured:
        return ""


def region_of_endpoint(endpoint_url: str) -> str:
    """The region of an execute-api URL (``https://id.execute-api.eu-west-1...``), else ""."""
    match = EXECUTE_API_HOST.match(urlsplit(endpoint_url).hostname or "")
    return match.group(1) if match else ""


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _http_status(error: Exception) -> int | None:
    response = getattr(error, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_gone(error: Exception) -> bool:
    return _error_code(error) == "GoneException" or _http_status(error) == 410


def is_throttled(error: Exception) -> bool:
    return _error_code(error) in THROTTLING_CODES or _http_status(error) == 429


def post_to_connection(client: Any, connection_id: str, payload: bytes) -> str:
    """Post ``payload`` to one connection: ``DELIVERED`` or ``GONE``; other errors raise."""
    from botocore.exceptions import ClientError

    max_retries = int(websocket_setting("send_max_retries"))
    base_delay = float(websocket_setting("send_retry_base_delay"))
    attempt = 0
    while True:
        try:
            client.post_to_connection(ConnectionId=connection_id, Data=payload)
            return DELIVERED
        except ClientError as error:
            if is_gone(error):
                return GONE
            if not is_throttled(error) or attempt >= max_retries:
                raise
            # Full jitter keeps many throttled senders from retrying in lock-step.
            time.sleep(random.uniform(0, base_delay * (2**attempt)))
            attempt += 1


def mark_gone(connection_ids: list[str]) -> None:
    """Mark the given sessions disconnected, in one UPDATE per batch of ids."""
    from .models import WebSocketSession

    for start in range(0, len(connection_ids), GONE_UPDATE_BATCH):
        batch = connection_ids[start : start + GONE_UPDATE_BATCH]
        WebSocketSession.objects.filter(connection_id__in=batch).update(connected=False)


def send_to_session(session: WebSocketSession, data: Any) -> SendReport:
    """Send ``data`` to one session; errors other than gone and throttling raise."""
    payload = encode_payload(data)
    if session.api_gateway is None:
        raise ValueError(f"Session {session.connection_id} has no API Gateway to send through.")
    client = management_client(session.api_gateway.management_endpoint)
    outcome = post_to_connection(client, session.connection_id, payload)
    report = SendReport()
    if outcome == GONE:
        session.connected = False
        # An UPDATE, not save(): the row may already have been cleaned up meanwhile.
        mark_gone([session.connection_id])
        report.gone = 1
        report.gone_connection_ids.append(session.connection_id)
    else:
        report.delivered = 1
    messages_sent.send(sender=type(session), report=report)
    return report


def _send_logged(client: Any, connection_id: str, payload: bytes) -> str:
    """Fan-out worker: like ``post_to_connection`` but a failure is logged and counted."""
    try:
        return post_to_connection(client, connection_id, payload)
    except Exception:
        logger.exception("Sending to connection %s failed", connection_id)
        return FAILED


def send_to_sessions(
    queryset: QuerySet[WebSocketSession], data: Any, dispatch: bool = True
) -> SendReport:
    """Send ``data`` to every connected session in ``queryset``, concurrently.

    Each session goes through its own gateway's endpoint (one client per endpoint); rows are
    streamed and in-flight sends bounded, so memory stays flat however large the channel.
    """
    from .models import WebSocketSession, management_endpoint_for

    payload = encode_payload(data)
    if queryset.query.is_sliced:
        queryset = WebSocketSession.objects.filter(
            pk__in=list(queryset.values_list("pk", flat=True))
        )
    queued = 0
    batch = int(websocket_setting("fanout_invocation_batch"))
    if dispatch and batch and fanout_function():
        connection_ids = list(
            queryset.filter(connected=True).order_by("pk").values_list("connection_id", flat=True)
        )
        if len(connection_ids) > batch:
            queued = queue_batches(connection_ids[batch:], payload)
            queryset = WebSocketSession.objects.filter(connection_id__in=connection_ids[:batch])
    rows = (
        queryset.filter(connected=True)
        .values_list(
            "connection_id",
            "api_gateway__management_endpoint_url",
            "api_gateway__api_id",
            "api_gateway__stage_name",
            "api_gateway_id",
        )
        .iterator(chunk_size=2000)
    )
    concurrency = max(1, int(websocket_setting("send_concurrency")))
    use_http = websocket_setting("fanout_transport") != "boto3"
    clients: dict[str, Any] = {}
    targets: dict[str, tuple[Target, Signer] | None] = {}
    report = SendReport(queued=queued)
    in_flight: dict[Future[str], str] = {}
    # Outcomes of the HTTP path arrive on its event loop's thread: list.append is atomic.
    http_outcomes: list[tuple[str, str]] = []
    fan_out: FanOut | None = None
    # Why sessions could not be sent to (a setting to fix), and how many: logged once.
    unsendable: Counter[str] = Counter()

    def count(connection_id: str, outcome: str) -> None:
        if outcome == DELIVERED:
            report.delivered += 1
        elif outcome == GONE:
            report.gone += 1
            report.gone_connection_ids.append(connection_id)
        else:
            report.failed += 1

    def collect(done: set[Future[str]]) -> None:
        for future in done:
            count(in_flight.pop(future), future.result())

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="ws-send") as pool:
        for connection_id, explicit_url, api_id, stage_name, gateway_id in rows:
            if gateway_id is None:
                logger.warning("Session %s has no API Gateway; not sent", connection_id)
                report.failed += 1
                continue
            try:
                endpoint = management_endpoint_for(explicit_url, api_id, stage_name)
            except ImproperlyConfigured as error:
                # Like a session without a gateway: counted, so one misconfigured gateway
                # neither aborts the broadcast half-way nor skips marking the gone sessions.
                unsendable[str(error)] += 1
                report.failed += 1
                continue
            client = clients.get(endpoint)
            if client is None:
                client = clients[endpoint] = management_client(endpoint)
                target = target_for(client) if use_http else None
                targets[endpoint] = (target, Signer(target, payload)) if target else None
            if targets[endpoint] is not None:
                if fan_out is None:
                    fan_out = FanOut(
                        concurrency=max(concurrency, int(websocket_setting("http_concurrency"))),
                        max_retries=int(websocket_setting("send_max_retries")),
                        base_delay=float(websocket_setting("send_retry_base_delay")),
                        on_result=lambda cid, outcome: http_outcomes.append((cid, outcome)),
                    )
                target, signer = targets[endpoint]
                fan_out.submit(target, signer, payload, connection_id)
                continue
            in_flight[pool.submit(_send_logged, client, connection_id, payload)] = connection_id
            if len(in_flight) >= concurrency * 4:
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                collect(done)
        done, _ = wait(in_flight)
        collect(done)
    if fan_out is not None:
        fan_out.close()
        for connection_id, outcome in http_outcomes:
            count(connection_id, outcome)

    for reason, sessions in unsendable.items():
        logger.error("%d session(s) not sent: %s", sessions, reason)
    if report.gone_connection_ids:
        mark_gone(report.gone_connection_ids)
    messages_sent.send(sender=WebSocketSession, report=report)
    return report
