"""Replay after reconnects: ``queryset.broadcast`` stores each channel message with its seq, a
connect with ``?since=N`` (or the ``replay`` action) receives what it missed, in order, then
``done``, and the clean-up trims the log. Through the view with the testing package's client
and outbox, through the Lambda handler, and end to end through ``runapigateway``."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from datetime import timedelta
from unittest.mock import Mock, patch

import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.db import connection, transaction
from django.http import JsonResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.utils import timezone
from websockets.sync.client import connect as ws_connect

from django_aws_api_gateway_websockets import models, replay
from django_aws_api_gateway_websockets.models import (
    ChannelMessage,
    ConnectionRateLimit,
    WebSocketSession,
)
from django_aws_api_gateway_websockets.sending import MAX_MESSAGE_BYTES
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.testing import WebSocketClient, capture_sends
from django_aws_api_gateway_websockets.views import REPLAY_REQUESTS, WebSocketView
from tests.e2e_support import ROOT, Browser, GatewayProcess, e2e_database
from tests.test_query_counts import statements

INVALID_SINCE = {"error": "Invalid 'since'"}


class OpenView(WebSocketView):
    USE_WS_TOKEN = False


class OwnReplayView(WebSocketView):
    """A project that already had a ``replay`` handler keeps it."""

    USE_WS_TOKEN = False

    def replay(self, request, *args, **kwargs):
        return JsonResponse({"own": "replay"})


class RefusingView(WebSocketView):
    """Its connect hook refuses: the session is rolled back, so nothing may be replayed."""

    USE_WS_TOKEN = False

    def connect(self, request, *args, **kwargs):
        return JsonResponse({"error": "closed"}, status=403)


class RoomView(WebSocketView):
    """Channels in CLOSED are no longer open to anyone (a member removed from a room)."""

    USE_WS_TOKEN = False
    CLOSED: set[str] = set()

    def is_channel_allowed(self, request, channel_name):
        return channel_name not in self.CLOSED


urlpatterns = [
    path("ws/<slug:route>", OpenView.as_view()),
    path("room/<slug:route>", RoomView.as_view()),
    path("own/<slug:route>", OwnReplayView.as_view()),
    path("refusing/<slug:route>", RefusingView.as_view()),
]


def add_session(gateway, connection_id, channel="lobby", **fields):
    return WebSocketSession.objects.create(
        connection_id=connection_id, channel_name=channel, api_gateway=gateway, **fields
    )


def publish(channel, count, start=1):
    """``count`` broadcasts to ``channel``, numbered in their text from ``start``."""
    return [
        WebSocketSession.objects.broadcast(channel, {"type": "note", "n": n}).seq
        for n in range(start, start + count)
    ]


def replayed(messages):
    """(seqs of the replayed messages in arrival order, the done flags of the batches)."""
    seqs, dones = [], []
    for message in messages:
        if isinstance(message, dict) and message.get("type") == "replay":
            seqs += [m["seq"] for m in message["messages"]]
            dones.append(message["done"])
    return seqs, dones


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


def done_arrived(outbox, connection_id):
    return lambda: any(
        isinstance(m, dict) and m.get("type") == "replay" and m["done"]
        for m in outbox.to(connection_id)
    )


# ----------------------------------------------------------------- publishing


@pytest.mark.django_db
class TestBroadcast:
    def test_numbers_each_channel_from_one_and_stores_the_payload_without_seq(
        self, api_gateway, websocket_outbox
    ):
        assert publish("lobby", 3) == [1, 2, 3]
        assert publish("other", 2) == [1, 2]
        stored = ChannelMessage.objects.filter(channel_name="lobby").order_by("seq")
        assert [(m.seq, json.loads(m.payload)) for m in stored] == [
            (n, {"type": "note", "n": n}) for n in (1, 2, 3)
        ]

    def test_sends_the_stamped_text_seq_first_to_the_channels_connected_sessions(
        self, api_gateway, websocket_outbox
    ):
        add_session(api_gateway, "in-1")
        add_session(api_gateway, "in-2")
        add_session(api_gateway, "left", connected=False)
        add_session(api_gateway, "elsewhere", channel="other")
        report = WebSocketSession.objects.broadcast("lobby", {"type": "chat", "text": "hé"})
        assert (report.seq, report.delivered) == (1, 2)
        assert {m.connection_id for m in websocket_outbox} == {"in-1", "in-2"}
        stored = ChannelMessage.objects.get(channel_name="lobby").payload
        assert {m.text for m in websocket_outbox} == {replay.stamp(stored, 1)}
        assert websocket_outbox[0].text == '{"seq":1,"type":"chat","text":"hé"}'

    def test_messages_sent_receivers_see_the_seq(self, api_gateway, websocket_outbox):
        from django_aws_api_gateway_websockets.signals import messages_sent

        add_session(api_gateway, "in-1")
        publish("lobby", 2)
        seen = []

        def receiver(sender, report, **kwargs):
            seen.append((report.seq, report.delivered))

        messages_sent.connect(receiver)
        try:
            WebSocketSession.objects.broadcast("lobby", {"type": "note"})
            WebSocketSession.objects.filter(channel_name="lobby").send_message({"type": "plain"})
        finally:
            messages_sent.disconnect(receiver)
        assert seen == [(3, 1), (None, 1)]

    def test_a_filtered_queryset_is_a_private_audience_numbered_in_the_channel(
        self, api_gateway, websocket_outbox
    ):
        add_session(api_gateway, "member")
        add_session(api_gateway, "outsider")
        publish("lobby", 1)
        members = WebSocketSession.objects.filter(connection_id="member")
        report = members.broadcast("lobby", {"type": "secret"})
        assert report.seq == 2
        assert [m["seq"] for m in websocket_outbox.to("member")] == [1, 2]
        assert [m["seq"] for m in websocket_outbox.to("outsider")] == [1]

    @pytest.mark.parametrize("data", [{"seq": 4, "type": "x"}, ["not", "a", "dict"], "text"])
    def test_data_must_be_a_dict_without_seq(self, api_gateway, websocket_outbox, data):
        with pytest.raises(ValueError):
            WebSocketSession.objects.broadcast("lobby", data)
        assert not ChannelMessage.objects.exists()
        assert len(websocket_outbox) == 0

    def test_a_message_too_large_to_send_is_refused_before_it_is_stored(
        self, api_gateway, websocket_outbox
    ):
        with pytest.raises(ValueError):
            WebSocketSession.objects.broadcast("lobby", {"text": "x" * (MAX_MESSAGE_BYTES * 9)})
        assert not ChannelMessage.objects.exists()

    def test_inside_a_transaction_a_broadcast_numbers_on(self, api_gateway, websocket_outbox):
        with transaction.atomic():
            assert publish("lobby", 2) == [1, 2]
        assert publish("lobby", 1) == [3]

    def test_costs_one_insert_more_than_a_plain_send(self, api_gateway, websocket_outbox):
        add_session(api_gateway, "in-1")
        lobby = WebSocketSession.objects.filter(channel_name="lobby")
        with CaptureQueriesContext(connection) as plain:
            lobby.send_message({"type": "note"})
        with CaptureQueriesContext(connection) as stored:
            WebSocketSession.objects.broadcast("lobby", {"type": "note"})
        # (In the test's transaction the INSERT runs in a savepoint: not counted.)
        plain_sql, stored_sql = statements(plain), statements(stored)
        inserts = [s for s in stored_sql if s.lstrip().upper().startswith("INSERT")]
        assert len(inserts) == 1
        assert len(stored_sql) == len(plain_sql) + 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_publishers_get_distinct_seqs_without_gaps():
    """Real threads on the real database (on PostgreSQL they race for the same MAX + 1 and
    the losers retry): every message stored once, the numbers exactly 1..N, and each
    publisher's own numbers rising. Half of them publish inside their own transactions. On
    PostgreSQL a crowd: losers that only retried kept colliding with each other until one
    gave up with an IntegrityError (one in ten of 70 publishers' messages)."""
    publishers, each = (70, 8) if connection.vendor == "postgresql" else (8, 20)
    barrier = threading.Barrier(publishers)
    seqs: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            barrier.wait()
            mine = seqs.setdefault(number, [])
            for n in range(each):
                text = json.dumps({"by": number, "n": n})
                if number % 2:
                    with transaction.atomic():
                        mine.append(replay.publish("busy", text))
                else:
                    mine.append(replay.publish("busy", text))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(publishers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    every = sorted(seq for mine in seqs.values() for seq in mine)
    assert every == list(range(1, publishers * each + 1))
    assert all(mine == sorted(mine) for mine in seqs.values())
    stored = ChannelMessage.objects.filter(channel_name="busy")
    assert sorted(stored.values_list("seq", flat=True)) == every
    texts = [json.loads(p) for p in stored.values_list("payload", flat=True)]
    assert len({(t["by"], t["n"]) for t in texts}) == publishers * each


# ----------------------------------------------------------------- delivering


@pytest.mark.django_db
class TestDeliver:
    def test_what_was_missed_in_order_then_done(self, api_gateway, websocket_outbox):
        publish("lobby", 8)
        add_session(api_gateway, "back")
        assert replay.deliver("back", "lobby", 5, connect_wait=0) is True
        messages = websocket_outbox.to("back")
        assert [m["type"] for m in messages] == ["replay"]
        assert messages[0]["channel"] == "lobby"
        assert messages[0]["messages"] == [{"seq": n, "type": "note", "n": n} for n in (6, 7, 8)]
        assert messages[0]["done"] is True

    def test_nothing_missed_is_an_empty_done(self, api_gateway, websocket_outbox):
        publish("lobby", 3)
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 3, connect_wait=0)
        assert websocket_outbox.to("back") == [
            {"type": "replay", "channel": "lobby", "messages": [], "done": True}
        ]

    def test_since_zero_is_everything_retained(self, api_gateway, websocket_outbox):
        publish("lobby", 3)
        add_session(api_gateway, "new")
        replay.deliver("new", "lobby", 0, connect_wait=0)
        assert replayed(websocket_outbox.to("new")) == ([1, 2, 3], [True])

    def test_never_another_channels_messages(self, api_gateway, websocket_outbox):
        publish("lobby", 2)
        publish("other", 5)
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 0, connect_wait=0)
        (batch,) = websocket_outbox.to("back")
        assert [m["n"] for m in batch["messages"]] == [1, 2]
        assert {batch["channel"]} == {"lobby"}

    def test_batches_stay_within_one_post_and_keep_the_order(self, api_gateway, websocket_outbox):
        for n in range(30):
            WebSocketSession.objects.broadcast("lobby", {"n": n, "text": "é" * 5000})
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 0, connect_wait=0)
        posts = [m for m in websocket_outbox if m.connection_id == "back"]
        assert len(posts) > 1
        assert all(len(m.text.encode()) <= MAX_MESSAGE_BYTES for m in posts)
        assert replayed([m.data for m in posts]) == (
            list(range(1, 31)),
            [False] * (len(posts) - 1) + [True],
        )

    def test_a_stored_message_too_large_for_a_post_is_replayed_alone_in_parts_in_its_place(
        self, api_gateway, websocket_outbox
    ):
        big = 'ü"' * 100_000  # ~300 KB once escaped: over one post
        WebSocketSession.objects.broadcast("lobby", {"n": 1})
        WebSocketSession.objects.broadcast("lobby", {"n": 2, "text": big})
        WebSocketSession.objects.broadcast("lobby", {"n": 3})
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 0, connect_wait=0)
        posts = [m for m in websocket_outbox if m.connection_id == "back"]
        assert len(posts) > 3 and all(len(m.text.encode()) <= MAX_MESSAGE_BYTES for m in posts)
        first, whole, last = websocket_outbox.to("back")
        assert (first["type"], [m["seq"] for m in first["messages"]], first["done"]) == (
            "replay",
            [1],
            False,
        )
        assert whole == {"seq": 2, "n": 2, "text": big}
        assert ([m["seq"] for m in last["messages"]], last["done"]) == ([3], True)

    def test_a_trimmed_past_is_announced_as_a_gap_before_what_is_left(
        self, api_gateway, websocket_outbox, settings
    ):
        publish("lobby", 10)
        settings.WEBSOCKETS = {"replay_max_messages": 4}
        replay.trim()
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 2, connect_wait=0)
        gap, batch = websocket_outbox.to("back")
        assert gap == {
            "type": "gap",
            "channel": "lobby",
            "since": 2,
            "first_seq": 7,
            "latest_seq": 10,
        }
        assert replayed([batch]) == ([7, 8, 9, 10], [True])

    def test_no_gap_when_the_first_retained_is_the_next_one(self, api_gateway, websocket_outbox):
        publish("lobby", 10)
        ChannelMessage.objects.filter(seq__lte=5).delete()
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 5, connect_wait=0)
        assert [m["type"] for m in websocket_outbox.to("back")] == ["replay"]

    def test_a_since_from_the_future_is_a_gap_and_the_latest_is_the_position(
        self, api_gateway, websocket_outbox
    ):
        publish("lobby", 3)
        add_session(api_gateway, "back")
        replay.deliver("back", "lobby", 50, connect_wait=0)
        gap, done = websocket_outbox.to("back")
        assert (gap["type"], gap["since"], gap["first_seq"], gap["latest_seq"]) == ("gap", 50, 1, 3)
        assert done == {"type": "replay", "channel": "lobby", "messages": [], "done": True}

    def test_a_gap_on_an_empty_channel_names_no_first_seq(self, api_gateway, websocket_outbox):
        add_session(api_gateway, "back")
        replay.deliver("back", "empty", 4, connect_wait=0)
        gap = websocket_outbox.to("back")[0]
        assert (gap["first_seq"], gap["latest_seq"]) == (None, 0)

    def test_messages_published_while_replaying_are_in_the_final_batch(
        self, api_gateway, websocket_outbox, settings
    ):
        """The re-read before done: what is published between the first read and done."""
        for n in range(30):
            WebSocketSession.objects.broadcast("lobby", {"n": n, "text": "x" * 10000})
        add_session(api_gateway, "back")
        original = replay._Poster.post
        published = []

        def post_and_publish(poster, payload):
            if not published:  # while the first batch is posted, two more are published
                published.extend(publish("lobby", 2, start=100))
            return original(poster, payload)

        with patch.object(replay._Poster, "post", post_and_publish):
            replay.deliver("back", "lobby", 0, connect_wait=0)
        seqs, dones = replayed(websocket_outbox.to("back"))
        assert seqs == list(range(1, 33))
        assert dones[-1] is True and dones.count(True) == 1

    def test_waits_out_the_410s_of_the_handshake(self, api_gateway, websocket_outbox):
        publish("lobby", 3)
        add_session(api_gateway, "new")
        websocket_outbox.mark_gone("new")
        threading.Timer(0.3, websocket_outbox.gone_connections.discard, ["new"]).start()
        assert replay.deliver("new", "lobby", 1, connect_wait=5) is True
        assert replayed(websocket_outbox.to("new")) == ([2, 3], [True])
        assert len(websocket_outbox.gone) >= 1  # it did meet the handshake's 410s
        assert WebSocketSession.objects.get(connection_id="new").connected is True

    def test_revives_a_session_a_racing_broadcast_marked_gone(self, api_gateway, websocket_outbox):
        add_session(api_gateway, "new")
        websocket_outbox.mark_gone("new")
        report = WebSocketSession.objects.broadcast("lobby", {"type": "during handshake"})
        assert report.gone == 1
        assert WebSocketSession.objects.get(connection_id="new").connected is False
        websocket_outbox.gone_connections.discard("new")  # the handshake completes

        replay.deliver("new", "lobby", 0, connect_wait=1)

        assert WebSocketSession.objects.get(connection_id="new").connected is True
        assert replayed(websocket_outbox.to("new")) == ([1], [True])
        publish("lobby", 1, start=2)  # and live messages reach it again
        assert websocket_outbox.to("new")[-1]["seq"] == 2

    def test_a_revived_presence_session_is_present_again_and_its_join_announced(
        self, api_gateway, websocket_outbox, django_user_model, django_capture_on_commit_callbacks
    ):
        alice = django_user_model.objects.create_user("alice")
        bob = django_user_model.objects.create_user("bob")
        add_session(api_gateway, "bob-tab", user=bob, presence=True)
        add_session(api_gateway, "new", user=alice, presence=True)
        websocket_outbox.mark_gone("new")
        with django_capture_on_commit_callbacks(execute=True):
            WebSocketSession.objects.broadcast("lobby", {"type": "during handshake"})
        assert WebSocketSession.objects.present_users("lobby") == ["bob"]  # its leave went out
        websocket_outbox.gone_connections.discard("new")

        with django_capture_on_commit_callbacks(execute=True):
            replay.deliver("new", "lobby", 0, connect_wait=1, presence=True)

        assert WebSocketSession.objects.present_users("lobby") == ["alice", "bob"]
        presence_events = [m for m in websocket_outbox.to("bob-tab") if m.get("type") == "presence"]
        assert [(m["event"], m["user"], m["users"]) for m in presence_events] == [
            ("leave", "alice", ["bob"]),
            ("join", "alice", ["alice", "bob"]),
        ]
        assert not [m for m in websocket_outbox.to("new") if m.get("type") == "presence"]

    def test_a_fan_out_that_ends_after_the_revive_does_not_mark_the_session_gone_again(
        self, api_gateway, websocket_outbox
    ):
        """A big fan-out posts to a connection during its handshake (410); its replay reaches
        it and revives it while the fan-out is still running; the fan-out's verdict, settled
        at its end, must not make the open connection deaf again."""
        from django_aws_api_gateway_websockets import sending

        for n in range(3):
            add_session(api_gateway, f"old{n}")
        add_session(api_gateway, "new")
        websocket_outbox.mark_gone("new")  # its $connect handshake is not complete yet
        finish = sending._Broadcast.finish

        def slow_finish(broadcast):  # the rest of a large fan-out's posts take a while
            finish(broadcast)
            websocket_outbox.gone_connections.discard("new")  # the handshake completes
            assert replay.deliver("new", "lobby", 0, connect_wait=5) is True

        with patch.object(sending._Broadcast, "finish", slow_finish):
            WebSocketSession.objects.broadcast("lobby", {"type": "note", "n": 1})
        assert WebSocketSession.objects.get(connection_id="new").connected is True
        WebSocketSession.objects.broadcast("lobby", {"type": "note", "n": 2})
        assert websocket_outbox.to("new")[-1]["seq"] == 2

    def test_a_connection_that_never_opens_is_given_up_after_the_wait(
        self, api_gateway, websocket_outbox
    ):
        publish("lobby", 2)
        add_session(api_gateway, "never")
        websocket_outbox.mark_gone("never")
        assert replay.deliver("never", "lobby", 0, connect_wait=0.3) is False
        assert websocket_outbox.to("never") == []
        assert WebSocketSession.objects.get(connection_id="never").connected is False

    def test_an_unknown_connection_gets_nothing(self, api_gateway, websocket_outbox):
        publish("lobby", 2)
        assert replay.deliver("nobody", "lobby", 0, connect_wait=0) is False
        assert len(websocket_outbox) == 0


def test_stamp_puts_seq_first():
    assert replay.stamp('{"type":"x","n":1}', 17) == '{"seq":17,"type":"x","n":1}'
    assert replay.stamp("{}", 3) == '{"seq":3}'


# ----------------------------------------------------------------- through the view


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
class TestConnectWithSince:
    @pytest.fixture
    def client(self, api_gateway, websocket_outbox):
        return WebSocketClient(api_gateway, outbox=websocket_outbox)

    def test_receives_what_it_missed_then_live(self, client, websocket_outbox):
        publish("lobby", 5)
        response = client.connect("lobby", query={"since": "3"})
        assert response.status_code == 200
        wait_for(done_arrived(websocket_outbox, client.connection_id))
        assert replayed(client.received) == ([4, 5], [True])
        publish("lobby", 1, start=6)
        assert client.received[-1] == {"seq": 6, "type": "note", "n": 6}

    def test_a_reconnect_storm_queues_on_a_few_workers_and_every_replay_arrives(
        self, api_gateway, websocket_outbox
    ):
        publish("lobby", 3)
        ids = [f"storm{n}" for n in range(12)]
        for connection_id in ids:
            add_session(api_gateway, connection_id)
            websocket_outbox.mark_gone(connection_id)  # all still in their handshakes
        for connection_id in ids:
            replay.schedule(connection_id, "lobby", 0)
        time.sleep(0.3)
        busy = [t for t in threading.enumerate() if t.name == "ws-replay"]
        assert 1 <= len(busy) <= replay.REPLAY_WORKERS
        websocket_outbox.gone_connections.clear()  # the handshakes complete
        for connection_id in ids:
            wait_for(done_arrived(websocket_outbox, connection_id))
            assert replayed(websocket_outbox.to(connection_id)) == ([1, 2, 3], [True])

    def test_an_unreachable_connections_api_is_one_warning_not_a_traceback(
        self, api_gateway, caplog
    ):
        """A gateway shutting down (or a network fault) under a replay still retrying."""
        import socket as sockets

        with sockets.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        api_gateway.management_endpoint_url = f"http://127.0.0.1:{port}/local"
        api_gateway.save()
        add_session(api_gateway, "lonely")
        publish("lobby", 1)
        with caplog.at_level(logging.WARNING):
            replay._deliver_in_thread("lonely", "lobby", 0, False)
        failures = [r for r in caplog.records if "Replay to lonely failed" in r.getMessage()]
        assert len(failures) == 1 and failures[0].exc_info is None

    def test_without_since_nothing_is_replayed(self, client, websocket_outbox):
        publish("lobby", 5)
        client.connect("lobby")
        publish("lobby", 1, start=6)
        assert client.received == [{"seq": 6, "type": "note", "n": 6}]

    def test_a_since_beyond_the_log_gets_a_gap_notice(self, client, websocket_outbox):
        publish("lobby", 2)
        client.connect("lobby", query={"since": "99"})
        wait_for(done_arrived(websocket_outbox, client.connection_id))
        assert client.received[0]["type"] == "gap"
        assert client.received[0]["latest_seq"] == 2

    @pytest.mark.parametrize("since", ["abc", "-1", "1" * 19, "", "1.5", " 1", "٣"])
    def test_a_bad_since_is_a_400_and_no_connection(self, client, since, caplog):
        with caplog.at_level(logging.WARNING):
            response = client.connect("lobby", query={"since": since})
        assert response.status_code == 400
        assert response.json() == INVALID_SINCE
        assert not WebSocketSession.objects.exists()
        assert ConnectionRateLimit.objects.get().successful is False
        assert any("since" in record.getMessage() for record in caplog.records)

    def test_a_connect_the_view_refuses_gets_no_replay(self, api_gateway, websocket_outbox):
        publish("lobby", 3)
        client = WebSocketClient(
            api_gateway, outbox=websocket_outbox, websocket_path="/refusing/{route}"
        )
        with patch.object(replay, "schedule") as schedule:
            assert client.connect("lobby", query={"since": "0"}).status_code == 403
        schedule.assert_not_called()
        assert not WebSocketSession.objects.exists()

    def test_the_largest_since_is_accepted(self, client, websocket_outbox):
        assert client.connect("lobby", query={"since": "9" * 18}).status_code == 200
        wait_for(done_arrived(websocket_outbox, client.connection_id))


@pytest.mark.urls(__name__)
@pytest.mark.django_db
class TestReplayAction:
    @pytest.fixture
    def client(self, api_gateway, websocket_outbox):
        client = WebSocketClient(api_gateway, outbox=websocket_outbox)
        assert client.connect("lobby").status_code == 200
        return client

    def test_replays_from_the_sessions_channel_at_once(self, client):
        publish("lobby", 4)
        publish("other", 4)
        before = len(client.received)
        response = client.send({"action": "replay", "since": 2})
        assert (response.status_code, response.json()) == (200, {})
        assert replayed(client.received[before:]) == ([3, 4], [True])
        assert all(m["channel"] == "lobby" for m in client.received[before:])

    @pytest.mark.parametrize("since", [None, -1, 1.5, "x", 10**18, True, [1]])
    def test_a_bad_since_is_a_400(self, client, since):
        body = {"action": "replay"} if since is None else {"action": "replay", "since": since}
        response = client.send(body)
        assert (response.status_code, response.json()) == (400, INVALID_SINCE)

    def test_only_while_the_view_still_allows_the_channel(self, api_gateway, websocket_outbox):
        client = WebSocketClient(
            api_gateway, outbox=websocket_outbox, websocket_path="/room/{route}"
        )
        assert client.connect("lobby").status_code == 200
        publish("lobby", 2)
        RoomView.CLOSED.add("lobby")
        try:
            response = client.send({"action": "replay", "since": 0})
        finally:
            RoomView.CLOSED.clear()
        assert (response.status_code, response.json()) == (403, {"error": "Channel not allowed"})
        assert [m.get("type") for m in client.received] == ["note", "note"]  # live only

    def test_a_replay_flood_is_refused_after_a_few(self, client, caplog):
        publish("lobby", 1)
        with caplog.at_level(logging.WARNING):
            statuses = [client.send({"action": "replay", "since": 0}).status_code for _ in range(9)]
        limit = REPLAY_REQUESTS[0]
        assert statuses == [200] * limit + [429] * (9 - limit)
        assert client.send({"action": "chat", "text": "x"}).status_code != 429  # only replays
        assert len([r for r in caplog.records if "replays per" in r.getMessage()]) == 1

    def test_a_failed_post_is_a_503_not_a_traceback(self, client, caplog):
        publish("lobby", 1)
        throttled = ClientError(
            {"Error": {"Code": "ForbiddenException", "Message": "Forbidden"}}, "PostToConnection"
        )
        with patch.object(replay, "post_to_connection", side_effect=throttled):
            response = client.send({"action": "replay", "since": 0})
        assert (response.status_code, response.json()) == (
            503,
            {"error": "Replay failed, try again later"},
        )
        assert any("Replay to" in r.getMessage() for r in caplog.records)

    def test_a_views_own_replay_handler_wins(self, api_gateway, websocket_outbox):
        client = WebSocketClient(
            api_gateway, outbox=websocket_outbox, websocket_path="/own/{route}"
        )
        client.connect("lobby")
        publish("lobby", 2)
        assert client.send({"action": "replay", "since": 0}).json() == {"own": "replay"}


# ----------------------------------------------------------------- on Lambda


@pytest.fixture
def on_lambda(monkeypatch, keep_test_connection):
    """Running as a Lambda function: the invoke of the function itself is the AWS boundary
    (a mock); @connections is the testing outbox."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "websockets-fn")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    lambda_ = Mock(name="lambda")
    real = models.get_boto3_client

    def factory(service="apigatewayv2", **kwargs):
        return lambda_ if service == "lambda" else real(service, **kwargs)

    with patch.object(models, "get_boto3_client", factory), capture_sends() as outbox:
        yield lambda_, outbox


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_on_lambda_the_replay_is_an_async_invocation_run_by_the_handler(
    on_lambda, api_gateway, django_capture_on_commit_callbacks
):
    lambda_, outbox = on_lambda
    publish("lobby", 4)
    client = WebSocketClient(api_gateway, outbox=outbox)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.connect("lobby", query={"since": "1"}).status_code == 200
    call = lambda_.invoke.call_args
    assert (call.kwargs["FunctionName"], call.kwargs["InvocationType"]) == (
        "websockets-fn",
        "Event",
    )
    event = json.loads(call.kwargs["Payload"])
    assert event == {
        "websocket_replay": {
            "connection_id": client.connection_id,
            "channel": "lobby",
            "since": 1,
            "presence": False,
        }
    }
    assert client.received == []  # nothing sent by the connect's own invocation

    result = make_lambda_handler()(event, None)

    assert result == {"statusCode": 200, "delivered": True}
    assert replayed(client.received) == ([2, 3, 4], [True])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        "x",
        {"connection_id": "c1", "channel": "lobby"},
        {"connection_id": "c1", "channel": "lobby", "since": "-2"},
        {"connection_id": "bad id!", "channel": "lobby", "since": 1},
        {"connection_id": "c1", "channel": 5, "since": 1},
    ],
)
def test_a_malformed_replay_event_is_a_400(body, keep_test_connection):
    result = make_lambda_handler()({"websocket_replay": body}, None)
    assert result == {"statusCode": 400, "body": "Malformed replay event"}


@pytest.mark.urls(__name__)
@pytest.mark.django_db(transaction=True)
def test_on_lambda_a_failed_invoke_falls_back_to_a_thread(on_lambda, api_gateway, caplog):
    lambda_, outbox = on_lambda
    lambda_.invoke.side_effect = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "Invoke"
    )
    publish("lobby", 2)
    client = WebSocketClient(api_gateway, outbox=outbox)
    with caplog.at_level(logging.WARNING):
        client.connect("lobby", query={"since": "0"})
    wait_for(done_arrived(outbox, client.connection_id))
    assert replayed(client.received) == ([1, 2], [True])
    assert any("runs in a thread" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------- retention


@pytest.mark.django_db
class TestTrim:
    def test_keeps_the_newest_per_channel_by_count(self, api_gateway, settings):
        publish("big", 10)
        publish("small", 1)
        settings.WEBSOCKETS = {"replay_max_messages": 3, "replay_max_age_seconds": None}
        assert replay.trim() == 7
        assert sorted(ChannelMessage.objects.values_list("channel_name", "seq")) == [
            ("big", 8),
            ("big", 9),
            ("big", 10),
            ("small", 1),
        ]

    def test_by_age_but_each_channels_newest_stays(self, api_gateway, settings):
        publish("quiet", 3)
        publish("busy", 2)
        old = timezone.now() - timedelta(days=2)
        ChannelMessage.objects.filter(channel_name="quiet").update(created_on=old)
        ChannelMessage.objects.filter(channel_name="busy", seq=1).update(created_on=old)
        assert replay.trim() == 3  # default age: one day
        assert sorted(ChannelMessage.objects.values_list("channel_name", "seq")) == [
            ("busy", 2),
            ("quiet", 3),
        ]

    def test_numbering_continues_after_a_trim(self, api_gateway, settings):
        publish("lobby", 5)
        settings.WEBSOCKETS = {"replay_max_messages": 1}
        replay.trim()
        assert publish("lobby", 1) == [6]

    def test_the_scheduled_clean_up_trims(self, api_gateway, settings, capsys):
        publish("lobby", 6)
        settings.WEBSOCKETS = {"replay_max_messages": 2}
        call_command("clearWebSocketSessions")
        assert "Trimmed 4 stored channel message(s)." in capsys.readouterr().out
        assert ChannelMessage.objects.count() == 2


@pytest.mark.django_db
def test_admin_lists_the_log_read_only(admin_client, api_gateway):
    publish("lobby", 2)
    page = admin_client.get("/admin/django_aws_api_gateway_websockets/channelmessage/")
    assert page.status_code == 200
    assert b"lobby" in page.content
    message = ChannelMessage.objects.get(seq=1)
    change = admin_client.post(
        f"/admin/django_aws_api_gateway_websockets/channelmessage/{message.pk}/change/",
        {"channel_name": "hacked", "seq": 9, "payload": "{}"},
    )
    assert change.status_code == 403
    assert ChannelMessage.objects.get(pk=message.pk).channel_name == "lobby"


# ----------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with e2e_database(tmp_path_factory.mktemp("replay-e2e")) as database_url:
        process = GatewayProcess(database_url)
        yield process
        process.stop()


def publish_in_the_project(gateway, channel, numbers):
    """Broadcast from another process of the project, as a view or a task would."""
    script = (
        "from django_aws_api_gateway_websockets.models import WebSocketSession as S\n"
        f"for n in {list(numbers)!r}:\n"
        f"    S.objects.broadcast({channel!r}, {{'type': 'note', 'n': n}})\n"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        # The local credentials runapigateway itself verifies signatures with.
        env={**gateway.env, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"},
        check=True,
        capture_output=True,
        timeout=120,
    )


def notes(socket, until, timeout=10):
    """Seqs of the notes that arrive (whole or in replay batches) until ``until(message)``."""
    seqs = []
    deadline = time.monotonic() + timeout
    while True:
        message = json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("type") == "replay":
            seqs += [m["seq"] for m in message["messages"] if m.get("type") == "note"]
        elif message.get("type") == "note":
            seqs.append(message["seq"])
        if until(message):
            return seqs


def test_through_runapigateway_a_reconnect_gets_exactly_what_it_missed_then_live(gateway):
    browser = Browser(gateway.base_url).login("alice")
    channel = "replay-e2e"

    def open_socket(**query):
        params = {"ws_token": browser.token(), "channel": channel, **query}
        url = gateway.ws_url + "?" + "&".join(f"{k}={v}" for k, v in params.items())
        return ws_connect(url, additional_headers=browser.socket_headers(), open_timeout=10)

    with open_socket() as first:
        publish_in_the_project(gateway, channel, range(1, 6))
        assert notes(first, lambda m: m.get("seq") == 5) == [1, 2, 3, 4, 5]
    publish_in_the_project(gateway, channel, range(6, 9))  # while it is away
    with open_socket(since=5) as again:
        replay_seqs = notes(again, lambda m: m.get("type") == "replay" and m["done"])
        assert replay_seqs == [6, 7, 8]
        publish_in_the_project(gateway, channel, [9])
        assert notes(again, lambda m: m.get("seq") == 9) == [9]


# ----------------------------------------------------------------- system check


@pytest.mark.parametrize(
    "websockets",
    [
        {"replay_max_messages": -1},
        {"replay_max_messages": "1000"},
        {"replay_max_age_seconds": True},
        {"replay_connect_wait_seconds": None},
        {"replay_connect_wait_seconds": "5"},
    ],
)
def test_bad_replay_settings_are_reported_at_start_up(settings, websockets):
    from django_aws_api_gateway_websockets.checks import check_websocket_settings

    settings.WEBSOCKETS = websockets
    errors = [e for e in check_websocket_settings() if e.id.endswith("E010")]
    assert len(errors) == 1 and next(iter(websockets)) in errors[0].msg


def test_good_replay_settings_pass_the_checks(settings):
    from django_aws_api_gateway_websockets.checks import check_websocket_settings

    settings.WEBSOCKETS = {
        "replay_max_messages": None,
        "replay_max_age_seconds": 3600,
        "replay_connect_wait_seconds": 0.5,
    }
    assert not [e for e in check_websocket_settings() if e.id.endswith("E010")]
