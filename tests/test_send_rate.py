"""Throttle-aware fan-out: one adaptive token bucket per process paces every @connections post.

The bucket is tested on an injected clock, by the waits it asks for (nothing here measures
time). The fan-outs run against a real HTTP server that throttles like API Gateway (a token
bucket answering 429 with ``x-amzn-ErrorType``), on both transports, and count per connection
what the server accepted: every message once, none twice.
"""

from __future__ import annotations

import logging
import os
import threading
from unittest.mock import patch

import pytest
from botocore.exceptions import ClientError

from django_aws_api_gateway_websockets import send_rate, sending
from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.send_rate import THROTTLE_DEADLINE, Grant, SendRate
from tests.wire_servers import Behaviour, Throttling, WireServer

TRANSPORTS = ["auto", "boto3"]  # the signed-HTTP event loop; boto3 in worker threads


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def waits(bucket: SendRate, count: int) -> list[float]:
    return [grant.delay for grant in (bucket.reserve() for _ in range(count)) if grant]


# --------------------------------------------------------------------------- the bucket


@pytest.mark.parametrize("limit", [10, 1000, 3000])
def test_a_full_bucket_lets_one_seconds_worth_through_without_waiting(clock, limit):
    bucket = SendRate(limit, clock)
    assert waits(bucket, limit) == [0.0] * limit
    # Then the posts queue behind each other, one token each.
    assert waits(bucket, 3) == pytest.approx([1 / limit, 2 / limit, 3 / limit])


def test_tokens_come_back_at_the_rate_and_the_burst_is_capped(clock):
    bucket = SendRate(100, clock)
    waits(bucket, 100)
    clock.now += 0.25
    assert waits(bucket, 26) == pytest.approx([0.0] * 25 + [0.01])
    clock.now += 60  # a long quiet spell refills one second's worth, no more
    assert waits(bucket, 101)[-2:] == pytest.approx([0.0, 0.01])


def test_a_throttling_answer_halves_the_rate_and_spends_the_burst(clock):
    bucket = SendRate(1000, clock)
    grant = bucket.reserve()
    assert bucket.throttled(grant) is True
    assert bucket.rate == 500
    assert waits(bucket, 2) == pytest.approx([1 / 500, 2 / 500])


def test_answers_to_posts_sent_at_the_old_rate_halve_it_once(clock):
    bucket = SendRate(1000, clock)
    in_flight = [bucket.reserve() for _ in range(50)]
    halved = [bucket.throttled(grant) for grant in in_flight]
    assert halved.count(True) == 1 and bucket.rate == 500
    # A post sent after that halving and throttled again halves again.
    assert bucket.throttled(bucket.reserve()) is True
    assert bucket.rate == 250


def test_posts_queued_at_the_old_rate_take_a_new_token_after_a_halving(clock):
    """Otherwise the posts waiting in the queue would go out on the old rate's schedule."""
    bucket = SendRate(10, clock)
    waits(bucket, 10)
    queued = bucket.reserve()
    assert queued.delay == pytest.approx(0.1) and not bucket.stale(queued)
    bucket.throttled(bucket.reserve())
    assert bucket.stale(queued)
    # The queue was dropped with the halving: the new token comes at the new rate (10/s floor).
    assert bucket.reserve().delay == pytest.approx(0.1)


@pytest.mark.parametrize(("limit", "floor"), [(3000, 30), (100, 10), (5, 5)])
def test_the_rate_never_falls_below_one_percent_or_ten_a_second(clock, limit, floor):
    bucket = SendRate(limit, clock)
    for _ in range(20):
        bucket.throttled(bucket.reserve())
    assert bucket.rate == floor


def test_each_second_without_throttling_gives_back_a_tenth_of_the_setting(clock):
    bucket = SendRate(1000, clock)
    for _ in range(3):
        bucket.throttled(bucket.reserve())
    assert bucket.rate == 125
    clock.now += 0.5
    bucket.reserve()
    assert bucket.rate == 125
    clock.now += 0.5
    bucket.reserve()
    assert bucket.rate == 225
    clock.now += 2.5
    bucket.reserve()
    assert bucket.rate == 425
    # A throttled answer (even a late one of the old rate) restarts the quiet second.
    bucket.throttled(Grant(0.0, generation=0))
    assert bucket.rate == 425
    clock.now += 0.75
    bucket.reserve()
    assert bucket.rate == 425
    clock.now += 60
    bucket.reserve()
    assert bucket.rate == 1000  # never above the setting


def test_a_post_that_could_not_start_before_the_deadline_takes_no_token(clock):
    bucket = SendRate(10, clock)
    waits(bucket, 10)
    assert bucket.reserve(deadline=clock.now + 0.05) is None  # it would wait 0.1 s
    grant = bucket.reserve(deadline=clock.now + 0.1)
    assert grant is not None and grant.delay == pytest.approx(0.1)  # nothing was taken


def test_the_setting_makes_one_bucket_per_process_and_zero_turns_it_off(settings):
    settings.WEBSOCKETS = {"send_rate_limit": 500}
    bucket = send_rate.limiter()
    assert bucket is not None and bucket.limit == 500
    assert send_rate.limiter() is bucket
    settings.WEBSOCKETS = {"send_rate_limit": 0}
    assert send_rate.limiter() is None
    settings.WEBSOCKETS = {}
    assert send_rate.limiter().limit == 3000  # the default


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_its_own_bucket_even_with_the_parents_locks_held():
    """A SnapStart-like copy, or a pre-forking server's worker: the parent's bucket (its debt,
    its clock readings) and its locks, held by another thread at the fork, are not shared."""
    parent = send_rate.limiter()
    assert parent is not None
    waits(parent, 3000)  # the parent's bucket is empty
    read, write = os.pipe()
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with parent._lock, send_rate._LOCK:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    try:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                child = send_rate.limiter()
                grant = child.reserve()
                ok = child is not parent and grant is not None and grant.delay == 0.0
                os.write(write, b"ok" if ok else b"shared")
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as answer:
            assert answer.read() == b"ok"
        os.waitpid(pid, 0)
    finally:
        release.set()
        holder.join()
    assert send_rate.limiter() is parent


# --------------------------------------------------------------------------- single sends


class FakeClient:
    """A @connections client that throttles the first ``throttled`` posts."""

    def __init__(self, throttled: int = 0) -> None:
        self.throttled = throttled
        self.posts = 0

    def post_to_connection(self, ConnectionId: str, Data: bytes) -> dict:
        self.posts += 1
        if self.posts <= self.throttled:
            raise ClientError(
                {
                    "Error": {"Code": "LimitExceededException", "Message": "slow down"},
                    "ResponseMetadata": {"HTTPStatusCode": 429},
                },
                "PostToConnection",
            )
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}


def test_single_sends_wait_for_their_token_once_the_burst_is_spent(settings, monkeypatch, clock):
    settings.WEBSOCKETS = {"send_rate_limit": 10}
    monkeypatch.setattr(send_rate, "_LIMITER", SendRate(10, clock))
    client = FakeClient()
    with patch.object(sending, "time") as fake_time:
        for _ in range(12):
            sending.post_to_connection(client, "c1", b"{}")
    assert [c.args[0] for c in fake_time.sleep.call_args_list] == pytest.approx([0.1, 0.2])
    assert client.posts == 12


def test_a_single_send_keeps_its_retries_and_back_off_under_the_bucket(settings):
    """send_max_retries still bounds a single send (a message route must answer within
    API Gateway's 29 s); each retry waits for its back-off and its token, whichever is later."""
    settings.WEBSOCKETS = {"send_max_retries": 2, "send_retry_base_delay": 0.5}
    client = FakeClient(throttled=100)
    with (
        patch.object(sending, "time") as fake_time,
        patch("django_aws_api_gateway_websockets.send_policy.random") as fake_random,
    ):
        fake_random.uniform.side_effect = lambda low, high: high
        with pytest.raises(ClientError):
            sending.post_to_connection(client, "c1", b"{}")
    assert client.posts == 3
    assert [c.args[0] for c in fake_time.sleep.call_args_list] == [0.5, 1.0]
    # Each try was sent after the previous halving and throttled again: 3000 -> 375.
    assert send_rate.limiter().rate == 375


def test_with_the_setting_zero_nothing_waits_for_a_token(settings):
    settings.WEBSOCKETS = {"send_rate_limit": 0}
    client = FakeClient()
    with patch.object(sending, "time") as fake_time:
        for _ in range(5000):
            sending.post_to_connection(client, "c1", b"{}")
    assert fake_time.sleep.call_count == 0
    assert send_rate._LIMITER is None


# --------------------------------------------------------------------------- fan-outs on the wire


@pytest.fixture
def throttling_server(db, monkeypatch, settings):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
    started: list[WireServer] = []

    def start(throttling: Throttling) -> tuple[WireServer, ApiGateway]:
        server = WireServer(Behaviour(reply=throttling))
        started.append(server)
        gateway = ApiGateway.objects.create(
            api_name="Throttled",
            api_id=f"thr{len(started):03d}",
            management_endpoint_url=server.url,
        )
        return server, gateway

    yield start
    for server in started:
        server.close()


def make_room(gateway: ApiGateway, ids: list[str]) -> None:
    WebSocketSession.objects.bulk_create(
        [
            WebSocketSession(connection_id=cid, api_gateway=gateway, channel_name="room")
            for cid in ids
        ]
    )


@pytest.mark.parametrize(
    ("transport", "error_type"),
    [("auto", "LimitExceededException"), ("boto3", "TooManyRequestsException")],
)
def test_a_fan_out_above_the_servers_rate_delivers_everything_exactly_once(
    throttling_server, settings, transport, error_type, caplog
):
    """300 connections against a server admitting 100 requests/s (burst 50), the bucket set
    to 400/s: the server throttles, the bucket halves, and every throttled post is retried
    until delivered: 0 failed, 0 duplicated."""
    throttling = Throttling(rate=100, burst=50, error_type=error_type)
    server, gateway = throttling_server(throttling)
    ids = [f"c-{n}=" for n in range(300)]
    make_room(gateway, ids)
    settings.WEBSOCKETS = {
        "fanout_transport": transport,
        "send_rate_limit": 400,
        "send_throttle_deadline_seconds": 20,
        "send_max_retries": 1,  # bounds single sends only, once the bucket is on
    }

    report = WebSocketSession.objects.filter(channel_name="room").send_message({"t": "hi"})

    assert (report.delivered, report.gone, report.failed) == (300, 0, 0)
    assert server.handled == dict.fromkeys(ids, 1)  # each delivered once
    assert throttling.refused > 0  # the server did throttle...
    assert send_rate.limiter().halvings >= 1  # ...and the bucket slowed down
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_posts_still_throttled_at_the_deadline_are_counted_failed_with_one_log_line(
    throttling_server, settings, transport, caplog
):
    busy = [f"busy-{n}" for n in range(5)]
    throttling = Throttling(rate=10_000, always=frozenset(busy))
    server, gateway = throttling_server(throttling)
    fine = [f"fine-{n}" for n in range(20)]
    make_room(gateway, busy + fine)
    settings.WEBSOCKETS = {
        "fanout_transport": transport,
        "send_throttle_deadline_seconds": 1.0,
    }

    report = WebSocketSession.objects.filter(channel_name="room").send_message({"t": "hi"})

    assert (report.delivered, report.gone, report.failed) == (20, 0, 5)
    assert server.handled == dict.fromkeys(fine, 1)
    assert sum(server.requests[cid] for cid in busy) > len(busy)  # retried until the deadline
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1
    assert lines[0].startswith("5 post(s) to @connections failed") and THROTTLE_DEADLINE in lines[0]
    # Failed is not gone: the sessions stay connected.
    assert WebSocketSession.objects.filter(connected=True).count() == 25


# --------------------------------------------------------------------------- system checks


@pytest.mark.parametrize(
    ("websockets", "check_id"),
    [
        ({"send_rate_limit": -1}, "E006"),
        ({"send_rate_limit": "3000"}, "E006"),
        ({"send_rate_limit": 2.5}, "E006"),
        ({"send_throttle_deadline_seconds": -1}, "E009"),
        ({"send_throttle_deadline_seconds": "25"}, "E009"),
        ({"send_throttle_deadline_seconds": True}, "E009"),
    ],
)
def test_bad_throttle_settings_are_reported_at_start_up(settings, websockets, check_id):
    from django_aws_api_gateway_websockets.checks import check_websocket_settings

    settings.WEBSOCKETS = websockets
    found = [error.id for error in check_websocket_settings()]
    assert f"django_aws_api_gateway_websockets.{check_id}" in found
    key = next(iter(websockets))
    assert any(key in error.msg for error in check_websocket_settings())


def test_good_throttle_settings_pass_the_checks(settings):
    from django_aws_api_gateway_websockets.checks import check_websocket_settings

    settings.WEBSOCKETS = {"send_rate_limit": 0, "send_throttle_deadline_seconds": 2.5}
    assert not [e for e in check_websocket_settings() if "send_" in e.msg]
