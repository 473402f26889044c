"""The fan-out's HTTP client against the field-standard async clients, on the same work: N signed
``POST /@connections/{id}`` (one ``Signer`` for all three) to ``connections_server.py`` answering
after ``--delay-ms``, at most 64 in flight over keep-alive connections.

Reports per client: wall time, CPU per post (this process's user + system time, the server
runs in its own process), connections opened. aiohttp and httpx are not dependencies: run it
with an interpreter that has them (``pip install aiohttp httpx`` in a scratch venv); a client
that is not installed is reported as such.

    python bench/transport_compare.py [--n 1000] [--delay-ms 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django_aws_api_gateway_websockets.connections_http import (  # noqa: E402
    FanOut,
    Signer,
    Target,
    connection_path,
)

CONCURRENCY = 64
PAYLOAD = b'{"type":"bench","text":"hello"}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def server_stats(base: str, reset: bool = False) -> dict:
    if reset:
        request = urllib.request.Request(base + "/stats", method="DELETE")
        urllib.request.urlopen(request).read()
        return {}
    return json.loads(urllib.request.urlopen(base + "/stats").read())


def ids(count: int, round_number: int) -> list[str]:
    return [f"r{round_number}-{n}" for n in range(1, count + 1)]


def run_ours(target: Target, connection_ids: list[str]) -> int:
    outcomes: list[str] = []
    fan_out = FanOut(
        concurrency=CONCURRENCY,
        max_retries=0,
        base_delay=0.01,
        on_result=lambda connection_id, outcome: outcomes.append(outcome),
    )
    signer = Signer(target, PAYLOAD)
    for connection_id in connection_ids:
        fan_out.submit(target, signer, PAYLOAD, connection_id)
    fan_out.close()
    return outcomes.count("delivered")


def signed(target: Target, signer: Signer, connection_id: str) -> tuple[str, dict[str, str]]:
    path = connection_path(target, connection_id)
    return f"http://{target.host_header}{path}", dict(signer.headers(path))


async def run_aiohttp(session, target: Target, connection_ids: list[str]) -> int:
    signer = Signer(target, PAYLOAD)

    async def one(connection_id: str) -> bool:
        url, headers = signed(target, signer, connection_id)
        async with session.post(url, data=PAYLOAD, headers=headers) as response:
            await response.read()
            return response.status == 200

    return sum(await asyncio.gather(*(one(c) for c in connection_ids)))


async def run_httpx(client, target: Target, connection_ids: list[str]) -> int:
    signer = Signer(target, PAYLOAD)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(connection_id: str) -> bool:
        url, headers = signed(target, signer, connection_id)
        async with gate:
            response = await client.post(url, content=PAYLOAD, headers=headers)
            return response.status_code == 200

    return sum(await asyncio.gather(*(one(c) for c in connection_ids)))


def measure(name: str, base: str, rounds: int, count: int, run) -> dict:
    walls, cpus = [], []
    delivered_all = True
    run(ids(count, 0))  # warm-up: connections open, code paths loaded
    server_stats(base, reset=True)
    for round_number in range(1, rounds + 1):
        started_cpu, started = cpu(), time.perf_counter()
        delivered = run(ids(count, round_number))
        walls.append(time.perf_counter() - started)
        cpus.append(cpu() - started_cpu)
        delivered_all &= delivered == count
    stats = server_stats(base)
    return {
        "client": name,
        "n": count,
        "seconds_median": round(statistics.median(walls), 3),
        "cpu_us_per_post": round(statistics.median(cpus) / count * 1e6),
        "all_delivered": delivered_all and set(stats["requests"].values()) == {1},
        "connections_opened_after_warmup": stats["connections"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--delay-ms", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "connections_server.py"),
            str(port),
            str(arguments.delay_ms),
            "0",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    target = Target("http", "127.0.0.1", port, "/bench", "us-east-1", "", "AKID", "secret", None)
    results = []
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        results.append(
            measure("hand-written (connections_http)", base, arguments.rounds, arguments.n,
                    lambda connection_ids: run_ours(target, connection_ids))
        )  # fmt: skip
        try:
            import aiohttp
        except ImportError:
            results.append({"client": "aiohttp", "installed": False})
        else:
            loop = asyncio.new_event_loop()

            async def make_session():
                return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY))

            session = loop.run_until_complete(make_session())
            result = measure(
                f"aiohttp {aiohttp.__version__}", base, arguments.rounds, arguments.n,
                lambda connection_ids: loop.run_until_complete(
                    run_aiohttp(session, target, connection_ids)
                ),
            )  # fmt: skip
            loop.run_until_complete(session.close())
            loop.close()
            results.append(result)
        try:
            import httpx
        except ImportError:
            results.append({"client": "httpx", "installed": False})
        else:
            loop = asyncio.new_event_loop()
            limits = httpx.Limits(
                max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY
            )
            client = httpx.AsyncClient(limits=limits, timeout=10)
            result = measure(
                f"httpx {httpx.__version__}", base, arguments.rounds, arguments.n,
                lambda connection_ids: loop.run_until_complete(
                    run_httpx(client, target, connection_ids)
                ),
            )  # fmt: skip
            loop.run_until_complete(client.aclose())
            loop.close()
            results.append(result)
    finally:
        server.terminate()
        server.wait(10)
    for result in results:
        print(json.dumps({"bench": "transport_compare", "delay_ms": arguments.delay_ms, **result}))


if __name__ == "__main__":
    main()
