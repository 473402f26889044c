"""SnapStart hooks: nothing live goes into the snapshot, and every restored copy is its own.

A fork stands in for Lambda's restore: like a restored copy, a child starts from the parent's
memory. The packaged handler is snapshotted and restored the same way in
``tests/test_lambda_package.py``.
"""

from __future__ import annotations

import json
import os
import random
import threading

import pytest
import snapshot_restore_py
from django.db import connection

from django_aws_api_gateway_websockets import aws, connections_http, send_rate
from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.send_policy import backoff_delay
from django_aws_api_gateway_websockets.serverless import make_lambda_handler, snapstart
from tests.wire_servers import WireServer


def registered(registry: list) -> list:
    return [entry[0] for entry in registry]


def test_the_handler_registers_both_hooks_once_with_the_runtime_library():
    make_lambda_handler()
    make_lambda_handler()  # a second handler in the same process adds nothing

    assert (
        registered(snapshot_restore_py.get_before_snapshot()).count(snapstart.before_snapshot) == 1
    )
    assert registered(snapshot_restore_py.get_after_restore()).count(snapstart.after_restore) == 1


@pytest.mark.django_db(transaction=True)
def test_before_snapshot_leaves_no_connection_client_loop_or_key_behind(settings):
    settings.AWS_GATEWAY_REGION_NAME = "us-east-1"
    server = WireServer(stage="snap")
    try:
        gateway = ApiGateway.objects.create(
            api_name="S", api_id="snap01", management_endpoint_url=server.url
        )
        WebSocketSession.objects.create(connection_id="c1", api_gateway=gateway, channel_name="r")
        room = WebSocketSession.objects.filter(channel_name="r")
        assert room.send_message({"n": 1}).delivered == 1
        assert aws._MANAGEMENT_CLIENTS and aws._SESSIONS and connections_http._SIGNING_KEYS
        assert "ws-connections" in [thread.name for thread in threading.enumerate()]
        assert send_rate._LIMITER is not None

        snapstart.before_snapshot()

        in_memory_sqlite = connection.vendor == "sqlite" and connection.is_in_memory_db()
        # Django keeps an in-memory SQLite test database open on purpose (closing destroys it).
        assert connection.connection is None or in_memory_sqlite
        assert not aws._MANAGEMENT_CLIENTS and not aws._SESSIONS
        assert not connections_http._SIGNING_KEYS
        assert "ws-connections" not in [thread.name for thread in threading.enumerate()]
        assert send_rate._LIMITER is None  # each copy fills its own bucket on its own clock

        # Rebuilt on first use, as in a fresh process.
        assert room.send_message({"n": 2}).delivered == 1
    finally:
        server.close()
    assert server.requests == {"c1": 2}


def draws_in_children(restore: bool) -> list[list[float]]:
    """The retry jitter two forked copies draw, with or without the after-restore hook."""
    snapshot = random.getstate()
    results = []
    for _ in range(2):
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                # random reseeds itself after fork(); a restored snapshot has no such luck:
                # every copy resumes with the snapshot's state.
                random.setstate(snapshot)
                if restore:
                    snapstart.after_restore()
                draws = [backoff_delay(6, 1.0) for _ in range(4)]
                os.write(writer, json.dumps(draws).encode())
            finally:
                os._exit(0)
        os.close(writer)
        with os.fdopen(reader) as pipe:
            results.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    return results


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_restored_copies_do_not_jitter_in_lockstep():
    shared = draws_in_children(restore=False)
    assert shared[0] == shared[1]  # what every copy of one snapshot would draw

    first, second = draws_in_children(restore=True)
    assert first != second


@pytest.mark.django_db(transaction=True)
def test_a_failing_preload_still_leaves_nothing_live(monkeypatch, caplog):
    """Lambda fails the version's publication if a before-snapshot hook raises: a project's
    URLconf that cannot be resolved at init must cost speed only."""
    from django.db import connection

    def broken():
        raise RuntimeError("URLconf exploded")

    connection.ensure_connection()
    monkeypatch.setattr(snapstart, "preload", broken)
    snapstart.before_snapshot()

    in_memory_sqlite = connection.vendor == "sqlite" and connection.is_in_memory_db()
    assert connection.connection is None or in_memory_sqlite
    assert any("Preloading" in record.getMessage() for record in caplog.records)


def test_preloading_compiles_djangos_lazily_compiled_patterns():
    """Host validation's pattern is compiled on a process's first request; a restored copy
    must find it compiled in the snapshot."""
    from django.http import request as http_request
    from django.utils.functional import empty

    http_request.host_validation_re._wrapped = empty  # as in a process before any request
    snapstart.preload()

    compiled = object.__getattribute__(http_request.host_validation_re, "_wrapped")
    assert compiled is not empty and compiled.match("example.com")
