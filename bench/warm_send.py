"""Sends as a warm Lambda container and a fresh process make them, against a local @connections
server (``connections_server.py``, its own process) that stands for AWS: every request is
answered after one round trip (``--rtt-ms``, 20) and every new connection waits a handshake
(``--handshake-ms``, 20) before its first byte is read.

Result lines (one JSON object each):

- ``warm_room``: ``filter(channel_name=...).send_message`` to a room of 10, ``--broadcasts``
  (60) times after one warm-up broadcast: median and p90 wall time in round trips (target
  median <= 1.3), and the connections opened over all of them (target <= the pool's slots).
- ``first_send``: fresh processes (``--runs``, medians) after ``django.setup()``: the first
  ``send_message`` of the process (a room of 1, a room of 10, one session) against a plain
  ``boto3.client(...).post_to_connection``; once with ``import boto3`` timed, once with boto3
  imported and the database connected (one unrelated query) before the clock.
- ``fanout_1000``: one broadcast to 1 000 sessions in this (warm) process.

    .venv/bin/python bench/warm_send.py [--rtt-ms 20] [--handshake-ms 20] [--runs 7]
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

from common import (  # noqa: E402
    ROOT,
    django_env,
    emit,
    free_port,
    make_room,
    percentile,
    reset,
    setup_django,
    stats,
    throwaway_database,
)

from django_aws_api_gateway_websockets.serverless.packaging import compile_bytecode  # noqa: E402

ROOM = 10


FIRST_SEND = """
import json, os, sys, time
import django
django.setup()
from django_aws_api_gateway_websockets.models import WebSocketSession
if sys.argv[2] == "1":
    import boto3
    # The database connection and the ORM's first query cost the same whatever sends.
    WebSocketSession.objects.filter(channel_name="nobody").exists()
kind = sys.argv[1]
rooms = {"room1": "solo", "room10": "room"}
started = time.perf_counter()
if kind == "session":
    # One session's send returns post_to_connection's response (None when gone).
    response = WebSocketSession.objects.filter(channel_name="solo").first().send_message({"t": 1})
    delivered = int(response is not None)
else:
    report = WebSocketSession.objects.filter(channel_name=rooms[kind]).send_message({"t": 1})
    delivered = report.delivered
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "delivered": delivered}))
"""

PLAIN_BOTO3 = """
import json, sys, time
if sys.argv[2] == "1":
    import boto3
started = time.perf_counter()
import boto3
client = boto3.client("apigatewaymanagementapi", endpoint_url=sys.argv[1], region_name="us-east-1")
client.post_to_connection(ConnectionId="solo-1", Data=b'{"t":1}')
print(json.dumps({"seconds": time.perf_counter() - started, "delivered": 1}))
"""


def fresh_process(code: str, argument: str, env: dict[str, str], preimport: bool) -> float:
    result = subprocess.run(
        [sys.executable, "-c", code, argument, "1" if preimport else "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["delivered"] >= 1, result.stderr
    return outcome["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rtt-ms", type=int, default=20)
    parser.add_argument("--handshake-ms", type=int, default=20)
    parser.add_argument("--broadcasts", type=int, default=60)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database-url")
    arguments = parser.parse_args()
    rtt = arguments.rtt_ms / 1000
    # As on Lambda, which sets no CA bundle variables (this machine does).
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    # As deployed: the package carries the bytecode zappa's prebuild_script writes (this
    # machine sets PYTHONDONTWRITEBYTECODE, so the fresh processes would compile from source).
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
            str(arguments.handshake_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{port}"
        with throwaway_database(arguments.database_url) as database_url:
            setup_django(database_url)

            from django_aws_api_gateway_websockets.conf import websocket_setting
            from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession

            gateway = ApiGateway.objects.create(
                api_name="Bench",
                api_id="bench",
                stage_name="bench",
                management_endpoint_url=base + "/bench",
            )
            make_room(gateway, "room", ROOM)
            make_room(gateway, "solo", 1)
            make_room(gateway, "big", 1000)
            slots = max(
                int(websocket_setting("send_concurrency")),
                int(websocket_setting("http_concurrency")),
            )

            # First sends in fresh processes (they share the database and the server), with
            # boto3's import (~0.3 s, paid by the first send either way) timed and not.
            env = django_env(database_url)
            for preimport in (False, True):
                # Interleaved (one of each per round), so drift in the machine's load hits
                # every kind alike.
                samples: dict[str, list[float]] = {k: [] for k in ("room1", "room10", "session")}
                plain_samples: list[float] = []
                for _ in range(arguments.runs):
                    for kind, values in samples.items():
                        values.append(fresh_process(FIRST_SEND, kind, env, preimport))
                    plain_samples.append(
                        fresh_process(PLAIN_BOTO3, base + "/bench", env, preimport)
                    )
                first = {kind: statistics.median(values) for kind, values in samples.items()}
                plain = statistics.median(plain_samples)
                emit(
                    {
                        "bench": "first_send",
                        "boto3_and_db_ready_before": preimport,
                        "runs": arguments.runs,
                        "rtt_ms": arguments.rtt_ms,
                        "handshake_ms": arguments.handshake_ms,
                        "plain_boto3_ms": round(plain * 1000, 1),
                        **{f"{kind}_ms": round(value * 1000, 1) for kind, value in first.items()},
                        "met": first["room1"] <= plain and first["session"] <= plain * 1.05,
                    }
                )

            room = WebSocketSession.objects.filter(channel_name="room")
            reset(base)
            started = time.perf_counter()
            room.send_message({"type": "chat", "text": "warm-up"})
            cold = time.perf_counter() - started
            times = []
            for number in range(arguments.broadcasts):
                started = time.perf_counter()
                report = room.send_message({"type": "chat", "text": f"message {number}"})
                times.append(time.perf_counter() - started)
                assert report.delivered == ROOM, report
            counts = stats(base)
            exactly_once = set(counts["requests"].values()) == {arguments.broadcasts + 1}
            median = statistics.median(times)
            emit(
                {
                    "bench": "warm_room",
                    "room": ROOM,
                    "broadcasts": arguments.broadcasts,
                    "rtt_ms": arguments.rtt_ms,
                    "handshake_ms": arguments.handshake_ms,
                    "first_in_process_rtt": round(cold / rtt, 2),
                    "median_rtt": round(median / rtt, 2),
                    "p90_rtt": round(percentile(times, 0.9) / rtt, 2),
                    "median_ms": round(median * 1000, 1),
                    "connections_opened": counts["connections"],
                    "pool_slots": slots,
                    "exactly_once": exactly_once,
                    "met": median <= 1.3 * rtt and counts["connections"] <= slots and exactly_once,
                }
            )

            reset(base)
            started = time.perf_counter()
            report = WebSocketSession.objects.filter(channel_name="big").send_message({"t": 1})
            seconds = time.perf_counter() - started
            counts = stats(base)
            emit(
                {
                    "bench": "fanout_1000",
                    "rtt_ms": arguments.rtt_ms,
                    "handshake_ms": arguments.handshake_ms,
                    "seconds": round(seconds, 3),
                    "delivered": report.delivered,
                    "exactly_once": set(counts["requests"].values()) == {1}
                    and len(counts["requests"]) == 1000,
                    "connections_opened": counts["connections"],
                }
            )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
