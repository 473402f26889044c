"""The per-connection message rate limit (``WEBSOCKETS["message_rate_limit"]``, default 120
messages a minute): the token bucket itself with an injected clock, and through the Lambda
handler with the testing package's client, where a ping flood is refused like any message."""

from __future__ import annotations

import logging
import os
import threading

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.http import JsonResponse
from django.test.utils import CaptureQueriesContext
from django.urls import path

from django_aws_api_gateway_websockets import message_rate
from django_aws_api_gateway_websockets.checks import check_websocket_settings
from django_aws_api_gateway_websockets.message_rate import MessageRateLimiter, parse_limit
from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.testing import WebSocketClient
from django_aws_api_gateway_websockets.views import WebSocketView
from project.websockets_env import websockets_from_environment

PING = {"action": "ping"}
REFUSED = {"error": "Too many messages"}
LOG_TEXT = "messages are refused (429)"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------- the bucket


def admitted(limiter, connection_id, count, messages=120, seconds=60.0):
    return sum(limiter.take(connection_id, messages, seconds).allowed for _ in range(count))


def test_a_full_bucket_admits_the_limit_at_once_and_refuses_the_next():
    limiter = MessageRateLimiter(clock=Clock())
    assert admitted(limiter, "a", 120) == 120
    assert limiter.take("a", 120, 60.0).allowed is False


def test_the_bucket_refills_at_the_limits_rate():
    clock = Clock()
    limiter = MessageRateLimiter(clock=clock)
    admitted(limiter, "a", 120)
    clock.now += 0.5  # 120 a minute: one more every half second
    assert admitted(limiter, "a", 5) == 1
    clock.now += 60
    assert admitted(limiter, "a", 200) == 120  # full again, never more than full


def test_connections_have_their_own_buckets():
    limiter = MessageRateLimiter(clock=Clock())
    admitted(limiter, "a", 121)
    assert limiter.take("b", 120, 60.0).allowed is True


def test_the_first_refusal_of_a_window_asks_for_a_log_line_the_others_not():
    clock = Clock()
    limiter = MessageRateLimiter(clock=clock)
    admitted(limiter, "a", 3, messages=3)
    verdicts = [limiter.take("a", 3, 60.0) for _ in range(10)]
    assert [v.warn for v in verdicts] == [True] + [False] * 9
    clock.now += 30  # half a window: 1.5 tokens back, still inside the warned window
    verdicts = [limiter.take("a", 3, 60.0) for _ in range(3)]
    assert [(v.allowed, v.warn) for v in verdicts] == [
        (True, False),
        (False, False),
        (False, False),
    ]
    clock.now += 30  # a window after the warning: a new line for a new flood
    verdicts = [limiter.take("a", 3, 60.0) for _ in range(6)]
    assert [(v.allowed, v.warn) for v in verdicts] == [(True, False)] * 2 + [(False, True)] + [
        (False, False)
    ] * 3


def test_idle_buckets_expire():
    clock = Clock()
    limiter = MessageRateLimiter(clock=clock)
    for number in range(50):
        limiter.take(f"c{number}", 120, 60.0)
    assert len(limiter) == 50
    clock.now += 60
    limiter.take("fresh", 120, 60.0)
    assert len(limiter) == 1


def test_a_flood_of_distinct_ids_cannot_grow_it_past_its_bound():
    limiter = MessageRateLimiter(max_tracked=100, clock=Clock())
    for number in range(10_000):
        limiter.take(f"c{number}", 120, 60.0)
    assert len(limiter) == 100


def test_the_recently_used_survive_the_bound():
    limiter = MessageRateLimiter(max_tracked=10, clock=Clock())
    admitted(limiter, "busy", 120)
    for number in range(9):
        limiter.take(f"c{number}", 120, 60.0)
        assert limiter.take("busy", 120, 60.0).allowed is False  # keeps "busy" the newest
    limiter.take("one-more", 120, 60.0)
    assert limiter.take("busy", 120, 60.0).allowed is False


def test_threads_on_one_connection_never_get_more_than_the_limit():
    limiter = MessageRateLimiter(clock=Clock())  # no refill while they race
    allowed: list[bool] = []
    start = threading.Barrier(8)

    def flood() -> None:
        start.wait()
        mine = [limiter.take("shared", 120, 60.0).allowed for _ in range(100)]
        allowed.extend(mine)

    threads = [threading.Thread(target=flood) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 800
    assert sum(allowed) == 120


def test_a_forked_child_starts_with_empty_buckets_and_a_free_lock():
    limiter = message_rate.limiter
    admitted(limiter, "forked", 121)
    limiter._lock.acquire()  # another thread holds it at the moment of the fork
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child = message_rate.limiter
                code = 0 if len(child) == 0 and child.take("forked", 120, 60.0).allowed else 2
            finally:
                os._exit(code)
    finally:
        limiter._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert limiter.take("forked", 120, 60.0).allowed is False  # the parent's bucket stays


# ----------------------------------------------------------------- the setting's values


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        ((120, 60), (120, 60.0)),
        ([5, 0.5], (5, 0.5)),
        (None, None),
        (0, None),
        (False, None),
        ((0, 60), None),
    ],
)
def test_limits_and_off(value, limit):
    assert parse_limit(value) == limit


@pytest.mark.parametrize(
    "value", [120, "120/60", (120,), (120, 0), (-1, 60), (1.5, 60), (True, 60), (10, "60")]
)
def test_malformed_limits_are_an_error_at_start_up(settings, value):
    settings.WEBSOCKETS = {"message_rate_limit": value}
    errors = [e for e in check_websocket_settings() if e.id.endswith("E008")]
    assert len(errors) == 1
    assert errors[0].level == checks.ERROR
    assert "message_rate_limit" in errors[0].msg
    with pytest.raises(ValueError):
        parse_limit(value)


def test_good_limits_pass_the_check(settings):
    for value in ((10, 1), None, 0, (0, 60)):
        settings.WEBSOCKETS = {"message_rate_limit": value}
        assert not [e for e in check_websocket_settings() if e.id.endswith("E008")]


def test_a_malformed_setting_at_run_time_means_the_default_not_no_limit(settings):
    settings.WEBSOCKETS = {"message_rate_limit": "lots"}
    assert message_rate.limit_for(None) == (120, 60.0)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("120/60", (120, 60.0)), (" 10/0.5 ", (10, 0.5)), ("off", None), ("0", None), ("0/60", None)],
)
def test_the_environment_variable(raw, value):
    configured = websockets_from_environment({"WEBSOCKETS_MESSAGE_RATE_LIMIT": raw})
    assert configured == {"message_rate_limit": value}


@pytest.mark.parametrize("raw", ["120", "many/60", "120/0", "-1/60", "120/inf"])
def test_a_bad_environment_variable_names_itself(raw):
    with pytest.raises(ImproperlyConfigured, match="WEBSOCKETS_MESSAGE_RATE_LIMIT"):
        websockets_from_environment({"WEBSOCKETS_MESSAGE_RATE_LIMIT": raw})


# ----------------------------------------------------------------- through the view

handled: list[str] = []


class CountingView(WebSocketView):
    USE_WS_TOKEN = False

    def note(self, request, *args, **kwargs):
        handled.append(self.websocket_session.connection_id)
        return JsonResponse({"noted": True})


class LenientView(CountingView):
    MESSAGE_RATE_LIMIT = (3, 60)


class UnlimitedView(CountingView):
    MESSAGE_RATE_LIMIT = 0


urlpatterns = [
    path("counting/<slug:route>", CountingView.as_view()),
    path("lenient/<slug:route>", LenientView.as_view()),
    path("unlimited/<slug:route>", UnlimitedView.as_view()),
]


@pytest.fixture
def clock(monkeypatch):
    """The process's limiter on a clock of the test's: 121 messages are "in a minute" however
    slow the machine, and a new window is one assignment away."""
    clock = Clock()
    monkeypatch.setattr(message_rate.limiter, "clock", clock)
    handled.clear()
    return clock


def client_for(api_gateway, websocket_outbox, view="counting"):
    client = WebSocketClient(
        api_gateway, websocket_path=f"/{view}/{{route}}", outbox=websocket_outbox
    )
    assert client.connect(channel="lobby").status_code == 200
    return client


def refusal_lines(caplog, connection_id):
    return [
        record
        for record in caplog.records
        if LOG_TEXT in record.getMessage() and connection_id in record.getMessage()
    ]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
class TestThroughTheView:
    def test_the_121st_message_of_a_minute_is_refused_and_not_handled(
        self, api_gateway, websocket_outbox, clock
    ):
        client = client_for(api_gateway, websocket_outbox)
        answers = [client.send({"action": "note"}) for _ in range(121)]
        assert [a.status_code for a in answers[:120]] == [200] * 120
        assert (answers[120].status_code, answers[120].json()) == (429, REFUSED)
        assert len(handled) == 120

    def test_pings_count_like_any_message(self, api_gateway, websocket_outbox, clock):
        client = client_for(api_gateway, websocket_outbox)
        pongs = [client.send(PING).json() for _ in range(120)]
        assert pongs == [{"type": "pong"}] * 120
        flood = client.send(PING)
        assert (flood.status_code, flood.json()) == (429, REFUSED)
        assert client.send({"action": "note"}).status_code == 429
        assert handled == []

    def test_another_connection_is_unaffected(self, api_gateway, websocket_outbox, clock):
        flooder = client_for(api_gateway, websocket_outbox)
        for _ in range(125):
            flooder.send(PING)
        neighbour = client_for(api_gateway, websocket_outbox)
        assert neighbour.send({"action": "note"}).json() == {"noted": True}
        assert handled == [neighbour.connection_id]

    def test_the_connection_may_send_again_as_the_bucket_refills(
        self, api_gateway, websocket_outbox, clock
    ):
        client = client_for(api_gateway, websocket_outbox)
        for _ in range(121):
            client.send(PING)
        clock.now += 1  # two messages' worth at 120 a minute
        assert [client.send(PING).status_code for _ in range(3)] == [200, 200, 429]

    def test_one_warning_per_connection_per_window(
        self, api_gateway, websocket_outbox, clock, caplog
    ):
        client = client_for(api_gateway, websocket_outbox)
        with caplog.at_level(logging.INFO):
            for _ in range(170):
                client.send(PING)
            assert len(refusal_lines(caplog, client.connection_id)) == 1
            # Django's request logger does not add a line per refused message either.
            assert not [r for r in caplog.records if r.name == "django.request"]
            clock.now += 60
            for _ in range(130):
                client.send(PING)
        lines = refusal_lines(caplog, client.connection_id)
        assert len(lines) == 2
        assert lines[0].levelno == logging.WARNING
        assert "limit of 120 messages per 60 s" in lines[0].getMessage()

    def test_a_refused_message_writes_nothing(self, api_gateway, websocket_outbox, clock):
        client = client_for(api_gateway, websocket_outbox)
        for _ in range(120):
            client.send({"action": "note"})
        before = WebSocketSession.objects.get(connection_id=client.connection_id)
        with CaptureQueriesContext(connection) as captured:
            assert client.send({"action": "note"}).status_code == 429
        writes = [
            q["sql"]
            for q in captured.captured_queries
            if not q["sql"].lstrip().startswith("SELECT")
        ]
        assert writes == []
        after = WebSocketSession.objects.get(connection_id=client.connection_id)
        assert after.request_count == before.request_count == 120
        assert after.updated_on == before.updated_on

    def test_the_setting_sets_the_limit(self, api_gateway, websocket_outbox, clock, settings):
        settings.WEBSOCKETS = {"message_rate_limit": (5, 10)}
        client = client_for(api_gateway, websocket_outbox)
        assert [client.send(PING).status_code for _ in range(6)] == [200] * 5 + [429]

    @pytest.mark.parametrize("off", [None, 0, (0, 60)])
    def test_the_setting_turns_it_off(self, api_gateway, websocket_outbox, clock, settings, off):
        settings.WEBSOCKETS = {"message_rate_limit": off}
        client = client_for(api_gateway, websocket_outbox)
        assert {client.send(PING).status_code for _ in range(200)} == {200}

    def test_a_view_sets_its_own_limit(self, api_gateway, websocket_outbox, clock):
        client = client_for(api_gateway, websocket_outbox, view="lenient")
        assert [client.send({"action": "note"}).status_code for _ in range(4)] == [200] * 3 + [429]

    def test_a_view_turns_it_off(self, api_gateway, websocket_outbox, clock, settings):
        settings.WEBSOCKETS = {"message_rate_limit": (1, 60)}
        client = client_for(api_gateway, websocket_outbox, view="unlimited")
        assert {client.send(PING).status_code for _ in range(20)} == {200}

    def test_an_unknown_connection_is_still_403_not_429(self, api_gateway, websocket_outbox, clock):
        client = client_for(api_gateway, websocket_outbox)
        for _ in range(121):
            client.send(PING)
        WebSocketSession.objects.filter(connection_id=client.connection_id).update(connected=False)
        assert client.send(PING).status_code == 403


def test_a_unittest_case_starts_with_full_buckets():
    """Tests reuse connection ids; ``WebSocketTestMixin`` (like the pytest plugin's autouse
    fixture) gives each test of a project's suite a fresh allowance."""
    import unittest

    from django_aws_api_gateway_websockets.testing import WebSocketTestMixin

    class Case(WebSocketTestMixin, unittest.TestCase):
        def runTest(self) -> None:
            assert message_rate.limiter.take("connection-1", 120, 60.0).allowed

    admitted(message_rate.limiter, "connection-1", 121)
    result = unittest.TestResult()
    Case().run(result)
    assert result.wasSuccessful(), result.failures + result.errors
