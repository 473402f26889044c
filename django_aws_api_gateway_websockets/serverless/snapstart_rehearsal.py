"""SnapStart rehearsal: the first events a copy will serve, played once before the snapshot.

A restored copy pays for everything its first CONNECT does for the first time: Django's
per-model and per-field caches, ``isinstance`` caches of abstract classes, the interpreter's
specialised bytecode, and (on Linux) a copy of each memory page it writes. Played before the
snapshot, that work is done once, in the snapshot, for every copy.

Opt-in (``WEBSOCKETS["snapstart_rehearsal"]``), because it runs the project's own code at
publish time: its middleware, its WebSocket view's connect and disconnect, and the user
model's ``create_user`` with its signal receivers. What it writes is in one transaction on
each database that installed models write to, all rolled back, so ``on_commit`` callbacks
(presence announcements, replays) never run; its gateway posts only to a ``.invalid`` host;
its log lines, metrics and error mails are dropped. Only with a session engine that keeps
sessions in the database or the cookie: a cache's session (and the cache client's socket)
would outlive it. A rehearsal that fails is logged and only costs speed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

ROUNDS = 3  # the interpreter specialises bytecode after a couple of runs of it
SOURCE_IP = "192.0.2.1"  # TEST-NET-1 (RFC 5737): no real client has it
API_ID = "snapstart"
STAGE = "rehearsal"
ENDPOINT = "https://snapstart-rehearsal.invalid"  # RFC 6761: never resolves
# Session engines that store nothing outside the database (or store nothing at all).
SESSION_ENGINES = (
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.signed_cookies",
)


@dataclass
class Rehearsal:
    """What the rehearsed events were answered: every status, and the first refusal's body
    (the view's reason, since its log lines were dropped)."""

    statuses: list[int] = field(default_factory=list)
    first_refusal: str = ""

    @property
    def answered(self) -> bool:
        return all(200 <= status < 300 for status in self.statuses)

    def record(self, result: Any) -> None:
        status = int(result.get("statusCode", 0)) if isinstance(result, dict) else 0
        self.statuses.append(status)
        if not 200 <= status < 300 and not self.first_refusal:
            body = result.get("body") if isinstance(result, dict) else result
            self.first_refusal = str(body)[:200]


def why_not(handler: Callable[[Any, Any], Any]) -> str:
    """Why this process must not rehearse (empty when it may)."""
    from django.conf import settings

    if not hasattr(handler, "mark_cold_start"):
        return "the handler answers every event with an error (see the set-up error above)"
    engine = getattr(settings, "SESSION_ENGINE", "")
    if engine not in SESSION_ENGINES:
        return f"SESSION_ENGINE {engine!r} keeps sessions outside the database"
    return ""


def rehearse(handler: Callable[[Any, Any], Any]) -> Rehearsal:
    """CONNECT and DISCONNECT a made-up user ``ROUNDS`` times through ``handler``. Nothing it
    writes outlives it."""
    from django.contrib.auth import get_user_model

    from ..local_gateway.events import ConnectionInfo, aws_id, connect_event, disconnect_event
    from ..models import ApiGateway
    from .local import authenticate_connect_event

    rehearsal = Rehearsal()
    with _quiet(), _receivers_kept(), _rolled_back():
        _keep_django_from_closing_connections()
        name = f"snapstart-rehearsal-{os.urandom(4).hex()}"
        # Its own channel: even a send that did not wait for the commit would find no one.
        ApiGateway.objects.create(
            api_name=name,
            api_id=API_ID,
            stage_name=STAGE,
            management_endpoint_url=ENDPOINT,
            default_channel_name=name,
        )
        user_model = get_user_model()
        user = user_model._default_manager.create_user(**{user_model.USERNAME_FIELD: name})
        host = rehearsal_host()
        for _ in range(ROUNDS):
            info = ConnectionInfo(
                connection_id=aws_id(),
                api_id=API_ID,
                stage=STAGE,
                domain_name=host,
                source_ip=SOURCE_IP,
                user_agent="snapstart-rehearsal",
            )
            connect = connect_event(info, "/", _handshake_headers(host), scheme="https")
            rehearsal.record(handler(authenticate_connect_event(connect, user), None))
            rehearsal.record(handler(disconnect_event(info, 1000, ""), None))
    return rehearsal


def rehearsal_host() -> str:
    """A host ``ALLOWED_HOSTS`` admits (the WebSocket view refuses any other)."""
    from django.conf import settings

    for pattern in getattr(settings, "ALLOWED_HOSTS", []):
        if pattern == "*":
            return "snapstart-rehearsal.invalid"
        if pattern.startswith("."):
            return "snapstart-rehearsal" + pattern
        if pattern:
            return pattern
    return "localhost"


def _handshake_headers(host: str) -> list[tuple[str, str]]:
    """A browser's handshake from a page of the socket's own host."""
    return [
        ("Host", host),
        ("Origin", f"https://{host}"),
        ("Sec-WebSocket-Key", base64.b64encode(os.urandom(16)).decode()),
        ("Sec-WebSocket-Version", "13"),
        ("User-Agent", "snapstart-rehearsal"),
    ]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No log line, metric (powertools prints them to stdout) or error mail comes from a
    rehearsal."""
    from ..views import MAIL_MUTED

    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    muted = MAIL_MUTED.set(True)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        MAIL_MUTED.reset(muted)
        logging.disable(previous)


@contextlib.contextmanager
def _rolled_back() -> Iterator[None]:
    """One transaction on each database that installed models write to (sessions, users,
    tokens and the project's own rows may each have their own), all rolled back, whatever
    happens inside."""
    from django.apps import apps
    from django.db import router, transaction

    aliases = sorted({router.db_for_write(model) for model in apps.get_models()})
    with contextlib.ExitStack() as stack:
        for alias in aliases:
            stack.enter_context(transaction.atomic(using=alias))
            stack.callback(transaction.set_rollback, True, using=alias)
        yield


@contextlib.contextmanager
def _receivers_kept() -> Iterator[None]:
    """Whatever the rehearsal changes in the request signals' receivers is undone, in their
    order: the handler's database probe must keep running after Django's clean-up."""
    from django.core.signals import request_finished, request_started

    saved = [(signal, list(signal.receivers)) for signal in (request_started, request_finished)]
    try:
        yield
    finally:
        for signal, receivers in saved:
            with signal.lock:
                signal.receivers[:] = receivers
                signal.sender_receivers_cache.clear()


def _keep_django_from_closing_connections() -> None:
    """Django closes a connection at each request's start and end when it is in a
    transaction it did not expect: during the rehearsal that transaction is the point."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
