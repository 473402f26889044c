"""A local @connections API for benchmarks: answers every POST after a fixed delay.

Run in its own process (so its CPU does not compete with the sender's GIL):
``python bench/connections_server.py PORT DELAY_MS GONE_EVERY THROTTLE_EVERY [HANDSHAKE_MS]``.
``DELAY_MS`` stands for one round trip per request; ``HANDSHAKE_MS`` delays the first byte
read on each new connection (what a TCP + TLS handshake costs a client on AWS). It counts
deliveries per connection id, and the connections that carried @connections posts, and
reports them on ``GET /stats``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from urllib.parse import unquote


async def main(
    port: int, delay: float, gone_every: int, throttle_every: int, handshake: float
) -> None:
    delivered: Counter[str] = Counter()
    throttled: set[str] = set()
    requests = Counter[str]()
    connections = Counter[str]()

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
                        }
                    ).encode()
                    status = "200 OK"
                elif method == "DELETE" and path == "/stats":
                    delivered.clear(), throttled.clear(), requests.clear(), connections.clear()
                    body, status = b"", "200 OK"
                else:
                    if not counted:
                        connections["posting"] += 1
                        counted = True
                    await asyncio.sleep(delay)
                    connection_id = unquote(path.rsplit("/", 1)[-1])
                    requests[connection_id] += 1
                    number = int(connection_id.rsplit("-", 1)[-1])
                    if gone_every and number % gone_every == 0:
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
                    error = "x-amzn-ErrorType: LimitExceededException\r\n"
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
    asyncio.run(main(port, delay_ms / 1000, gone_every, throttle_every, handshake_ms / 1000))
