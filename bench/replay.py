"""Replay's two costs, against a local @connections server (``connections_server.py``, its own
process) that answers at once (``--rtt-ms``, 0: what is measured is this process's time).

Result lines (one JSON object each):

- ``replay_100``: ``replay.deliver`` of 100 missed messages (one connection reconnecting with
  ``since``) in a warm process, ``--runs`` (30) times after one warm-up: median and p90 wall
  time and the thread's CPU time, the posts it made (the batches and ``done``). Target: median
  <= 50 ms of server time.
- ``broadcast_statements``: the SQL statements of ``WebSocketSession.objects.broadcast`` against
  a plain ``filter(channel_name=...).send_message`` to the same room of 10 (autocommit, as in a
  view): target at most one INSERT more, and nothing else more.

    .venv/bin/python bench/replay.py [--runs 30] [--rtt-ms 0] [--database-url postgres://...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, emit, free_port, percentile, reset, setup_django, stats, throwaway_database  # noqa: E402

from django_aws_api_gateway_websockets.serverless.packaging import compile_bytecode  # noqa: E402

MISSED = 100
ROOM = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--rtt-ms", type=int, default=0)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    # As deployed: the package carries the bytecode zappa's prebuild_script writes.
    compile_bytecode(ROOT)

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "connections_server.py"),
            str(port),
            str(arguments.rtt_ms),
            "0",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{port}"
        with throwaway_database(arguments.database_url) as database_url:
            setup_django(database_url)
            run(base, arguments)
    finally:
        server.terminate()
        server.wait(10)


def run(base: str, arguments: argparse.Namespace) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_aws_api_gateway_websockets import replay
    from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession

    gateway = ApiGateway.objects.create(
        api_name="Bench",
        api_id="bench",
        stage_name="bench",
        management_endpoint_url=f"{base}/bench",
    )
    # 100 chat-sized messages in the log, then the reconnecting connection.
    for n in range(MISSED):
        replay.publish("lobby", json.dumps({"type": "chat_message", "user": "alice", "n": n}))
    WebSocketSession.objects.create(
        connection_id="back-1", channel_name="lobby", api_gateway=gateway
    )

    replay.deliver("back-1", "lobby", 0, connect_wait=0)  # warm-up: the client, the queries
    reset(base)
    walls, cpus = [], []
    for _ in range(arguments.runs):
        wall, cpu = time.perf_counter(), time.thread_time()
        assert replay.deliver("back-1", "lobby", 0, connect_wait=0)
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    posts = stats(base)["requests"].get("back-1", 0) // arguments.runs
    median = statistics.median(walls)
    emit(
        {
            "bench": "replay_100",
            "missed": MISSED,
            "runs": arguments.runs,
            "rtt_ms": arguments.rtt_ms,
            "database": connection.vendor,
            "posts_per_replay": posts,
            "median_ms": round(median * 1000, 2),
            "p90_ms": round(percentile(walls, 0.9) * 1000, 2),
            "cpu_median_ms": round(statistics.median(cpus) * 1000, 2),
            "target_ms": 50,
            "met": median <= 0.050,
        }
    )

    WebSocketSession.objects.bulk_create(
        WebSocketSession(connection_id=f"room-{n}", channel_name="room", api_gateway=gateway)
        for n in range(ROOM)
    )
    room = WebSocketSession.objects.filter(channel_name="room")
    room.send_message({"type": "warm-up"})
    with CaptureQueriesContext(connection) as plain:
        plain_report = room.send_message({"type": "chat_message", "text": "hello"})
    with CaptureQueriesContext(connection) as stored:
        report = WebSocketSession.objects.broadcast("room", {"type": "chat_message", "text": "hi"})
    assert plain_report.delivered == report.delivered == ROOM
    plain_sql = [q["sql"] for q in plain.captured_queries]
    stored_sql = [q["sql"] for q in stored.captured_queries]
    inserts = sum(sql.lstrip().upper().startswith("INSERT") for sql in stored_sql)
    plain_inserts = sum(sql.lstrip().upper().startswith("INSERT") for sql in plain_sql)
    added = len(stored_sql) - len(plain_sql)
    emit(
        {
            "bench": "broadcast_statements",
            "room": ROOM,
            "database": connection.vendor,
            "plain_send_statements": len(plain_sql),
            "broadcast_statements": len(stored_sql),
            "added_statements": added,
            "added_inserts": inserts - plain_inserts,
            "met": added <= 1 and inserts - plain_inserts <= 1,
        }
    )


if __name__ == "__main__":
    main()
