"""Presence end to end: real WebSocket clients in the example chat (its view has PRESENCE on)
against ``runapigateway`` in its own process, on the suite's database kind."""

from __future__ import annotations

import json
import socket as sockets
import time

import pytest

from tests.e2e_support import Browser, GatewayProcess, e2e_database
from tests.test_e2e_local_gateway import open_socket


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with e2e_database(tmp_path_factory.mktemp("e2e-presence")) as database_url:
        process = GatewayProcess(database_url)
        yield process
        process.stop()


@pytest.fixture(scope="module")
def alice(gateway):
    return Browser(gateway.base_url).login("alice")


@pytest.fixture(scope="module")
def bob(gateway):
    return Browser(gateway.base_url).login("bob")


def messages_until(socket, wanted_type, timeout=10):
    """Every message up to and including the next one of ``wanted_type``."""
    deadline = time.monotonic() + timeout
    seen = []
    while not seen or seen[-1].get("type") != wanted_type:
        seen.append(json.loads(socket.recv(timeout=max(0.1, deadline - time.monotonic()))))
    return seen


def presence_in(messages):
    return [(m["event"], m["user"], m["users"]) for m in messages if m["type"] == "presence"]


def test_joins_and_leaves_follow_the_first_and_last_tab(gateway, alice, bob):
    with (
        open_socket(gateway, alice, "random") as a,
        open_socket(gateway, bob, "random") as first_tab,
    ):
        assert presence_in(messages_until(a, "presence")) == [("join", "bob", ["alice", "bob"])]
        with open_socket(gateway, bob, "random") as second_tab:
            # The newcomer is not sent its own join; the chat's who_is_here lists who is here.
            second_tab.send(json.dumps({"action": "who_is_here"}))
            assert messages_until(second_tab, "here_now")[-1]["users"] == ["alice", "bob"]
            first_tab.close()
            # bob is still here in his second tab: no leave (who_is_here answers after the close
            # has been handled, the socket's $disconnect comes first).
            time.sleep(1)
            a.send(json.dumps({"action": "who_is_here"}))
            assert presence_in(messages_until(a, "here_now")) == []
        assert presence_in(messages_until(a, "presence")) == [("leave", "bob", ["alice"])]


def test_a_socket_that_drops_leaves_exactly_once(gateway, alice, bob):
    """bob's socket dies while alice keeps posting: whichever sees it first, his $disconnect
    or a post answered 410, announces the leave; the other announces nothing."""
    with open_socket(gateway, alice, "general") as a, open_socket(gateway, bob, "general") as b:
        assert presence_in(messages_until(a, "presence")) == [("join", "bob", ["alice", "bob"])]
        b.socket.shutdown(sockets.SHUT_RDWR)  # no closing handshake: the connection just ends
        received = []
        for _ in range(12):  # over 3 s: the $disconnect and the 410s race
            a.send(json.dumps({"action": "chat_message", "message": "still there?"}))
            received += messages_until(a, "ack")
            time.sleep(0.25)
        a.send(json.dumps({"action": "who_is_here"}))
        received += messages_until(a, "here_now")
        assert presence_in(received) == [("leave", "bob", ["alice"])]
