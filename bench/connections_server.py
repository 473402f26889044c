"""A local @connections API for benchmarks: answers every POST after a fixed delay.

Run in its own process (so its CPU does not compete with the sender's GIL):
``python bench/connections_server.py PORT DELAY_MS GONE_EVERY THROTTLE_EVERY [HANDSHAKE_MS
[RATE [ERROR_TYPE]]]``. ``DELAY_MS`` stands for one round trip per request; ``HANDSHAKE_MS``
delays the first byte read on each new connection (what a TCP + TLS handshake costs a client
on AWS). ``RATE`` > 0 throttles like API Gateway's account quota: a token bucket admitting
RATE posts a second (holding at most RATE / 2, the ratio of AWS's 5,000 burst to its 10,000/s),
the others answered ``429`` with ``x-amzn-ErrorType: ERROR_TYPE`` (default
``LimitExceededException``, @connections' own; the front door says ``TooManyRequestsException``)
and ``{"message":"Too Many Requests"}``. It counts deliveries per connection id, the posts
refused by the bucket, and the connections that carried @connections posts, and reports them on
``GET /stats``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import unquote


class Bucket:
    """API Gateway's throttle: ``rate`` requests/s, at most ``burst`` saved up."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate / 2)
        self.tokens = self.burst
        self.updated = time.monotonic()

    def admit(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


async def main(
    port: int,
    delay: float,
    gone_every: int,
    throttle_every: int,
    handshake: float,
    rate: float = 0.0,
    error_type: str = "LimitExceededException",
) -> None:
    delivered: Counter[str] = Counter()
    throttled: set[str] = set()
    requests = Counter[str]()
    connections = Counter[str]()
    bucket = Bucket(rate) if rate > 0 else None

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counted = False
        try:
            if handshake:
                await asyncio.sleep(handshake)
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if method == "GET" and path == "/stats":
                    body = json.dumps(
                        {
                            "delivered": delivered,
                            "requests": requests,
                            "connections": connections["posting"],
                            "refused": connections["refused"],
                        }
                    ).encode()
                    status = "200 OK"
                elif method == "DELETE" and path == "/stats":
                    delivered.clear(), throttled.clear(), requests.clear(), connections.clear()
                    if bucket is not None:
                        bucket.tokens, bucket.updated = bucket.burst, time.monotonic()
                    body, status = b"", "200 OK"
                else:
                    if not counted:
                        connections["posting"] += 1
                        counted = True
                    await asyncio.sleep(delay)
                    connection_id = unquote(path.rsplit("/", 1)[-1])
                    requests[connection_id] += 1
                    number = int(connection_id.rsplit("-", 1)[-1])
                    if bucket is not None and not bucket.admit():
                        connections["refused"] += 1
                        status, body = "429 Too Many Requests", b'{"message":"Too Many Requests"}'
                    elif gone_every and number % gone_every == 0:
                        status, body = "410 Gone", b'{"message":"gone"}'
                    elif (
                        throttle_every
                        and number % throttle_every == 0
                        and (connection_id not in throttled)
                    ):
                        throttled.add(connection_id)
                        status, body = "429 Too Many Requests", b'{"message":"slow down"}'
                    else:
                        delivered[connection_id] += 1
                        status, body = "200 OK", b""
                error = ""
                if status.startswith("410"):
                    error = "x-amzn-ErrorType: GoneException\r\n"
                elif status.startswith("429"):
                    error = f"x-amzn-ErrorType: {error_type}\r\n"
                writer.write(
                    f"HTTP/1.1 {status}\r\n{error}Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    port, delay_ms, gone_every, throttle_every = (int(arg) for arg in sys.argv[1:5])
    handshake_ms = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    rate = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    error_type = sys.argv[7] if len(sys.argv) > 7 else "LimitExceededException"
    asyncio.run(
        main(
            port, delay_ms / 1000, gone_every, throttle_every, handshake_ms / 1000, rate, error_type
        )
    )
