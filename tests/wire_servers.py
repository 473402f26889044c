"""Real HTTP/1.1 @connections servers on loopback (127.0.0.1 or ::1) that misbehave the way
networks do.

Each accepted socket is served by its own thread, one request after another (keep-alive),
so a client's connection reuse, dead-connection detection and response parsing meet real
sockets. ``handled`` counts what the server processed per connection id (what a WebSocket
client would have received); ``answered`` counts the 200s it sent back; ``bodies`` keeps the
bodies received per connection id, in the order they arrived; ``hosts`` the ``Host`` headers
received; ``closed_by_client`` the sockets the client closed between requests.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

Reply = Callable[["WireServer", str, int], bytes | None]


def response(
    status: str = "200 OK",
    *,
    version: str = "HTTP/1.1",
    headers: tuple[str, ...] = (),
    body: bytes = b"",
    length: bool = True,
) -> bytes:
    """Raw response bytes; ``length=False`` leaves the body delimited by the close."""
    lines = [f"{version} {status}", *headers]
    if length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(status: str, body: bytes, *, headers: tuple[str, ...] = ()) -> bytes:
    """A chunked response with a chunk extension and trailers."""
    head = "\r\n".join([f"HTTP/1.1 {status}", "Transfer-Encoding: chunked", *headers])
    half = len(body) // 2
    chunks = b""
    for part in (body[:half], body[half:]):
        if part:
            chunks += f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n"
    return head.encode() + b"\r\n\r\n" + chunks + b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"


def closes_after(raw: bytes) -> bool:
    """Whether a server must close after sending ``raw`` (HTTP/1.0 or a close-framed body)."""
    while raw.startswith(b"HTTP/1.1 100"):  # an interim response precedes the real one
        raw = raw.split(b"\r\n\r\n", 1)[1]
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    framed = b"content-length:" in head or b"transfer-encoding: chunked" in head
    if head.startswith(b"http/1.0"):
        return not (framed and b"connection: keep-alive" in head)
    return not framed or b"connection: close" in head


def ok(server: WireServer, connection_id: str, number: int) -> bytes:
    return response()


class Throttling:
    """A ``Reply`` that admits ``rate`` requests/s (a token bucket holding at most ``burst``)
    and answers the rest 429 as API Gateway does: ``x-amzn-ErrorType`` and a JSON message.
    Connection ids in ``always`` are refused every time. ``refused`` counts the 429s."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        error_type: str = "LimitExceededException",
        always: frozenset[str] = frozenset(),
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 2)
        self.error_type = error_type
        self.always = always
        self.tokens = self.burst
        self.updated = time.monotonic()
        self.refused = 0
        self.lock = threading.Lock()

    def __call__(self, server: WireServer, connection_id: str, number: int) -> bytes:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if connection_id not in self.always and self.tokens >= 1:
                self.tokens -= 1
                return response()
            self.refused += 1
        return response(
            "429 Too Many Requests",
            headers=(f"x-amzn-ErrorType: {self.error_type}", "Content-Type: application/json"),
            body=b'{"message":"Too Many Requests"}',
        )


@dataclass
class Behaviour:
    reply: Reply = ok
    # The n-th request on each socket is read and handled, then the socket closes unanswered.
    drop_every: int = 0
    # Close a socket that has carried no request for this long (a server's idle timeout).
    idle_timeout: float | None = None
    # Close the socket right after every answer (without saying ``Connection: close``).
    close_after_reply: bool = False


class WireServer:
    def __init__(
        self,
        behaviour: Behaviour | None = None,
        stage: str = "prod",
        tls: ssl.SSLContext | None = None,
        handshake_delay: float = 0.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.behaviour = behaviour or Behaviour()
        self.tls = tls
        # Seconds before a new socket's TLS handshake (or first read): a far-away endpoint.
        self.handshake_delay = handshake_delay
        # time.monotonic() of each accepted connection.
        self.accepted_at: list[float] = []
        self.stage = stage
        self.lock = threading.Lock()
        self.handled: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.bodies: defaultdict[str, list[bytes]] = defaultdict(list)
        self.hosts: Counter[str] = Counter()
        self.connections = 0
        self.closed_by_client = 0
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family, backlog=512)
        self.port = self.listener.getsockname()[1]
        netloc = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{netloc}:{self.port}/{stage}"
        self._stopping = False
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.accepted_at.append(time.monotonic())
                self._sockets.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        buffer = b""
        on_this_socket = 0
        try:
            if self.handshake_delay:
                time.sleep(self.handshake_delay)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            while True:
                sock.settimeout(self.behaviour.idle_timeout)
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = sock.recv(65536)
                    except TimeoutError:
                        return  # idle too long: close
                    if not data:
                        if not buffer:
                            with self.lock:
                                self.closed_by_client += 1
                        return
                    buffer += data
                sock.settimeout(None)
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                    elif name.strip().lower() == "host":
                        with self.lock:
                            self.hosts[value.strip()] += 1
                while len(buffer) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                connection_id = unquote(lines[0].split(" ")[1].rsplit("/", 1)[-1])
                on_this_socket += 1
                with self.lock:
                    self.bodies[connection_id].append(body)
                    self.requests[connection_id] += 1
                    number = self.requests[connection_id]
                drop = self.behaviour.drop_every and on_this_socket % self.behaviour.drop_every == 0
                if drop:
                    with self.lock:
                        self.handled[connection_id] += 1  # the worst case: it was delivered
                    return
                raw = self.behaviour.reply(self, connection_id, number)
                if raw is None:
                    return
                if raw.split(b" ", 2)[1].startswith(b"2"):
                    # Counted before the bytes leave: the client may read them (and the test
                    # compare) before this thread runs again.
                    with self.lock:
                        self.handled[connection_id] += 1
                        self.answered[connection_id] += 1
                sock.sendall(raw)
                if self.behaviour.close_after_reply or closes_after(raw):
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self.listener.close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)
