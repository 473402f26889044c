"""Replay: channel broadcasts stored with a per-channel ``seq`` and sent again after a reconnect.

``broadcast`` stores a message and numbers it in one INSERT (the statement computes the next
number itself; two publishers that computed the same one collide on the unique constraint and
the loser retries), then sends it stamped with its ``seq``. ``deliver`` sends one connection
what it missed after a position: a gap notice when part of it was trimmed (or the position is
from the future), the messages in order in batches within API Gateway's 128 KiB, and a final
``done`` batch after one more read of the log. ``schedule`` runs ``deliver`` once a connect has
been answered: in a daemon thread where the process lives on, in an asynchronous invocation of
the function on Lambda (a frozen container would stall a thread until its next event).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, connections, router, transaction
from django.db.models import (
    ExpressionWrapper,
    Max,
    Min,
    OuterRef,
    PositiveBigIntegerField,
    Subquery,
)
from django.utils import timezone

from . import aws
from .conf import websocket_setting
from .fanout_dispatch import fanout_function, invoke_async
from .models import ChannelMessage, WebSocketSession, serialize_on
from .request_checks import is_valid_connection_id, valid_since
from .send_policy import Backoff, Outcome
from .sending import (
    MAX_MESSAGE_BYTES,
    SendReport,
    announce,
    encode_payload,
    mark_gone,
    post_to_connection,
    send_to_sessions,
)

if TYPE_CHECKING:
    from django.db.models import QuerySet

logger = logging.getLogger(__name__)

REPLAY_EVENT_KEY = "websocket_replay"
# A publisher that lost a race for a number queues behind the channel's lock (PostgreSQL) and
# tries again; only publishers arriving meanwhile without the lock can still beat it.
PUBLISH_ATTEMPTS = 50
# Threads per process delivering the replays of connects (outside Lambda).
REPLAY_WORKERS = 4
# What stamp() adds at most: '"seq":' + 18 digits + ','.
STAMP_BYTES = 25
# Rows read from the log per query while replaying.
READ_CHUNK = 500
# Pauses between posts answered 410 while the $connect handshake completes.
FIRST_PAUSE, LONGEST_PAUSE = 0.02, 0.25


def stamp(text: str, seq: int) -> str:
    """``text`` (a JSON object as stored) with ``"seq":N`` spliced in as its first key."""
    rest = text[1:]
    return f'{{"seq":{seq}' + ("" if rest.lstrip().startswith("}") else ",") + rest


# ----------------------------------------------------------------- publishing


def broadcast(queryset: QuerySet[WebSocketSession], channel_name: str, data: Any) -> SendReport:
    """Store ``data`` in ``channel_name``'s log with the next seq, then send it, stamped, to
    the connected sessions of ``queryset`` in that channel; the report carries the seq."""
    if not isinstance(channel_name, str) or not channel_name:
        raise ValueError("broadcast() needs a channel name")
    if not isinstance(data, dict):
        raise ValueError(f"broadcast() sends a dict, not {type(data).__name__}")
    if "seq" in data:
        raise ValueError('broadcast() numbers the message itself: data must not have a "seq" key')
    text = encode_payload(data).decode("utf-8")
    # The size check comes before the INSERT, and counts the seq the sent text will carry:
    # a message that fits only without it must not be stored and then refused.
    encode_payload({"seq": 10 ** (STAMP_BYTES - 8), **data})
    seq = publish(channel_name, text)
    # Encoded by the same encoder, seq first: the very text stamp(text, seq) gives a replay.
    return send_to_sessions(
        queryset.filter(channel_name=channel_name), {"seq": seq, **data}, seq=seq
    )


def publish(channel_name: str, text: str) -> int:
    """Append ``text`` (a JSON object without seq) to ``channel_name``'s log; its seq.

    One statement, ``INSERT ... SELECT COALESCE(MAX(seq), 0) + 1``: readers never see a seq
    before the ones below it are committed (a publisher can only compute N + 1 once N is
    committed). Inside a transaction the INSERT runs in a savepoint, so a lost race does not
    abort the caller's transaction. A publisher that lost a race takes the channel's advisory
    lock (PostgreSQL) before trying again, so losers queue instead of colliding with each
    other round after round; the uncontended path stays one statement.
    """
    alias = router.db_for_write(ChannelMessage)
    connection = connections[alias]
    table = connection.ops.quote_name(ChannelMessage._meta.db_table)
    sql = (
        f"INSERT INTO {table} (channel_name, seq, payload, created_on) "
        f"SELECT %s, COALESCE(MAX(seq), 0) + 1, %s, %s FROM {table} WHERE channel_name = %s "
        "RETURNING seq"
    )
    for attempt in range(PUBLISH_ATTEMPTS):
        params = [
            channel_name,
            text,
            connection.ops.adapt_datetimefield_value(timezone.now()),
            channel_name,
        ]
        try:
            if attempt:
                with transaction.atomic(using=alias):
                    serialize_on(alias, f"websocket-seq:{channel_name}")
                    return _insert(connection, sql, params)
            if connection.in_atomic_block:
                with transaction.atomic(using=alias):
                    return _insert(connection, sql, params)
            return _insert(connection, sql, params)
        except IntegrityError:
            if attempt == PUBLISH_ATTEMPTS - 1:
                raise
            logger.debug("Publishing to %s lost a race for a seq; numbering again", channel_name)
    raise AssertionError("unreachable")


def _insert(connection: Any, sql: str, params: list[Any]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.fetchone()[0])


# ----------------------------------------------------------------- delivering


class _Poster:
    """Posts to one connection. Until one post got through, 410 means "handshake not done
    yet" and is retried until the wait is over; after that it means gone."""

    def __init__(
        self, client: Any, connection_id: str, wait_seconds: float, presence: bool = False
    ) -> None:
        self.client = client
        self.connection_id = connection_id
        self.presence = presence
        self.deadline = time.monotonic() + max(0.0, wait_seconds)
        self.ready = False
        self.revived = False

    def post(self, payload: bytes) -> bool:
        pause = FIRST_PAUSE
        while True:
            if post_to_connection(self.client, self.connection_id, payload) is Outcome.DELIVERED:
                if not self.ready:
                    self.ready = True
                    self.revived = _revive(self.connection_id, self.presence)
                return True
            if self.ready or time.monotonic() + pause > self.deadline:
                logger.info("Replay to %s stopped: the connection is gone", self.connection_id)
                mark_gone(WebSocketSession, [self.connection_id])
                # As any send that finds a connection gone: receivers (presence's leave,
                # metrics) hear of it.
                announce(
                    WebSocketSession, SendReport(gone=1, gone_connection_ids=[self.connection_id])
                )
                return False
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    def post_parts(self, text: str) -> bool:
        """A message too large for one post goes as parts (``message_parts``), in order."""
        from . import message_parts

        return all(self.post(part) for part in message_parts.split(text))


def _revive(connection_id: str, presence: bool = False) -> bool:
    """The first post of a replay went through, so the connection is there. A broadcast
    that posted during the handshake got 410 and may have marked the session gone: connected
    again (and, for a view with ``PRESENCE``, present again: that 410 announced its leave).
    Either way ``updated_on`` moves: a fan-out still running marks gone only sessions not
    updated since it began (``sending.mark_gone``), so its late 410 verdict cannot undo this."""
    sessions = WebSocketSession.objects.filter(connection_id=connection_id)
    now = timezone.now()
    revived = sessions.filter(connected=False).update(connected=True, updated_on=now)
    if not revived:
        sessions.update(updated_on=now)
    if revived:
        logger.info("Session %s marked connected again: it was only connecting", connection_id)
        if presence:
            from . import presence as presence_events

            presence_events.rejoin(connection_id)
    return bool(revived)


class _Batch:
    """A ``{"type": "replay"}`` message under construction, kept within one post's size."""

    def __init__(self, channel_name: str) -> None:
        channel = json.dumps(channel_name, ensure_ascii=False)
        self.head = f'{{"type":"replay","channel":{channel},"messages":['
        self.empty_size = len(self.head.encode("utf-8")) + len('],"done":false}')
        self.messages: list[str] = []
        self.size = self.empty_size

    def fits(self, text: str) -> bool:
        separator = 1 if self.messages else 0
        return self.size + separator + len(text.encode("utf-8")) <= MAX_MESSAGE_BYTES

    def add(self, text: str) -> None:
        self.size += (1 if self.messages else 0) + len(text.encode("utf-8"))
        self.messages.append(text)

    def close(self, done: bool) -> bytes:
        text = self.head + ",".join(self.messages) + f'],"done":{"true" if done else "false"}}}'
        self.messages, self.size = [], self.empty_size
        return text.encode("utf-8")


def gap_notice(channel_name: str, since: int, first: int | None, latest: int) -> bytes | None:
    """The gap message for a replay from ``since``, or None when nothing missed is lost."""
    trimmed = first is not None and since + 1 < first and since < latest
    if not (trimmed or since > latest):
        return None
    notice = {
        "type": "gap",
        "channel": channel_name,
        "since": since,
        "first_seq": first,
        "latest_seq": latest,
    }
    return json.dumps(notice, separators=(",", ":")).encode("utf-8")


def deliver(
    connection_id: str,
    channel_name: str,
    since: int,
    connect_wait: float | None = None,
    presence: bool = False,
) -> bool:
    """Send ``connection_id`` what ``channel_name`` published after ``since``, then ``done``.

    ``connect_wait``: seconds 410 answers are retried before the first post gets through
    (default ``WEBSOCKETS["replay_connect_wait_seconds"]``; 0 for an open connection). True
    when the final batch was delivered; False when the connection is gone (or unknown).
    ``presence``: the session's view has ``PRESENCE`` on (see ``_revive``).
    """
    session = (
        WebSocketSession.objects.select_related("api_gateway")
        .filter(connection_id=connection_id)
        .first()
    )
    if session is None or session.api_gateway is None:
        logger.info("No replay for %s: no such session", connection_id)
        return False
    if connect_wait is None:
        connect_wait = float(websocket_setting("replay_connect_wait_seconds"))
    client = aws.management_client(session.api_gateway.management_endpoint)
    poster = _Poster(client, connection_id, connect_wait, presence)
    log = ChannelMessage.objects.filter(channel_name=channel_name)
    bounds = log.aggregate(first=Min("seq"), latest=Max("seq"))
    first, latest = bounds["first"], bounds["latest"] or 0
    notice = gap_notice(channel_name, since, first, latest)
    if notice is not None and not poster.post(notice):
        return False
    position = min(since, latest)
    batch = _Batch(channel_name)
    while True:
        # Read until a read finds nothing new: then done, so nothing published between
        # ``since`` and live delivery is missed.
        while rows := list(
            log.filter(seq__gt=position).order_by("seq").values_list("seq", "payload")[:READ_CHUNK]
        ):
            for seq, payload in rows:
                text = stamp(payload, seq)
                if batch.fits(text):
                    batch.add(text)
                    continue
                if batch.messages and not poster.post(batch.close(done=False)):
                    return False
                if batch.fits(text):
                    batch.add(text)
                elif not poster.post_parts(text):
                    return False
            position = rows[-1][0]
        revived_already = poster.revived
        if not poster.post(batch.close(done=True)):
            return False
        # Revived only by this last post: a broadcast that skipped the session while it was
        # marked gone may have been published after the last read; if so, one more batch.
        if poster.revived == revived_already or not log.filter(seq__gt=position).exists():
            return True


def schedule(connection_id: str, channel_name: str, since: int, presence: bool = False) -> None:
    """Run ``deliver`` after this response: on Lambda in an asynchronous invocation of the
    function (``REPLAY_EVENT_KEY``), else (or if the invoke fails) in a daemon thread."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        function = fanout_function()
        event = {
            REPLAY_EVENT_KEY: {
                "connection_id": connection_id,
                "channel": channel_name,
                "since": since,
                "presence": presence,
            }
        }
        payload = json.dumps(event, separators=(",", ":")).encode("utf-8")
        if invoke_async(aws.invoke_client(), function, payload, Backoff.from_settings()):
            return
        logger.warning(
            "Replay for %s runs in a thread of this invocation (the invoke of %s failed): it "
            "may stall until the container's next event",
            connection_id,
            function,
        )
    _workers.submit((connection_id, channel_name, since, presence))


class _Workers:
    """A few daemon threads that run the replays of this process, one after another each:
    a reconnect storm (a deploy drops every socket at once) queues its replays instead of
    opening a thread and a database connection per connection. Started on first use, and
    again in a forked child (threads do not survive a fork)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[str, str, int, bool]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, job: tuple[str, str, int, bool]) -> None:
        with self._lock:
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            if len(self._threads) < self.size:
                thread = threading.Thread(target=self._run, name="ws-replay", daemon=True)
                self._threads.append(thread)
                thread.start()
        self._jobs.put(job)

    def _run(self) -> None:
        while True:
            _deliver_in_thread(*self._jobs.get())

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._threads = []


_workers = _Workers(REPLAY_WORKERS)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_workers.reset_after_fork)


def _deliver_in_thread(connection_id: str, channel_name: str, since: int, presence: bool) -> None:
    try:
        deliver(connection_id, channel_name, since, presence=presence)
    except aws.errors() as error:
        # AWS refused a post, or the @connections API could not be reached (a network fault,
        # a gateway shutting down): one line, no traceback; the client asks again on its own.
        logger.warning("Replay to %s failed: %s", connection_id, aws.describe(error))
    except Exception:
        logger.exception("Replay to %s failed", connection_id)
    finally:
        connections.close_all()  # this thread's own connections


def run_replay_event(body: Any) -> dict[str, Any]:
    """Handler side of ``schedule`` on Lambda: one connection's replay."""
    if not isinstance(body, dict):
        return {"statusCode": 400, "body": "Malformed replay event"}
    connection_id, channel_name = body.get("connection_id"), body.get("channel")
    since = valid_since(body.get("since"))
    if (
        not isinstance(connection_id, str)
        or not is_valid_connection_id(connection_id)
        or not isinstance(channel_name, str)
        or not channel_name
        or since is None
    ):
        return {"statusCode": 400, "body": "Malformed replay event"}
    delivered = deliver(connection_id, channel_name, since, presence=body.get("presence") is True)
    return {"statusCode": 200, "delivered": delivered}


# ----------------------------------------------------------------- retention


def trim() -> int:
    """Delete stored messages beyond ``WEBSOCKETS["replay_max_messages"]`` per channel and
    older than ``["replay_max_age_seconds"]``; each channel's newest row always stays (its
    numbering continues from it). Returns how many rows were deleted."""
    newest = Subquery(
        ChannelMessage.objects.filter(channel_name=OuterRef("channel_name"))
        .order_by("-seq")
        .values("seq")[:1]
    )
    deleted = 0
    max_messages = websocket_setting("replay_max_messages")
    if max_messages:
        keep = max(1, int(max_messages))
        cutoff = ExpressionWrapper(newest - keep, output_field=PositiveBigIntegerField())
        deleted += ChannelMessage.objects.filter(seq__lte=cutoff).delete()[0]
    max_age = websocket_setting("replay_max_age_seconds")
    if max_age:
        before = timezone.now() - timedelta(seconds=float(max_age))
        deleted += ChannelMessage.objects.filter(created_on__lt=before, seq__lt=newest).delete()[0]
    return deleted
