"""Throttle-aware fan-out (issue 15): a broadcast to 10,000 sessions against a local
@connections server that admits 1,000 requests/s (API Gateway's answer above that: 429
``LimitExceededException``), with the library's defaults (``send_rate_limit`` 3000/s,
``send_throttle_deadline_seconds`` 25). Target: 0 failed, 0 duplicated.

Then the price of the bucket where nothing throttles: a 1,000-session fan-out against an
unthrottled server, with the bucket on (default) and off (``send_rate_limit`` 0), alternated;
its burst (one second's worth) must let the whole fan-out through without one wait.

Sessions are rows of a real database: a temporary SQLite file, or, with ``--database-url``
(default: ``DATABASE_URL`` when it names a PostgreSQL server), a throw-away database there.

    .venv/bin/python bench/throttled_fanout.py [--sessions 10000] [--server-rate 1000]
        [--transport auto|boto3] [--runs 5] [--database-url postgres://...]

Prints one JSON line per measurement; the last one sums them up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, emit, free_port, make_room, reset, setup_django, stats, throwaway_database  # noqa: E402


@contextmanager
def connections_server(delay_ms: int, rate: float) -> Iterator[str]:
    """A bench/connections_server.py process (its own CPU): yields its base URL."""
    port = free_port()
    arguments = [str(port), str(delay_ms), "0", "0", "0", str(rate)]
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "connections_server.py"), *arguments],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


class WaitRecorder:
    """Wraps ``SendRate.reserve`` to record the longest wait the bucket asked for."""

    def __init__(self) -> None:
        from django_aws_api_gateway_websockets.send_rate import SendRate

        self.longest = 0.0
        self.original = SendRate.reserve
        recorder = self

        def reserve(bucket, deadline=None):
            grant = recorder.original(bucket, deadline)
            if grant is not None:
                recorder.longest = max(recorder.longest, grant.delay)
            return grant

        SendRate.reserve = reserve  # type: ignore[method-assign]

    def close(self) -> None:
        from django_aws_api_gateway_websockets.send_rate import SendRate

        SendRate.reserve = self.original  # type: ignore[method-assign]


def broadcast(base: str, channel: str, websockets: dict) -> tuple[float, object, dict]:
    """One fan-out to ``channel``: seconds, its report, what the server counted."""
    from django.conf import settings

    from django_aws_api_gateway_websockets import send_rate
    from django_aws_api_gateway_websockets.models import WebSocketSession

    settings.WEBSOCKETS = websockets
    send_rate.forget_limiter()  # every run starts with a full bucket, as a fresh process
    reset(base)
    started = time.perf_counter()
    report = WebSocketSession.objects.filter(channel_name=channel).send_message(
        {"type": "bench", "text": "hello"}
    )
    return time.perf_counter() - started, report, stats(base)


def exactness(received: dict[str, int], count: int) -> dict[str, int]:
    return {
        "received": len(received),
        "missing": count - len(received),
        "duplicated": sum(times - 1 for times in received.values() if times > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--server-rate", type=float, default=1000)
    parser.add_argument("--compare-size", type=int, default=1000)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--transport", default="auto", choices=["auto", "boto3"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--send-rate-limit", type=int, default=3000, help="for the throttled run; 0: no bucket"
    )
    env_url = os.environ.get("DATABASE_URL", "")
    parser.add_argument(
        "--database-url", default=env_url if env_url.startswith("postgres") else None
    )
    arguments = parser.parse_args()
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)  # as on Lambda
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

    with (
        throwaway_database(arguments.database_url) as database_url,
        connections_server(arguments.delay_ms, arguments.server_rate) as throttled_base,
        connections_server(arguments.delay_ms, 0) as open_base,
    ):
        setup_django(database_url)
        from django_aws_api_gateway_websockets import send_rate
        from django_aws_api_gateway_websockets.models import ApiGateway

        throttled_gateway = ApiGateway.objects.create(
            api_name="Throttled",
            api_id="throttled",
            stage_name="bench",
            management_endpoint_url=throttled_base + "/bench",
        )
        open_gateway = ApiGateway.objects.create(
            api_name="Open",
            api_id="open",
            stage_name="bench",
            management_endpoint_url=open_base + "/bench",
        )
        make_room(throttled_gateway, "big", arguments.sessions)
        make_room(open_gateway, "room", arguments.compare_size)
        base_settings = {"fanout_transport": arguments.transport}

        seconds, report, server = broadcast(
            throttled_base, "big", {**base_settings, "send_rate_limit": arguments.send_rate_limit}
        )
        bucket = send_rate.limiter()
        throttled = {
            "bench": "throttled_fanout",
            "database": database_url.split(":", 1)[0],
            "transport": arguments.transport,
            "sessions": arguments.sessions,
            "server_rate": arguments.server_rate,
            "rtt_ms": arguments.delay_ms,
            "send_rate_limit": bucket.limit if bucket else 0,
            "seconds": round(seconds, 2),
            "delivered": report.delivered,
            "failed": report.failed,
            **exactness(server["delivered"], arguments.sessions),
            "achieved_per_second": round(report.delivered / seconds),
            "server_refused": server["refused"],
            "halvings": bucket.halvings if bucket else 0,
            "final_rate": round(bucket.rate) if bucket else None,
        }
        throttled["target_met"] = throttled["failed"] == 0 and throttled["duplicated"] == 0
        emit(throttled)

        # The bucket where nothing throttles: alternated with it off, medians.
        timings: dict[str, list[float]] = {"on": [], "off": []}
        exact = True
        recorder = WaitRecorder()
        try:
            for _ in range(arguments.runs):
                for mode, limit in (("on", 3000), ("off", 0)):
                    seconds, report, server = broadcast(
                        open_base, "room", {**base_settings, "send_rate_limit": limit}
                    )
                    timings[mode].append(seconds)
                    counted = exactness(server["delivered"], arguments.compare_size)
                    exact &= report.failed == 0 and counted["missing"] == counted["duplicated"] == 0
        finally:
            recorder.close()
        on, off = statistics.median(timings["on"]), statistics.median(timings["off"])
        unthrottled = {
            "bench": "unthrottled_fanout",
            "transport": arguments.transport,
            "sessions": arguments.compare_size,
            "rtt_ms": arguments.delay_ms,
            "runs": arguments.runs,
            "limiter_on_seconds": round(on, 3),
            "limiter_off_seconds": round(off, 3),
            "ratio": round(on / off, 3),
            "longest_wait_asked_seconds": round(recorder.longest, 6),
            "exactly_once": exact,
        }
        emit(unthrottled)
        emit(
            {
                "bench": "throttled_fanout_summary",
                "throttled_target_met": throttled["target_met"],
                "throttled_seconds": throttled["seconds"],
                "achieved_per_second": throttled["achieved_per_second"],
                "unthrottled_ratio": unthrottled["ratio"],
                "unthrottled_never_waited": recorder.longest == 0.0,
            }
        )


if __name__ == "__main__":
    main()
