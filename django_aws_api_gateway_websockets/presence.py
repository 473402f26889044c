"""Presence: who is in a channel, and the join and leave events its other members are sent.

A session is present while it is connected, was stored by a view with ``PRESENCE`` on and is
younger than API Gateway's 2-hour maximum (``WebSocketSessionQuerySet.present_in``). Its
``presence`` flag also means "its leave has not been announced": every path that ends a
session (its ``$disconnect``, a 410 seen by any send, the clean-up) clears the flag with one
conditional UPDATE, and only the caller whose UPDATE changed the row announces, so a leave
goes out once however many paths notice. Whether a user's connection is their first or last
in a channel is decided under a lock on (channel, user) (a PostgreSQL advisory lock held to
the commit; SQLite serialises writers), so tabs connecting or closing at once give one event.
Events are sent after the commit, never from inside the transaction that decided them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from .models import MAX_CONNECTION_SECONDS, WebSocketSession, serialize_on

JOIN = "join"
LEAVE = "leave"
# Gone sessions looked up per query when a send reports them.
GONE_LOOKUP_BATCH = 2000

# sessions that may hear a channel's events, given the channel's name
Audience = Callable[[str], QuerySet[WebSocketSession]]

# Gone ids reported while this thread is already announcing leaves: the outer call sends their
# leaves too, so leave events that meet more gone connections never recurse.
_announcing = threading.local()


@dataclass(frozen=True)
class Change:
    """One session joined or left ``channel``; ``user``: a username, None for anonymous."""

    channel: str
    event: str
    user: str | None


def _alias() -> str:
    return router.db_for_write(WebSocketSession)


def _lock(session: WebSocketSession, channel: str) -> None:
    """Queue concurrent decisions about one user in one channel (inside a transaction)."""
    if session.user_id is not None:
        serialize_on(_alias(), f"websocket-presence:{channel}:{session.user_id}")


def _username(session: WebSocketSession) -> str | None:
    return session.user.get_username() if session.user_id is not None else None


def _user_stays(session: WebSocketSession, channel: str) -> bool:
    """Whether the session's user has another session in ``channel`` not yet announced as
    gone (a session being ended elsewhere has its flag cleared by then, under the lock)."""
    cutoff = timezone.now() - timedelta(seconds=MAX_CONNECTION_SECONDS)
    return (
        WebSocketSession.objects.filter(
            channel_name=channel,
            user_id=session.user_id,
            presence=True,
            created_on__gt=cutoff,
        )
        .exclude(pk=session.pk)
        .exists()
    )


def begin(session: WebSocketSession) -> Change | None:
    """Inside the transaction that stored ``session`` with ``presence=True``: the join to
    announce once it commits, or None when the user was already present (another tab)."""
    _lock(session, session.channel_name)
    if session.user_id is not None and _user_stays(session, session.channel_name):
        return None
    return Change(session.channel_name, JOIN, _username(session))


def end(session: WebSocketSession) -> Change | None:
    """Clear the session's presence; the leave to announce, or None when its leave was
    already announced (by another path) or the user is still present in another tab."""
    with transaction.atomic(using=_alias()):
        _lock(session, session.channel_name)
        claimed = WebSocketSession.objects.filter(pk=session.pk, presence=True).update(
            presence=False
        )
        session.presence = False
        if not claimed:
            return None
        if session.user_id is not None and _user_stays(session, session.channel_name):
            return None
        return Change(session.channel_name, LEAVE, _username(session))


def rejoin(connection_id: str) -> None:
    """A session a 410 during its ``$connect`` handshake marked gone (and announced as
    leaving) turned out to be there after all (the replay's posts reach it): present again,
    with its join announced anew unless its user is present in another tab. Its view's
    ``presence_audience`` is not known here: every present session hears it."""
    with transaction.atomic(using=_alias()):
        session = (
            WebSocketSession.objects.select_related("user")
            .filter(connection_id=connection_id, connected=True, presence=False)
            .first()
        )
        if session is None:
            return
        change = begin(session)
        WebSocketSession.objects.filter(pk=session.pk).update(presence=True)
        session.presence = True
        announce([change], exclude=connection_id)


def event(channel: str, kind: str, user: str | None) -> dict[str, Any]:
    """The presence event as clients receive it, with who is present now."""
    present = WebSocketSession.objects.present_in(channel)
    return {
        "type": "presence",
        "channel": channel,
        "event": kind,
        "user": user,
        "users": WebSocketSession.objects.present_users(channel),
        "anonymous": present.filter(user__isnull=True).count(),
    }


def announce(
    changes: Iterable[Change | None], audience: Audience | None = None, exclude: str = ""
) -> None:
    """After the current transaction commits, send each change to the present sessions of its
    channel that ``audience`` allows (default: all), except connection ``exclude``.

    Changes of one channel and kind are sent with the state after all of them: one event per
    user who came or went, and one for anonymous sessions only if no user event carried
    their new count."""
    grouped: dict[tuple[str, str], list[str | None]] = {}
    for change in changes:
        if change is not None:
            grouped.setdefault((change.channel, change.event), []).append(change.user)
    if grouped:
        transaction.on_commit(lambda: _send(grouped, audience, exclude), using=_alias())


def _send(
    grouped: dict[tuple[str, str], list[str | None]], audience: Audience | None, exclude: str
) -> None:
    for (channel, kind), users in grouped.items():
        named = sorted({user for user in users if user is not None})
        sessions = (audience(channel) if audience else WebSocketSession.objects.all()).present_in(
            channel
        )
        if exclude:
            sessions = sessions.exclude(connection_id=exclude)
        if not sessions.exists():
            # Nobody to tell (the first to join a room): one query instead of the member
            # list, the anonymous count and the rows of an empty send.
            continue
        for user in named or [None]:
            sessions.send_message(event(channel, kind, user))


def end_gone(connection_ids: list[str]) -> None:
    """The leaves of the presence sessions among ``connection_ids``, which a send found gone."""
    for start in range(0, len(connection_ids), GONE_LOOKUP_BATCH):
        batch = connection_ids[start : start + GONE_LOOKUP_BATCH]
        # connected=False: a session a late 410 named but that is connected again (its
        # replay reached it after its handshake) has not left.
        sessions = WebSocketSession.objects.select_related("user").filter(
            connection_id__in=batch, presence=True, connected=False
        )
        announce([end(session) for session in sessions])


def on_messages_sent(sender: Any, report: Any, **kwargs: Any) -> None:
    """``messages_sent`` receiver: sessions a send marked gone leave their channels."""
    gone = list(report.gone_connection_ids)
    if not gone:
        return
    pending: list[str] | None = getattr(_announcing, "pending", None)
    if pending is not None:
        pending.extend(gone)
        return
    _announcing.pending = gone
    try:
        while _announcing.pending:
            batch, _announcing.pending = _announcing.pending, []
            end_gone(batch)
    finally:
        _announcing.pending = None


def sweep() -> int:
    """For the scheduled clean-up: mark sessions older than API Gateway's 2-hour maximum
    disconnected (their ``$disconnect`` was missed) and announce the leaves not yet sent
    (those too, and any a failed announcement left behind). Returns how many were marked."""
    cutoff = timezone.now() - timedelta(seconds=MAX_CONNECTION_SECONDS)
    outlived = WebSocketSession.objects.filter(connected=True, created_on__lt=cutoff)
    marked = outlived.update(connected=False)
    unannounced = WebSocketSession.objects.filter(presence=True, connected=False)
    end_gone(list(unannounced.values_list("connection_id", flat=True)))
    return marked
