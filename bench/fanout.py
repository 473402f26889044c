"""Fan-out throughput: ``WebSocketSession.objects.filter(channel_name=...).send_message(...)``
to N connected sessions through a local @connections server that answers after 20 ms.

Compares, in one run: a sequential boto3 loop (the baseline), the library with boto3 in
threads (``fanout_transport="boto3"``), and the library's default signed-HTTP path. Checks
that every message arrives exactly once (gone sessions marked, throttled ones retried).

    .venv/bin/python bench/fanout.py [--sizes 1000 10000] [--sequential-size 1000]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
GONE_EVERY = 97
THROTTLE_EVERY = 89


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def setup_django(database: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        DATABASE_URL=database,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_GATEWAY_REGION_NAME="us-east-1",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def stats(base: str) -> dict:
    return json.loads(urllib.request.urlopen(base + "/stats").read())


def reset(base: str) -> None:
    urllib.request.urlopen(urllib.request.Request(base + "/stats", method="DELETE"))


def make_sessions(gateway, count: int) -> None:
    from django_aws_api_gateway_websockets.models import WebSocketSession

    WebSocketSession.objects.all().delete()
    WebSocketSession.objects.bulk_create(
        [
            WebSocketSession(connection_id=f"c-{n}", channel_name="bench", api_gateway=gateway)
            for n in range(1, count + 1)
        ],
        batch_size=2000,
    )


def expected(count: int) -> tuple[int, int]:
    gone = count // GONE_EVERY
    return count - gone, gone


def run_library(gateway, base: str, count: int, transport: str) -> dict:
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from django_aws_api_gateway_websockets.models import WebSocketSession

    make_sessions(gateway, count)
    reset(base)
    settings.WEBSOCKETS = {"fanout_transport": transport, "send_retry_base_delay": 0.02}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as queries:
        report = WebSocketSession.objects.filter(channel_name="bench").send_message(
            {"type": "bench", "text": "hello"}
        )
    seconds = time.perf_counter() - started
    received = stats(base)["delivered"]
    want_delivered, want_gone = expected(count)
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    return {
        "n": count,
        "transport": transport,
        "seconds": round(seconds, 3),
        "per_second": round(count / seconds),
        "delivered": report.delivered,
        "gone": report.gone,
        "failed": report.failed,
        "exactly_once": len(received) == want_delivered and set(received.values()) == {1},
        "counts_ok": (report.delivered, report.gone) == (want_delivered, want_gone),
        "gone_marked": WebSocketSession.objects.filter(connected=False).count() == want_gone,
        "gone_updates": len(updates),
        "max_rss_growth_mb": round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1
        ),
    }


def run_sequential(base: str, count: int) -> dict:
    import boto3

    client = boto3.client(
        "apigatewaymanagementapi", endpoint_url=base + "/bench", region_name="us-east-1"
    )
    reset(base)
    started = time.perf_counter()
    for n in range(1, count + 1):
        try:
            client.post_to_connection(ConnectionId=f"c-{n}", Data=b'{"type":"bench"}')
        except client.exceptions.GoneException:
            pass
        except client.exceptions.LimitExceededException:
            client.post_to_connection(ConnectionId=f"c-{n}", Data=b'{"type":"bench"}')
    seconds = time.perf_counter() - started
    return {"n": count, "transport": "sequential-boto3", "seconds": round(seconds, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--sequential-size", type=int, default=1000)
    parser.add_argument("--delay-ms", type=int, default=20)
    arguments = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "connections_server.py"),
            str(port),
            str(arguments.delay_ms),
            str(GONE_EVERY),
            str(THROTTLE_EVERY),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        base = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as tmp:
            setup_django(f"sqlite:///{tmp}/bench.sqlite3")
            from django_aws_api_gateway_websockets.models import ApiGateway

            gateway = ApiGateway.objects.create(
                api_name="Bench",
                api_id="bench",
                stage_name="bench",
                management_endpoint_url=base + "/bench",
            )
            results = [run_sequential(base, arguments.sequential_size)]
            for count in arguments.sizes:
                for transport in ("boto3", "auto"):
                    if transport == "boto3" and count > 2000:
                        continue  # minutes at boto3's CPU cost; the 1000 figure shows the rate
                    results.append(run_library(gateway, base, count, transport))
    finally:
        server.terminate()
        server.wait(10)
    sequential = results[0]["seconds"] / results[0]["n"]
    for result in results[1:]:
        result["speedup_vs_sequential"] = round(sequential * result["n"] / result["seconds"], 1)
    print(json.dumps({"bench": "fanout", "delay_ms": arguments.delay_ms, "results": results}))


if __name__ == "__main__":
    main()
