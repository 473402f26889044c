"""End to end through ``runapigateway`` in its own process, with real WebSocket clients: the
2-hour maximum made 2 seconds closes even a busy socket with AWS's 1001 "Going away" and runs
its ``$disconnect``; the limit and the message rate limit also come from the environment."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.e2e_support import Browser, GatewayProcess, e2e_database
from tests.test_e2e_local_gateway import connection_id_of, open_socket, session_connected

MAX_DURATION = 2


def wait_until(condition, timeout=10):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def ping_until_closed(socket, limit: float) -> ConnectionClosed:
    """Keep the socket busy (a ping every 0.2 s, each answered) until the gateway closes it."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.send(json.dumps({"action": "ping"}))
            socket.recv(timeout=1)
        except ConnectionClosed as closed:
            return closed
        time.sleep(0.2)
    raise AssertionError(f"still open after {limit} s")


def test_a_busy_socket_is_closed_at_the_maximum_duration(tmp_path):
    with e2e_database(tmp_path) as database_url:
        gateway = GatewayProcess(database_url, "--max-duration", str(MAX_DURATION))
        try:
            browser = Browser(gateway.base_url).login("alice")
            with open_socket(gateway, browser) as socket:
                connection_id = connection_id_of(gateway, "alice")
                opened = time.monotonic()
                closed = ping_until_closed(socket, MAX_DURATION + 8)
            lived = time.monotonic() - opened
            assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "Going away")
            assert MAX_DURATION - 0.5 <= lived <= MAX_DURATION + 3
            # Its $disconnect ran: the session is no longer connected.
            wait_until(lambda: not session_connected(gateway, connection_id))
        finally:
            gateway.stop()
    output = gateway.rest_of_output()
    assert f"Connection {connection_id} reached the maximum duration of 2 s" in output


def test_the_maximum_and_the_message_rate_limit_from_the_environment(tmp_path):
    """``WEBSOCKETS_LOCAL_GATEWAY_MAX_DURATION`` with no ``--max-duration`` flag, and
    ``WEBSOCKETS_MESSAGE_RATE_LIMIT``: a ping flood gets its answer, then 429's."""
    env = {
        "WEBSOCKETS_LOCAL_GATEWAY_MAX_DURATION": "3",
        "WEBSOCKETS_MESSAGE_RATE_LIMIT": "5/3600",
    }
    with e2e_database(tmp_path) as database_url:
        process = GatewayProcess(database_url, env=env)
        try:
            browser = Browser(process.base_url).login("bob")
            with open_socket(process, browser) as socket:
                opened = time.monotonic()
                for _ in range(8):
                    socket.send(json.dumps({"action": "ping"}))
                answers = [json.loads(socket.recv(timeout=5)) for _ in range(8)]
                assert answers == [{"type": "pong"}] * 5 + [{"error": "Too many messages"}] * 3
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        socket.recv(timeout=10)
            assert closed.value.rcvd.code == 1001
            assert 2.5 <= time.monotonic() - opened <= 8
        finally:
            process.stop()


@pytest.mark.parametrize(
    ("configured", "message"),
    [("later", "must be a number of seconds, not 'later'"), (-1, "must be positive")],
)
def test_runapigateway_refuses_a_bad_max_duration_setting(settings, configured, message):
    from django.core.management import CommandError, call_command

    settings.WEBSOCKETS = {"local_gateway_max_duration": configured}
    with pytest.raises(CommandError, match=message):
        call_command("runapigateway", "--port", "0")
