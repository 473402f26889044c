"""Presence (the view's PRESENCE): who is in a channel, and the join and leave events the
others get, through the Lambda handler with the outbox standing in for @connections, with
real commits (the events go out after them)."""

from __future__ import annotations

import io
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.http import JsonResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone

from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.testing import WebSocketClient
from django_aws_api_gateway_websockets.views import WebSocketView

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


class PresenceView(WebSocketView):
    USE_WS_TOKEN = False
    RATE_LIMIT_ENABLED = False
    PRESENCE = True
    ADDITIONAL_ALLOWED_HANDLERS = {"change_channel"}

    def say(self, request, *args, **kwargs):
        """A broadcast to the channel: it finds the connections that are gone."""
        room = WebSocketSession.objects.filter(channel_name=self.websocket_session.channel_name)
        report = room.send_message({"type": "said", "text": self.body.get("text")})
        return JsonResponse({"delivered": report.delivered, "gone": report.gone})

    def poke(self, request, *args, **kwargs):
        """A send to one named connection only."""
        sessions = WebSocketSession.objects.filter(connection_id=self.body.get("to"))
        return JsonResponse({"gone": sessions.send_message({"type": "poke"}).gone})


class QuietView(PresenceView):
    PRESENCE = False


class NoMalloryView(PresenceView):
    """A narrower audience: mallory is never told who comes and goes."""

    def presence_audience(self, channel_name):
        return WebSocketSession.objects.exclude(user__username="mallory")


class SlowConnectView(PresenceView):
    """Its $connect stays open a while after storing the session, so connects overlap."""

    def connect(self, request, *args, **kwargs):
        time.sleep(0.2)
        return super().connect(request, *args, **kwargs)


class RefusingView(PresenceView):
    def connect(self, request, *args, **kwargs):
        return JsonResponse({"error": "Not today"}, status=403)


urlpatterns = [
    path("ws/<slug:route>", PresenceView.as_view()),
    path("quiet/<slug:route>", QuietView.as_view()),
    path("private/<slug:route>", NoMalloryView.as_view()),
    path("slow/<slug:route>", SlowConnectView.as_view()),
    path("refusing/<slug:route>", RefusingView.as_view()),
]


@pytest.fixture
def users(django_user_model):
    return {
        name: django_user_model.objects.create_user(username=name, password=name)
        for name in ("alice", "bob", "carol", "mallory")
    }


@pytest.fixture
def socket(api_gateway, websocket_outbox, users):
    """``socket("alice")``: a connected client of that user (None: anonymous)."""

    def open_socket(name, channel="lobby", path="/ws/{route}"):
        client = WebSocketClient(api_gateway, outbox=websocket_outbox, websocket_path=path)
        if name is not None:
            client.force_login(users[name])
        assert client.connect(channel=channel).status_code == 200
        return client

    return open_socket


def presence_events(client):
    return [m for m in client.received if m.get("type") == "presence"]


def event(kind, user, users, anonymous=0, channel="lobby"):
    return {
        "type": "presence",
        "channel": channel,
        "event": kind,
        "user": user,
        "users": users,
        "anonymous": anonymous,
    }


def test_the_first_to_join_a_channel_costs_no_member_list(socket):
    """Nobody else is there to tell: the join looks for an audience and stops (a cold
    Lambda's first connect is often this one)."""
    with CaptureQueriesContext(connection) as captured:
        alice = socket("alice", channel="empty")
    sql = [q["sql"] for q in captured.captured_queries]
    assert not [q for q in sql if "DISTINCT" in q or "COUNT(" in q], sql
    bob = socket("bob", channel="empty")
    assert presence_events(alice) == [event("join", "bob", ["alice", "bob"], channel="empty")]
    assert presence_events(bob) == []


def test_a_join_is_announced_to_the_others_and_a_leave_when_the_socket_closes(socket):
    alice = socket("alice")
    bob = socket("bob")
    carol = socket("carol")
    elsewhere = socket("mallory", channel="other")

    assert presence_events(alice) == [
        event("join", "bob", ["alice", "bob"]),
        event("join", "carol", ["alice", "bob", "carol"]),
    ]
    # Still in its $connect when its join went out: a post would have met a 410.
    assert presence_events(carol) == []
    assert WebSocketSession.objects.present_users("lobby") == ["alice", "bob", "carol"]

    bob.disconnect()
    assert presence_events(carol) == [event("leave", "bob", ["alice", "carol"])]
    assert presence_events(alice)[-1] == event("leave", "bob", ["alice", "carol"])
    assert presence_events(elsewhere) == []
    assert WebSocketSession.objects.present_users("lobby") == ["alice", "carol"]


def test_a_user_with_several_tabs_joins_with_the_first_and_leaves_with_the_last(socket):
    alice = socket("alice")
    bob_tab_1 = socket("bob")
    bob_tab_2 = socket("bob")
    assert presence_events(alice) == [event("join", "bob", ["alice", "bob"])]
    assert presence_events(bob_tab_1) == []

    bob_tab_1.disconnect()
    assert presence_events(alice) == [event("join", "bob", ["alice", "bob"])]
    assert WebSocketSession.objects.present_users("lobby") == ["alice", "bob"]
    bob_tab_2.disconnect()
    assert presence_events(alice)[1:] == [event("leave", "bob", ["alice"])]


def test_anonymous_sessions_are_counted_and_every_change_is_announced(socket):
    alice = socket("alice")
    first = socket(None)
    second = socket(None)
    assert presence_events(alice) == [
        event("join", None, ["alice"], anonymous=1),
        event("join", None, ["alice"], anonymous=2),
    ]
    first.disconnect()
    assert presence_events(alice)[-1] == event("leave", None, ["alice"], anonymous=1)
    assert presence_events(second) == [event("leave", None, ["alice"], anonymous=1)]
    assert WebSocketSession.objects.present_users("lobby") == ["alice"]
    assert WebSocketSession.objects.present_in("lobby").count() == 2


def test_a_connection_found_gone_by_a_send_leaves_exactly_once(socket, websocket_outbox):
    alice = socket("alice")
    bob = socket("bob")
    carol = socket("carol")
    # bob's socket closed without a $disconnect reaching the view (yet).
    websocket_outbox.mark_gone(bob.connection_id)

    assert alice.send({"action": "say", "text": "hi"}).json() == {"delivered": 2, "gone": 1}
    leave = event("leave", "bob", ["alice", "carol"])
    assert presence_events(alice)[-1] == leave
    assert presence_events(carol)[-1] == leave

    # Another send, and the late $disconnect, find it gone again: no second leave.
    assert carol.send({"action": "say", "text": "again"}).json()["gone"] == 0
    bob.disconnect()
    for client in (alice, carol):
        assert [e for e in presence_events(client) if e["event"] == "leave"] == [leave]


def test_leaves_that_meet_more_gone_connections_are_each_sent_once(socket, websocket_outbox):
    """bob's leave goes to carol, who is gone too: her leave follows, without recursion."""
    alice = socket("alice")
    bob = socket("bob")
    carol = socket("carol")
    websocket_outbox.mark_gone(bob.connection_id)
    websocket_outbox.mark_gone(carol.connection_id)

    assert alice.send({"action": "poke", "to": bob.connection_id}).json() == {"gone": 1}

    leaves = [e for e in presence_events(alice) if e["event"] == "leave"]
    assert leaves == [event("leave", "bob", ["alice", "carol"]), event("leave", "carol", ["alice"])]
    assert WebSocketSession.objects.present_users("lobby") == ["alice"]
    assert not WebSocketSession.objects.filter(presence=True).exclude(
        connection_id=alice.connection_id
    )


def test_a_missed_disconnect_stops_counting_at_two_hours_and_the_cleanup_announces_it(socket):
    alice = socket("alice")
    bob = socket("bob")
    # API Gateway closed bob's socket at its 2-hour maximum; the $disconnect never came.
    WebSocketSession.objects.filter(connection_id=bob.connection_id).update(
        created_on=timezone.now() - timedelta(hours=2, seconds=1)
    )
    assert WebSocketSession.objects.present_users("lobby") == ["alice"]
    assert presence_events(alice) == [event("join", "bob", ["alice", "bob"])]

    call_command("clearWebSocketSessions", stdout=io.StringIO())

    assert presence_events(alice)[-1] == event("leave", "bob", ["alice"])
    assert not WebSocketSession.objects.filter(connection_id=bob.connection_id).exists()
    assert WebSocketSession.objects.get(connection_id=alice.connection_id).connected
    call_command("clearWebSocketSessions", stdout=io.StringIO())
    assert len(presence_events(alice)) == 2


def test_changing_channel_leaves_the_old_one_and_joins_the_new_one(socket):
    alice = socket("alice")
    bob = socket("bob")
    carol = socket("carol", channel="other")

    assert bob.send({"action": "change_channel", "channel": "other"}).json() == {"channel": "other"}

    assert presence_events(alice)[-1] == event("leave", "bob", ["alice"])
    assert presence_events(carol) == [event("join", "bob", ["bob", "carol"], channel="other")]
    assert WebSocketSession.objects.present_users("other") == ["bob", "carol"]


def test_the_view_narrows_who_hears_presence(socket):
    mallory = socket("mallory", path="/private/{route}")
    alice = socket("alice", path="/private/{route}")
    socket("bob", path="/private/{route}")
    assert presence_events(alice) == [event("join", "bob", ["alice", "bob", "mallory"])]
    assert presence_events(mallory) == []


def test_presence_off_sends_no_events_and_sets_no_flag(socket, websocket_outbox):
    alice = socket("alice", path="/quiet/{route}")
    bob = socket("bob", path="/quiet/{route}")
    bob.disconnect()
    assert websocket_outbox == []
    assert not WebSocketSession.objects.filter(presence=True).exists()
    assert alice.send({"action": "change_channel", "channel": "other"}).status_code == 200
    assert websocket_outbox == []
    assert WebSocketSession.objects.present_users("other") == []


def test_concurrent_connects_of_one_user_give_exactly_one_join(socket, api_gateway, users):
    watcher = socket("alice")
    tabs = 8
    barrier = threading.Barrier(tabs)
    statuses: list[int] = []

    def open_tab() -> None:
        try:
            client = WebSocketClient(
                api_gateway, outbox=watcher.outbox_or_none(), websocket_path="/slow/{route}"
            )
            client.force_login(users["bob"])
            barrier.wait()
            statuses.append(client.connect(channel="lobby").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=open_tab) for _ in range(tabs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert statuses == [200] * tabs
    assert presence_events(watcher) == [event("join", "bob", ["alice", "bob"])]
    assert WebSocketSession.objects.present_in("lobby").filter(user=users["bob"]).count() == tabs


def test_a_refused_connect_announces_nothing(socket, api_gateway, websocket_outbox, users):
    alice = socket("alice")
    client = WebSocketClient(
        api_gateway, outbox=websocket_outbox, websocket_path="/refusing/{route}"
    )
    client.force_login(users["bob"])
    assert client.connect(channel="lobby").status_code == 403
    assert presence_events(alice) == []
    assert WebSocketSession.objects.present_users("lobby") == ["alice"]


def test_tabs_of_one_user_closing_at_once_give_exactly_one_leave(socket):
    watcher = socket("alice")
    tabs = [socket("bob") for _ in range(6)]
    barrier = threading.Barrier(len(tabs))

    def close(tab) -> None:
        try:
            barrier.wait()
            tab.disconnect()
        finally:
            connection.close()

    threads = [threading.Thread(target=close, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert presence_events(watcher) == [
        event("join", "bob", ["alice", "bob"]),
        event("leave", "bob", ["alice"]),
    ]
