"""Event latency: in-process time of ``handler(event, None)`` for a warm ``$default`` MESSAGE
from a known connection, against the same view called through Django's test client
(issue 5, target 3: handler median <= 2.1 ms, half of the reference's 4.2 ms test-client path).

The view is ``tests.support_views.TokenView`` at ``/token/{route}`` (as in
tests/test_query_counts.py); the message is ``{"action": "echo"}``. The two paths run in
alternating chunks, so load from other processes hits both alike. The handler's own JSON log
line and metrics document are written to /dev/null, and counted.

Usage: .venv/bin/python bench/event_latency.py [--iterations 2000] [--warmup 200]
       [--database-url postgres://postgres@127.0.0.1:5432/postgres] [--sqlite-dir /dev/shm]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import time
from collections.abc import Callable
from typing import Any

from common import (
    API_ID,
    connect_event,
    create_gateway,
    emit,
    load_event,
    median,
    percentile,
    setup_django,
    throwaway_database,
)

TARGET_MS = 2.1
REFERENCE_CLIENT_MS = 4.2
CONNECTION_ID = "BenchLatency0="
CHUNK = 100
MAX_ITERATIONS = 100_000


def timed(
    call: Callable[[Any], Any],
    make_argument: Callable[[], Any],
    count: int,
    wall: list[float],
    cpu: list[float],
) -> None:
    """Run ``call`` ``count`` times, appending wall and CPU milliseconds of each run.

    Arguments are made before the clock starts (the handler gets a fresh copy of the event,
    as Lambda gives it a freshly parsed one; copying is not the handler's time)."""
    for _ in range(count):
        argument = make_argument()
        started, started_cpu = time.perf_counter(), time.process_time()
        call(argument)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)


def summary(wall: list[float], cpu: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(median(wall), 3),
        "p90_ms": round(percentile(wall, 0.9), 3),
        "cpu_median_ms": round(median(cpu), 3),
    }


def run(iterations: int, warmup: int) -> dict[str, Any]:
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, override_settings

    from django_aws_api_gateway_websockets.serverless import make_lambda_handler
    from tests.seed.headers import api_gateway_headers

    override_settings(
        ALLOWED_HOSTS=[".amazonaws.com", "testserver"],
        ROOT_URLCONF="tests.support_urls",
        WEBSOCKETS={
            **settings.WEBSOCKETS,
            "websocket_path": "/token/{route}",
            # Thousands of messages on one connection: the limit is measured, never reached.
            "message_rate_limit": (10**9, 1),
        },
    ).enable()
    create_gateway()
    handler = make_lambda_handler()
    body = json.dumps({"action": "echo"})
    message = load_event("message_who_is_here")
    message["requestContext"]["connectionId"] = CONNECTION_ID
    message["body"] = body
    client = Client()
    headers = api_gateway_headers(api_id=API_ID, connection_id=CONNECTION_ID)

    def fresh_event() -> dict[str, Any]:
        return copy.deepcopy(message)

    def no_argument() -> None:
        return None

    def via_handler(event: dict[str, Any]) -> None:
        response = handler(event, None)
        if response["statusCode"] != 200:
            raise RuntimeError(f"handler answered {response}")

    def via_client(_: None) -> None:
        response = client.post(
            "/token/default", data=body, content_type="application/json", **headers
        )
        if response.status_code != 200:
            raise RuntimeError(f"test client answered {response.status_code}")

    results: dict[str, tuple[list[float], list[float]]] = {
        "handler": ([], []),
        "test_client": ([], []),
    }
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        connected = handler(connect_event("latency", CONNECTION_ID, "203.0.113.200"), None)
        if connected["statusCode"] != 200:
            raise RuntimeError(f"CONNECT answered {connected}")
        timed(via_handler, fresh_event, warmup, [], [])
        timed(via_client, no_argument, warmup, [], [])
        with CaptureQueriesContext(connection) as captured:
            via_handler(fresh_event())
        statements = [query["sql"] for query in captured.captured_queries]
        for done in range(0, iterations, CHUNK):
            count = min(CHUNK, iterations - done)
            timed(via_handler, fresh_event, count, *results["handler"])
            timed(via_client, no_argument, count, *results["test_client"])

    handler_stats = summary(*results["handler"])
    client_stats = summary(*results["test_client"])
    return {
        "handler": handler_stats,
        "test_client": client_stats,
        "ratio_handler_to_client": round(handler_stats["median_ms"] / client_stats["median_ms"], 3),
        "sql_per_message": len(statements),
        "sql_per_message_statements": [sql[:80] for sql in statements],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--database-url", default=None, help="postgres://user@host:port/db")
    parser.add_argument(
        "--sqlite-dir", default=None, help="where the SQLite file goes, e.g. /dev/shm (no fsync)"
    )
    args = parser.parse_args()
    iterations = max(1, min(args.iterations, MAX_ITERATIONS))
    warmup = max(0, min(args.warmup, MAX_ITERATIONS))

    with throwaway_database(args.database_url, args.sqlite_dir) as database_url:
        setup_django(database_url)
        result = run(iterations, warmup)
    handler_ms = result["handler"]["median_ms"]
    emit(
        {
            "bench": "event_latency",
            "database": database_url.split(":", 1)[0],
            "sqlite_dir": args.sqlite_dir if database_url.startswith("sqlite") else None,
            "iterations": iterations,
            "warmup": warmup,
            **result,
            "target_handler_median_ms": TARGET_MS,
            "reference_test_client_ms": REFERENCE_CLIENT_MS,
            "met": handler_ms <= TARGET_MS,
        }
    )


if __name__ == "__main__":
    main()
