"""Server-to-client sends through the API Gateway Management API (@connections).

A payload is JSON-encoded once and size-checked (``WEBSOCKETS["max_message_bytes"]``) before
any network call; one over API Gateway's 128 KiB is posted as parts (``message_parts``), in
order, and a connection counts as delivered once all its parts are. A connection that
API Gateway reports gone (``GoneException``, HTTP 410) is normal: its session is marked
disconnected. Every post is paced by the process's ``send_rate`` bucket; throttling is retried
through it (and, for a single send, with jittered exponential back-off: ``send_policy``);
other errors surface (single send) or are counted (fan-out), so one bad connection never
stops a broadcast. This module never imports ``models``: it works on the querysets and
sessions it is given and reaches AWS through ``aws``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from . import aws, message_parts, send_rate
from .conf import websocket_setting
from .connections_http import FanOut, Signer, Target, address_for, shared_transport, target_for
from .fanout_dispatch import fanout_function, queue_batches
from .message_parts import MAX_MESSAGE_BYTES
from .send_policy import THROTTLING_CODES, Backoff, Outcome, classify
from .signals import messages_sent

if TYPE_CHECKING:
    from django.db.models import Model, QuerySet

    from .models import WebSocketSession

logger = logging.getLogger(__name__)

GONE_UPDATE_BATCH = 5000
APP_LABEL = "django_aws_api_gateway_websockets"
# Kept importable from here: they now live in ``aws`` and ``send_policy``.
management_client = aws.management_client
__all__ = [
    "MAX_MESSAGE_BYTES",
    "THROTTLING_CODES",
    "Outcome",
    "SendReport",
    "encode_payload",
    "management_client",
    "mark_gone",
    "post_to_connection",
    "run_fanout_event",
    "send_to_session",
    "send_to_sessions",
]


@dataclass
class SendReport:
    """What happened to one send or fan-out."""

    delivered: int = 0
    gone: int = 0
    failed: int = 0
    gone_connection_ids: list[str] = field(default_factory=list)
    # Handed to other invocations (WEBSOCKETS["fanout_invocation_batch"]); sent there.
    queued: int = 0
    # The message's number in its channel's replay log (queryset.broadcast); None otherwise.
    seq: int | None = None

    @property
    def attempted(self) -> int:
        return self.delivered + self.gone + self.failed


def encode_payload(data: Any) -> bytes:
    """JSON-encode ``data`` as UTF-8, the whole message; ``ValueError`` if it is larger than
    ``WEBSOCKETS["max_message_bytes"]`` (over 128 KiB it is sent in parts)."""
    payload = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))
    encoded = payload.encode("utf-8")
    limit = int(websocket_setting("max_message_bytes"))
    if len(encoded) > limit:
        raise ValueError(
            f"Message is {len(encoded)} bytes; WEBSOCKETS['max_message_bytes'] allows at most "
            f"{limit} bytes (messages over API Gateway's {MAX_MESSAGE_BYTES} bytes are sent "
            "in parts)."
        )
    return encoded


def posts_of(payload: bytes) -> list[bytes]:
    """What one connection is posted for ``payload``: itself, or its parts in index order."""
    if len(payload) <= MAX_MESSAGE_BYTES:
        return [payload]
    return message_parts.split(payload.decode("utf-8"))


def post_to_connection(
    client: Any, connection_id: str, payload: bytes, backoff: Backoff | None = None
) -> Outcome:
    """Post ``payload`` to one connection: ``DELIVERED`` or ``GONE``; throttling is retried
    per ``backoff`` (default: the settings), each try paced by ``send_rate``; other errors,
    and throttling after the last retry, raise botocore's ``ClientError``."""
    return _post(client, connection_id, payload, backoff)[0]


def _post(
    client: Any,
    connection_id: str,
    payload: bytes,
    backoff: Backoff | None = None,
    deadline: float | None = None,
) -> tuple[Outcome, Any]:
    """``post_to_connection`` that also returns the client's response (None when gone).

    Every try first takes a token of the process's ``send_rate`` bucket (waiting for it).
    ``deadline`` (a time of the bucket's clock) is a fan-out's: a throttled post is then
    retried through the bucket until it passes, however many tries that takes. Without it (a
    single send) at most ``backoff.max_retries`` retries, each after its back-off pause,
    within ``send_throttle_deadline_seconds``. Only throttled posts are tried again: the
    server refused them, so nothing is delivered twice."""
    backoff = backoff or Backoff.from_settings()
    bucket = send_rate.limiter()
    paced = bucket is not None and deadline is not None
    if bucket is not None and deadline is None:
        deadline = bucket.clock() + send_rate.throttle_deadline_seconds()
    client_error = aws.client_error()
    attempt = 0
    pause = 0.0
    throttled: Exception | None = None
    while True:
        grant = None
        if bucket is not None:
            # Only a retry has a deadline: the first try is always made.
            grant = _take_token(bucket, deadline if throttled else None, pause)
            if grant is None and throttled is not None:
                raise throttled  # the retry could not start before the deadline
        elif pause:
            time.sleep(pause)
        try:
            response = client.post_to_connection(ConnectionId=connection_id, Data=payload)
            return Outcome.DELIVERED, response
        except client_error as error:
            outcome = classify(aws.http_status(error), aws.error_code(error))
            if outcome is Outcome.GONE:
                return outcome, None
            if outcome is not Outcome.THROTTLED:
                raise
            if bucket is not None and grant is not None:
                bucket.throttled(grant)
            if not paced and attempt >= backoff.max_retries:
                raise
            throttled = error
            # Paced by the bucket alone in a fan-out; a single send also backs off.
            pause = 0.0 if paced else backoff.delay(attempt)
            attempt += 1


def _take_token(
    bucket: send_rate.SendRate, deadline: float | None, pause: float
) -> send_rate.Grant | None:
    """Sleep ``pause`` (a back-off) and until ``bucket`` grants a token; None if that could
    not be before ``deadline``. A wait that spans a halving takes a new token."""
    while True:
        grant = bucket.reserve(deadline)
        if grant is None:
            return None
        wait = max(pause, grant.delay)
        if wait:
            time.sleep(wait)
        if not wait or not bucket.stale(grant):
            return grant
        pause = 0.0


def mark_gone(
    model: type[Model], connection_ids: list[str], before: datetime | None = None
) -> None:
    """Mark the given sessions of ``model`` disconnected, in one UPDATE per batch of ids.

    ``before`` (a fan-out's start): only sessions not updated since. A 410 can come from a
    connection still in its ``$connect`` handshake; if its replay reached it (and marked it
    connected again, see ``replay``) while the fan-out was still running, the fan-out's late
    verdict must not undo that."""
    for start in range(0, len(connection_ids), GONE_UPDATE_BATCH):
        batch = connection_ids[start : start + GONE_UPDATE_BATCH]
        sessions = model._default_manager.filter(connection_id__in=batch)
        if before is not None:
            sessions = sessions.filter(updated_on__lt=before)
        sessions.update(connected=False)


def send_to_session(session: WebSocketSession, data: Any) -> dict[str, Any] | None:
    """Send ``data`` to one session and return the client's ``post_to_connection`` response
    (botocore's dict, with ``ResponseMetadata``; of the last part for a message sent in
    parts), or None when the connection is gone (at any part): the session is then marked
    disconnected. Other errors, and throttling after the retries, raise (parts already posted
    stay posted: the client drops an incomplete message). ``messages_sent`` still gets a
    ``SendReport``, as for a fan-out."""
    posts = posts_of(encode_payload(data))
    if session.api_gateway is None:
        raise ValueError(f"Session {session.connection_id} has no API Gateway to send through.")
    client = aws.management_client(session.api_gateway.management_endpoint)
    outcome, response = Outcome.DELIVERED, None
    for post in posts:
        outcome, response = _post(client, session.connection_id, post)
        if outcome is Outcome.GONE:
            break
    report = SendReport()
    if outcome is Outcome.GONE:
        session.connected = False
        # An UPDATE, not save(): the row may already have been cleaned up meanwhile.
        mark_gone(type(session), [session.connection_id])
        report.gone = 1
        report.gone_connection_ids.append(session.connection_id)
    else:
        report.delivered = 1
    announce(type(session), report)
    return response


def _send_logged(
    client: Any,
    connection_id: str,
    posts: list[bytes],
    backoff: Backoff,
    deadline: float | None = None,
) -> tuple[Outcome, str]:
    """Fan-out worker: ``post_to_connection`` of each post in order, stopping at the first
    that is not delivered (throttling retried until ``deadline`` when the rate limit is on),
    but a failure is an outcome and its reason (logged once per reason by the broadcast),
    never an exception."""
    try:
        outcome = Outcome.DELIVERED
        for payload in posts:
            outcome = _post(client, connection_id, payload, backoff, deadline)[0]
            if outcome is not Outcome.DELIVERED:
                break
        return outcome, ""
    except aws.client_error() as error:
        outcome = classify(aws.http_status(error), aws.error_code(error))
        if outcome is Outcome.THROTTLED:
            if deadline is not None:
                return outcome, send_rate.THROTTLE_DEADLINE
            return outcome, f"still throttled after {backoff.max_retries} retries"
        return Outcome.FAILED, aws.describe(error)
    except Exception as error:
        logger.debug("Sending to connection %s failed", connection_id, exc_info=True)
        return Outcome.FAILED, f"{type(error).__name__}: {error}"


class _Broadcast:
    """One fan-out in progress: the clients per endpoint, the boto3 worker threads and the
    HTTP fan-out, and the outcomes so far. ``finish`` ends it on every exit path."""

    def __init__(self, payload: bytes, report: SendReport) -> None:
        self.payload = payload
        # What each connection is posted, in order: one connection's outcome covers them all.
        self.posts = posts_of(payload)
        self.report = report
        self.started = timezone.now()
        self.concurrency = max(1, int(websocket_setting("send_concurrency")))
        self.use_http = websocket_setting("fanout_transport") != "boto3"
        self.http_slots = max(self.concurrency, int(websocket_setting("http_concurrency")))
        self.backoff = Backoff.from_settings()
        # One bucket for every post of the process; with it, throttled posts are retried
        # until the deadline (the bucket's clock), counted from the fan-out's start.
        self.bucket = send_rate.limiter()
        self.deadline = (
            self.bucket.clock() + send_rate.throttle_deadline_seconds() if self.bucket else None
        )
        self.clients: dict[str, Any] = {}
        self.targets: dict[str, tuple[Target, list[tuple[Signer, bytes]]] | None] = {}
        # Endpoints whose client could not be set up -> why (their sessions count as failed).
        self.broken: dict[str, str] = {}
        self.pool: ThreadPoolExecutor | None = None
        self.in_flight: dict[Future[tuple[Outcome, str]], str] = {}
        self.fan_out: FanOut | None = None
        # Outcomes of the HTTP path arrive on its event loop's thread: list.append is atomic.
        self.http_outcomes: list[tuple[str, str]] = []
        # Why sessions could not be sent to (a setting to fix), and how many: logged once.
        self.unsendable: Counter[str] = Counter()
        # Why posts of the boto3 workers failed -> how many, and one example connection.
        self.failures: Counter[str] = Counter()
        self.failure_examples: dict[str, str] = {}

    def count(self, connection_id: str, outcome: str) -> None:
        if outcome == Outcome.DELIVERED:
            self.report.delivered += 1
        elif outcome == Outcome.GONE:
            self.report.gone += 1
            self.report.gone_connection_ids.append(connection_id)
        else:
            self.report.failed += 1

    def _collect(self, done: set[Future[tuple[Outcome, str]]]) -> None:
        for future in done:
            connection_id = self.in_flight.pop(future)
            # _send_logged returns an outcome for any Exception; anything else ended the
            # worker (e.g. SystemExit): still one counted failure.
            error = future.exception()
            outcome, reason = (Outcome.FAILED, repr(error)) if error else future.result()
            if reason:
                self.failures[reason] += 1
                self.failure_examples.setdefault(reason, connection_id)
            self.count(connection_id, outcome)

    def send(
        self, connection_id: str, explicit_url: str, api_id: str, stage: str, gateway_id: Any
    ) -> None:
        if gateway_id is None:
            self.unsendable["the session has no API Gateway"] += 1
            self.report.failed += 1
            return
        try:
            endpoint = aws.management_endpoint_for(explicit_url, api_id, stage)
        except ImproperlyConfigured as error:
            # Like a session without a gateway: counted, so one misconfigured gateway
            # neither aborts the broadcast half-way nor skips marking the gone sessions.
            self.unsendable[str(error)] += 1
            self.report.failed += 1
            return
        broken = self.broken.get(endpoint)
        if broken is not None:
            self.unsendable[broken] += 1
            self.report.failed += 1
            return
        client = self.clients.get(endpoint)
        if client is None:
            try:
                client = self._open_endpoint(endpoint)
            except Exception as error:
                # One endpoint that cannot be set up (a host botocore refuses, credentials
                # that cannot be refreshed): its sessions are counted, the others still sent.
                reason = f"{endpoint}: {aws.describe(error)}"
                self.broken[endpoint] = reason
                self.unsendable[reason] += 1
                self.report.failed += 1
                return
        http = self.targets[endpoint]
        if http is not None:
            if self.fan_out is None:
                self.fan_out = FanOut(
                    concurrency=self.http_slots,
                    max_retries=self.backoff.max_retries,
                    base_delay=self.backoff.base_delay,
                    on_result=lambda cid, outcome: self.http_outcomes.append((cid, outcome)),
                    limiter=self.bucket,
                    deadline=self.deadline,
                )
            target, signed = http
            self.fan_out.submit_posts(target, signed, connection_id)
            return
        if self.pool is None:
            self.pool = ThreadPoolExecutor(
                max_workers=self.concurrency, thread_name_prefix="ws-send"
            )
        future = self.pool.submit(
            _send_logged, client, connection_id, self.posts, self.backoff, self.deadline
        )
        self.in_flight[future] = connection_id
        if len(self.in_flight) >= self.concurrency * 4:
            done, _ = wait(self.in_flight, return_when=FIRST_COMPLETED)
            self._collect(done)

    def _open_endpoint(self, endpoint: str) -> Any:
        """The client of a new endpoint, and its signed-HTTP target when it takes that path."""
        if self.use_http:
            self._preconnect(endpoint)
        client = aws.management_client(endpoint)
        # The signed HTTP path only for the library's own clients: a patched factory's
        # client (a Stubber's, a spy's) must see every post itself.
        target = target_for(client) if self.use_http and aws.factory_is_default() else None
        self.targets[endpoint] = (
            (target, [(Signer(target, post), post) for post in self.posts]) if target else None
        )
        self.clients[endpoint] = client
        return client

    def _preconnect(self, endpoint: str) -> None:
        """Start the first connection's handshake (and DNS lookup) while the client is built.

        Only with the library's own client factory: a patched ``get_boto3_client`` (the
        testing guide's mocks) decides where sends go, so nothing is opened before it answers.
        """
        if not aws.factory_is_default():
            return
        address = address_for(endpoint)
        if address is not None:
            shared_transport().preconnect(address, self.http_slots)

    def finish(self) -> None:
        """Wait for every post already handed to a transport, count it, and stop the worker
        threads and the HTTP fan-out, whether the broadcast ran to the end or not."""
        try:
            if self.in_flight:
                done, _ = wait(self.in_flight)
                self._collect(done)
        finally:
            try:
                if self.pool is not None:
                    self.pool.shutdown(wait=True)
            finally:
                if self.fan_out is not None:
                    try:
                        self.fan_out.close()
                    finally:
                        for connection_id, outcome in self.http_outcomes:
                            self.count(connection_id, outcome)
        for reason, sessions in self.unsendable.items():
            logger.error("%d session(s) not sent: %s", sessions, reason)
        for reason, posts in self.failures.items():
            logger.error(
                "%d post(s) to @connections failed: %s (e.g. connection %s)",
                posts,
                reason,
                self.failure_examples[reason],
            )


def send_to_sessions(
    queryset: QuerySet[WebSocketSession],
    data: Any,
    dispatch: bool = True,
    *,
    seq: int | None = None,
) -> SendReport:
    """Send ``data`` to every connected session in ``queryset``, concurrently (``seq``: the
    replay number ``data`` carries, reported to ``messages_sent`` receivers too).

    Each session goes through its own gateway's endpoint (one client per endpoint); rows are
    streamed and in-flight sends bounded, so memory stays flat however large the channel.
    If streaming the rows raises, the posts already started are finished and counted, the
    gone sessions among them are marked, and the error propagates.
    """
    model = queryset.model
    payload = encode_payload(data)
    if queryset.query.is_sliced:
        queryset = model._default_manager.filter(pk__in=list(queryset.values_list("pk", flat=True)))
    queued = 0
    batch = int(websocket_setting("fanout_invocation_batch"))
    if dispatch and batch and fanout_function():
        connection_ids = list(
            queryset.filter(connected=True).order_by("pk").values_list("connection_id", flat=True)
        )
        if len(connection_ids) > batch:
            queued, left = queue_batches(connection_ids[batch:], payload)
            if queued:  # else everything is sent here, from the queryset as given
                local = connection_ids[:batch] + left
                queryset = model._default_manager.filter(connection_id__in=local)
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
    report = SendReport(queued=queued, seq=seq)
    broadcast = _Broadcast(payload, report)
    try:
        for row in rows:
            broadcast.send(*row)
    except BaseException:
        _settle(broadcast, model, aborted=True)
        raise
    _settle(broadcast, model, aborted=False)
    return report


def _settle(broadcast: _Broadcast, model: type[Model], aborted: bool) -> None:
    """Finish the posts already started, mark the gone sessions, announce the report; after
    an error in the rows (``aborted``), without hiding that error."""
    report = broadcast.report
    try:
        broadcast.finish()
    finally:
        try:
            if report.gone_connection_ids:
                mark_gone(model, report.gone_connection_ids, before=broadcast.started)
        except Exception:
            if not aborted:
                raise
            logger.exception(
                "Marking %d gone session(s) after a failed broadcast failed",
                len(report.gone_connection_ids),
            )
    if aborted:
        logger.error(
            "Broadcast stopped by an error after %d post(s): %d delivered, %d gone, %d failed",
            report.attempted,
            report.delivered,
            report.gone,
            report.failed,
        )
    announce(model, report)


def announce(model: type[Model], report: SendReport) -> None:
    """``messages_sent``, robustly: the posts are done, so a failing receiver is logged,
    never raised (a caller seeing an error would send them again)."""
    for receiver, result in messages_sent.send_robust(sender=model, report=report):
        if isinstance(result, Exception):
            logger.error(
                "messages_sent receiver %r failed",
                receiver,
                exc_info=(type(result), result, result.__traceback__),
            )


def run_fanout_event(body: Any) -> dict[str, Any]:
    """Handler side of ``fanout_dispatch``: send one queued batch, exactly as the originating
    fan-out would have."""
    if not isinstance(body, dict):
        return {"statusCode": 400, "body": "Malformed fan-out event"}
    ids, text = body.get("connection_ids"), body.get("payload")
    if not isinstance(ids, list) or not isinstance(text, str):
        return {"statusCode": 400, "body": "Malformed fan-out event"}
    model = apps.get_model(APP_LABEL, "WebSocketSession")
    sessions = model._default_manager.filter(
        connection_id__in=[i for i in ids if isinstance(i, str)]
    )
    try:
        report = send_to_sessions(sessions, json.loads(text), dispatch=False)
    except (ValueError, RecursionError):  # not JSON, or too large to send
        return {"statusCode": 400, "body": "Malformed fan-out event"}
    return {
        "statusCode": 200,
        "delivered": report.delivered,
        "gone": report.gone,
        "failed": report.failed,
    }
