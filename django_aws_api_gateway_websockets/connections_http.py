"""Posting one payload to many connections quickly: SigV4-signed HTTP/1.1 requests over
keep-alive connections, driven by one asyncio loop per process.

boto3 spends ~1.4 ms of CPU per ``post_to_connection`` (validation, serialisation, hooks,
parsing); under the GIL that caps a threaded fan-out near 500 messages/s. Here a fan-out
hashes its payload once, derives the signing key once per day, and each message costs one
HMAC and a few small writes, so throughput is bound by the network, not the interpreter.
Used by ``sending`` for real botocore clients only; anything else keeps boto3's own path.

Exactly once: a request is written at most once. An idle connection is checked before reuse
(closed, at EOF or readable means the server dropped it) and retired after
``MAX_IDLE_SECONDS``; a request that fails after it was written is a counted failure, never
resent. Only throttling answers (the server refused the message) are retried.

Warm containers: the loop thread, its pools and their connections live for the process, so
a send in a warm Lambda container reuses open (TLS) connections; a timer closes the ones
idle too long, whether or not their endpoint is sent to again. After ``fork`` the child
starts its own loop and never touches the parent's sockets. Closing the transport (or its
loop dying) under a broadcast fails the posts in flight instead of leaving it waiting.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import select
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass

from .aws import moto_is_mocking
from .send_policy import Outcome, backoff_delay, classify
from .send_rate import THROTTLE_DEADLINE, SendRate, throttle_deadline_seconds

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
REQUEST_TIMEOUT = 10.0
# API Gateway does not document how long its @connections front end keeps an idle keep-alive
# connection; AWS's load balancers default to 60 s. Retiring ours after 30 s keeps the race
# (server closes as we write: a lost, uncounted-as-delivered message) far from the usual limits.
MAX_IDLE_SECONDS = 30.0
# Responses of @connections are tiny; anything bigger is not an answer we can use.
MAX_BODY_BYTES = 1024 * 1024
# Posts a fan-out queues before waking the loop (it also wakes when full and when closed).
SUBMIT_BATCH = 32
# The idle sweep runs this long after the oldest idle connection expires (never early, so a
# timer firing a hair before its time cannot find nothing to retire and spin).
SWEEP_SLACK = 0.05
# How long closing the transport lets cancelled posts finish (they only close sockets).
CLOSE_GRACE_SECONDS = 1.0
# How often a fan-out waiting for its posts checks that the loop still runs them.
LIVENESS_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Address:
    """Where connections go: what a keep-alive pool is shared by (credentials are not)."""

    scheme: str
    host: str
    port: int
    ca_bundle: str


@dataclass(frozen=True)
class Target:
    """One @connections endpoint and the identity that signs for it."""

    scheme: str
    host: str
    port: int
    base_path: str
    region: str
    # A CA bundle path (botocore's verify / AWS_CA_BUNDLE), or "" for botocore's default.
    ca_bundle: str
    access_key: str
    secret_key: str
    token: str | None

    @property
    def host_header(self) -> str:
        """``Host`` as botocore sends and signs it: an IPv6 literal in brackets (RFC 3986)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def address(self) -> Address:
        return Address(self.scheme, self.host, self.port, self.ca_bundle)


def target_for(client: Any) -> Target | None:
    """The endpoint, region and credentials of a real botocore client, or None (mocks, stubs)."""
    from botocore.client import BaseClient

    if not isinstance(client, BaseClient) or moto_is_mocking():
        return None
    http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    verify = getattr(http_session, "_verify", True)
    url = client.meta.endpoint_url
    if client.meta.config.proxies or _proxied(url) or verify is False:
        # Proxies and disabled verification stay boto3's business.
        return None
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is None:
        return None
    # Read per fan-out: refreshable credentials (a Lambda role) rotate under the same client.
    frozen = credentials.get_frozen_credentials()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return Target(
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
        region=client.meta.region_name,
        ca_bundle=verify if isinstance(verify, str) else "",
        access_key=frozen.access_key,
        secret_key=frozen.secret_key,
        token=frozen.token,
    )


def address_for(endpoint_url: str) -> Address | None:
    """Where a real botocore client for ``endpoint_url`` would make ``target_for`` connect,
    or None where boto3 would do the sending (moto, proxies, other schemes)."""
    parts = urlsplit(endpoint_url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or moto_is_mocking()
        or _proxied(endpoint_url)
    ):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    # What botocore's client verifies with, as target_for reads it back: AWS_CA_BUNDLE, else
    # REQUESTS_CA_BUNDLE, else its default (""). A config file's ca_bundle is missed: that
    # spare connection then sits in a pool no send uses until the idle sweep closes it.
    ca_bundle = os.environ.get("AWS_CA_BUNDLE") or os.environ.get("REQUESTS_CA_BUNDLE") or ""
    return Address(parts.scheme, parts.hostname, port, ca_bundle)


def _proxied(url: str) -> bool:
    """Whether botocore would send to ``url`` through a proxy from the environment: the
    proxy of the URL's scheme (``https_proxy``/``http_proxy``, either case), unless
    ``no_proxy`` exempts the host. Asked the way botocore asks urllib, so both agree."""
    parts = urlsplit(url)
    if not getproxies().get(parts.scheme):
        return False
    try:
        return not proxy_bypass(parts.netloc)
    except (TypeError, OSError):  # botocore ignores these failures of the check too
        return True


def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    """Verify like botocore: the configured bundle, else certifi's, else the system's."""
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


# Derived once per secret, day and region for the process, not per fan-out.
_SIGNING_KEYS: dict[tuple[str, str, str], bytes] = {}


class Signer:
    """AWS Signature Version 4 for ``POST <base>/@connections/<id>`` with a fixed payload."""

    def __init__(self, target: Target, payload: bytes) -> None:
        self.target = target
        self.payload_hash = hashlib.sha256(payload).hexdigest()

    def _signing_key(self, day: str) -> bytes:
        cache_key = (self.target.secret_key, day, self.target.region)
        key = _SIGNING_KEYS.get(cache_key)
        if key is None:
            key = f"AWS4{self.target.secret_key}".encode()
            for part in (day, self.target.region, "execute-api", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(_SIGNING_KEYS) > 32:  # rotated credentials: forget the old ones
                _SIGNING_KEYS.clear()
            _SIGNING_KEYS[cache_key] = key
        return key

    def headers(self, path: str, now: float | None = None) -> list[tuple[str, str]]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = amz_date[:8]
        canonical_headers = f"host:{self.target.host_header}\nx-amz-date:{amz_date}\n"
        signed = "host;x-amz-date"
        if self.target.token:
            canonical_headers += f"x-amz-security-token:{self.target.token}\n"
            signed += ";x-amz-security-token"
        # The canonical URI encodes the (already encoded) wire path once more, as SigV4 wants
        # for every service but S3.
        canonical_path = quote(path, safe="/~")
        canonical = f"POST\n{canonical_path}\n\n{canonical_headers}\n{signed}\n{self.payload_hash}"
        scope = f"{day}/{self.target.region}/execute-api/aws4_request"
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
            f"{hashlib.sha256(canonical.encode()).hexdigest()}"
        )
        signature = hmac.new(
            self._signing_key(day), string_to_sign.encode(), hashlib.sha256
        ).hexdigest()
        headers = [
            ("X-Amz-Date", amz_date),
            (
                "Authorization",
                f"AWS4-HMAC-SHA256 Credential={self.target.access_key}/{scope}, "
                f"SignedHeaders={signed}, Signature={signature}",
            ),
        ]
        if self.target.token:
            headers.append(("X-Amz-Security-Token", self.target.token))
        return headers


def connection_path(target: Target, connection_id: str) -> str:
    """The wire path of one connection (ids are base64: ``+``, ``/`` and ``=`` are encoded)."""
    return f"{target.base_path}/@connections/{quote(connection_id, safe='')}"


class NotSent(Exception):
    """No byte of the request reached the server (connecting failed): safe to report or retry."""


class SendFailed(Exception):
    """The request may have reached the server: it must never be written again."""


@dataclass(frozen=True)
class Response:
    status: int
    error_type: str
    keep_alive: bool


def _error_type(headers: dict[str, str], body: bytes) -> str:
    """The AWS error code, as botocore finds it: ``x-amzn-ErrorType``, else the JSON body."""
    code = headers.get("x-amzn-errortype", "")
    if not code and body[:1] == b"{":
        try:
            document = json.loads(body)
        except ValueError:
            document = {}
        if isinstance(document, dict):
            code = str(document.get("__type") or document.get("code") or "")
    # "LimitExceededException:http://internal..." and "aws.protocol#ThrottlingException".
    return code.split(":")[0].rsplit("#", 1)[-1]


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """Version, status and headers (lower-cased names) of a response head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1."):
        raise SendFailed(f"not an HTTP/1.x response: {status_line[:40]!r}")
    headers: dict[str, str] = {}
    for line in lines:
        if not line:
            continue
        name, _, value = line.partition(":")
        key, value = name.strip().lower(), value.strip()
        # Repeated headers combine with a comma (RFC 9110 5.3).
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return version, int(rest[:3]), headers


async def read_response(reader: asyncio.StreamReader) -> tuple[Response, bytes]:
    """One HTTP/1.x response: status, AWS error code, body, and whether the connection may
    carry another request (HTTP/1.1 unless ``close``; HTTP/1.0 only with ``keep-alive``; never
    after a body delimited by the connection closing)."""
    while True:
        version, status, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        if not 100 <= status < 200:
            break  # 1xx (e.g. 100 Continue) is followed by the real response
    tokens = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    keep_alive = "keep-alive" in tokens if version == "HTTP/1.0" else "close" not in tokens
    codings = headers.get("transfer-encoding", "").lower()
    if status in (204, 304):
        body = b""
    elif codings:
        if codings.rsplit(",", 1)[-1].strip() != "chunked":
            body, keep_alive = await reader.read(MAX_BODY_BYTES), False
        else:
            body = await _read_chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"].split(",")[0])
        if length > MAX_BODY_BYTES:
            raise SendFailed(f"HTTP {status} with a {length}-byte body")
        body = await reader.readexactly(length)
    else:
        # Delimited by the server closing the connection (HTTP/1.0 style).
        body, keep_alive = await _read_to_eof(reader), False
    return Response(status, _error_type(headers, body), keep_alive), body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            # Trailers, if any, up to the blank line.
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(parts)
        total += size
        if total > MAX_BODY_BYTES:
            raise SendFailed("chunked response body too large")
        parts.append((await reader.readexactly(size + 2))[:-2])


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while chunk := await reader.read(65536):
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            raise SendFailed("response body too large")
        parts.append(chunk)
    return b"".join(parts)


def _socket_readable(sock: Any) -> bool:
    """True if ``sock`` has bytes or an EOF waiting (zero-timeout poll, like urllib3's)."""
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (AttributeError, OSError, ValueError):
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable)


class _HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.idle_since = time.monotonic()

    def is_dropped(self) -> bool:
        """True if this idle connection must not carry a request: closed, at EOF, holding bytes
        nobody asked for, or with a socket that is readable (a FIN or data not yet read).

        Checked before every reuse, so a connection the server closed while idle is retired
        before anything is written to it."""
        if self.writer.is_closing() or self.reader.at_eof() or self.reader.exception():
            return True
        if getattr(self.reader, "_buffer", b""):
            return True
        sock = self.writer.get_extra_info("socket")
        return sock is None or _socket_readable(sock)

    async def exchange(self, request: bytes) -> Response:
        self.writer.write(request)
        await self.writer.drain()
        response, _ = await read_response(self.reader)
        return response

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Keep-alive connections to one address, at most ``size`` in use at once.

    Lives as long as the process's transport, so a warm container reuses its connections
    (and their TLS sessions) across sends and invocations. Touched only on the loop thread.
    """

    def __init__(
        self, address: Address, size: int, on_idle: Callable[[], None] | None = None
    ) -> None:
        self.address = address
        self.size = size
        # Told whenever a connection goes idle: the transport's sweep must then be due.
        self.on_idle = on_idle
        self.idle: deque[_HttpConnection] = deque()
        self.slots = asyncio.Semaphore(size)
        self.ssl = _ssl_context(address.ca_bundle) if address.scheme == "https" else None
        self.opened = 0
        self.retired = 0
        # A connection being opened ahead of the first post (``warm``), not yet claimed.
        self.warming: asyncio.Task[_HttpConnection | None] | None = None

    def _retire_expired(self, now: float) -> None:
        # Oldest on the left: the deque is used as a stack (most recently used on the right).
        while self.idle and now - self.idle[0].idle_since > MAX_IDLE_SECONDS:
            self.idle.popleft().close()
            self.retired += 1

    def sweep(self, now: float) -> float | None:
        """Close the idle connections that expired or that the server dropped; when the
        oldest one left expires (None when none is left). Run by the transport's timer, so
        a pool nobody posts to again does not keep its sockets (in CLOSE_WAIT) forever."""
        self._retire_expired(now)
        kept: deque[_HttpConnection] = deque()
        for connection in self.idle:
            if connection.is_dropped():
                connection.close()
                self.retired += 1
            else:
                kept.append(connection)
        self.idle = kept
        return self.idle[0].idle_since + MAX_IDLE_SECONDS if self.idle else None

    def _park(self, connection: _HttpConnection) -> None:
        connection.idle_since = time.monotonic()
        self.idle.append(connection)
        if self.on_idle is not None:
            self.on_idle()

    def _take_idle(self) -> _HttpConnection | None:
        self._retire_expired(time.monotonic())
        while self.idle:
            connection = self.idle.pop()
            if not connection.is_dropped():
                return connection
            connection.close()
            self.retired += 1
        return None

    async def _open(self) -> _HttpConnection:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_connection(
                    self.address.host, self.address.port, ssl=self.ssl, limit=MAX_BODY_BYTES
                )
        except (TimeoutError, OSError, ssl.SSLError) as error:
            raise NotSent(_describe(error) or "connect timed out") from error
        self.opened += 1
        return _HttpConnection(reader, writer)

    def warm(self) -> None:
        """Start opening one connection now, so its handshake overlaps what the caller does
        before its first post (building a botocore client: ~45 ms in a fresh process).

        Does nothing while a connection is idle or already being opened. The first post that
        finds no idle connection takes this one; if none does, it becomes idle like any other.
        """
        if self.idle or self.warming is not None:
            return
        task = asyncio.get_running_loop().create_task(self._open_spare())
        self.warming = task
        task.add_done_callback(self._warmed)

    async def _open_spare(self) -> _HttpConnection | None:
        try:
            return await self._open()
        except NotSent as error:
            # Nothing was written: the post that needed it opens its own and reports that.
            logger.debug("Opening a connection ahead of time failed: %s", error)
            return None

    def _warmed(self, task: asyncio.Task[_HttpConnection | None]) -> None:
        if self.warming is not task:
            return  # claimed by a post, which received the connection itself
        self.warming = None
        connection = None if task.cancelled() else task.result()
        if connection is not None:
            self._park(connection)

    async def _claim_warming(self) -> _HttpConnection | None:
        task, self.warming = self.warming, None
        if task is None:
            return None
        try:
            return await task
        except asyncio.CancelledError:
            # The post was cancelled (the transport closing): an open that finished
            # meanwhile carried nothing, so it is idle like any other, not lost.
            connection = _finished_connection(task)
            if connection is not None:
                self._park(connection)
            raise

    async def post(self, request: bytes) -> Response:
        """The response to ``request``; ``NotSent`` or ``SendFailed`` (never resent here)."""
        async with self.slots:
            connection = self._take_idle() or await self._claim_warming() or await self._open()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    response = await connection.exchange(request)
            except TimeoutError as error:
                connection.close()
                raise SendFailed(f"no response within {REQUEST_TIMEOUT:g} s") from error
            except (OSError, asyncio.IncompleteReadError) as error:
                connection.close()
                raise SendFailed(
                    f"connection lost after the request was written ({_describe(error)})"
                ) from error
            except (ValueError, asyncio.LimitOverrunError) as error:
                connection.close()
                raise SendFailed(f"malformed response ({error})") from error
            except BaseException:
                connection.close()
                raise
            if response.keep_alive:
                self._park(connection)
            else:
                connection.close()
            return response

    def close(self) -> None:
        if self.warming is not None:
            # An early open that finished but whose result ``_warmed`` has not taken yet
            # (it will see the pool forgot it and return) is closed here, not leaked.
            connection = _finished_connection(self.warming)
            if connection is not None:
                connection.close()
            self.warming.cancel()
            self.warming = None
        while self.idle:
            self.idle.pop().close()


def _finished_connection(task: asyncio.Task[_HttpConnection | None]) -> _HttpConnection | None:
    """The connection an early open produced, if it finished with one."""
    if not task.done() or task.cancelled() or task.exception() is not None:
        return None
    return task.result()


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.IncompleteReadError):
        return "closed without a response" if not error.partial else "closed mid-response"
    return str(error) or type(error).__name__


class Transport:
    """The process's event loop (one daemon thread) and its keep-alive pools.

    Built on first use and kept until the process ends, so nothing of the machinery is paid
    per send. Thread-safe: callers only hand it coroutines; pools are used on its thread.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.pools: dict[tuple[Address, int], _Pool] = {}
        # Set by ``close`` (from any thread): posts handed over from now on are not started.
        self.closing = False
        # Due while any pool holds an idle connection (on the loop thread only).
        self._sweep: asyncio.TimerHandle | None = None
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="ws-connections", daemon=True
        )
        self.thread.start()

    def is_alive(self) -> bool:
        """Whether the loop still runs posts handed to it (false once closed or crashed)."""
        return self.thread.is_alive() and not self.loop.is_closed()

    def pool(self, address: Address, size: int) -> _Pool:
        """The pool of ``address`` (call on the loop thread)."""
        pool = self.pools.get((address, size))
        if pool is None:
            pool = self.pools[(address, size)] = _Pool(address, size, self._sweep_due)
        return pool

    def _sweep_due(self) -> None:
        """A connection just went idle: make sure a sweep will retire it when it expires
        (one timer for all pools; a sweep already due is earlier or as early)."""
        if self._sweep is None:
            self._sweep = self.loop.call_later(MAX_IDLE_SECONDS + SWEEP_SLACK, self._sweep_pools)

    def _sweep_pools(self) -> None:
        self._sweep = None
        now = time.monotonic()
        due = [when for pool in self.pools.values() if (when := pool.sweep(now)) is not None]
        if due:
            delay = max(min(due) - time.monotonic(), 0.0) + SWEEP_SLACK
            self._sweep = self.loop.call_later(delay, self._sweep_pools)

    def preconnect(self, address: Address, size: int) -> None:
        """Have the pool of ``address`` open a connection now (``_Pool.warm``), from any
        thread, without waiting for it."""
        pool = self.pools.get((address, size))
        # Read from another thread: a stale answer costs one wake-up or one missed warm-up.
        if pool is not None and (pool.idle or pool.warming is not None):
            return
        self.loop.call_soon_threadsafe(lambda: self.pool(address, size).warm())

    def connection_counts(self) -> dict[str, int]:
        """Connections opened, retired (dropped or idle too long) and idle now, all pools."""

        async def count() -> dict[str, int]:
            pools = list(self.pools.values())
            return {
                "opened": sum(pool.opened for pool in pools),
                "retired": sum(pool.retired for pool in pools),
                "idle": sum(len(pool.idle) for pool in pools),
            }

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result()

    def close(self) -> None:
        """Stop the loop and close every socket. Posts still in flight are cancelled, so
        each fan-out counts them failed (they may have been written) instead of waiting."""
        self.closing = True

        async def shut_down() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=CLOSE_GRACE_SECONDS)
            if self._sweep is not None:
                self._sweep.cancel()
                self._sweep = None
            for pool in self.pools.values():
                pool.close()
            self.pools.clear()
            await asyncio.sleep(0)  # let the transports finish closing

        if self.is_alive():
            asyncio.run_coroutine_threadsafe(shut_down(), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
        elif not self.loop.is_closed() and not self.loop.is_running():
            # Its thread ended with posts pending (the loop was stopped under them): finish
            # them here, as asyncio.run does, so their sockets close now, not when collected.
            self.loop.run_until_complete(shut_down())
        if not self.loop.is_closed():
            self.loop.close()


_TRANSPORT: Transport | None = None
_TRANSPORT_LOCK = threading.Lock()
# Transports inherited through fork: never closed in the child (their sockets and selector
# belong to the parent's loop; closing them here would unregister the parent's descriptors).
_INHERITED: list[Transport] = []


def shared_transport() -> Transport:
    """This process's transport, started on first use (again in a forked child)."""
    global _TRANSPORT
    transport = _TRANSPORT
    if transport is not None and transport.pid == os.getpid() and transport.thread.is_alive():
        return transport
    with _TRANSPORT_LOCK:
        transport = _TRANSPORT
        if transport is None or transport.pid != os.getpid() or not transport.thread.is_alive():
            if transport is not None and transport.pid != os.getpid():
                _INHERITED.append(transport)
            elif transport is not None:
                transport.close()  # its loop thread died: release what it left open
            transport = _TRANSPORT = Transport()
        return transport


def close_shared_transport() -> None:
    """Close this process's pools, stop its loop and forget the signing keys derived from
    credentials (a SnapStart snapshot; tests; a process that stops sending)."""
    global _TRANSPORT
    with _TRANSPORT_LOCK:
        transport, _TRANSPORT = _TRANSPORT, None
        _SIGNING_KEYS.clear()
    if transport is not None and transport.pid == os.getpid():
        transport.close()


def _forget_transport_after_fork() -> None:
    global _TRANSPORT, _TRANSPORT_LOCK
    if _TRANSPORT is not None:
        _INHERITED.append(_TRANSPORT)
    _TRANSPORT = None
    _TRANSPORT_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_transport_after_fork)


# The posts for one connection, each with the signer of its payload, sent in this order.
Posts = Sequence[tuple[Signer, bytes]]

# Why a post the loop will never finish is failed: the transport closed (or its thread died)
# under it. It may have been written, so it is failed, not resent; one reason, one log line.
TRANSPORT_GONE = "the connection loop stopped before the post finished"


@dataclass
class FanOut:
    """One broadcast: posts submitted from a synchronous caller, sent on the shared loop.

    ``submit`` blocks while ``max_in_flight`` posts are pending, so memory stays flat however
    many connections the caller streams in. ``submit_posts`` hands over several posts for
    one connection (a message's parts): they are sent one after another, in order, and give
    one outcome (delivered once all are; the first other outcome stops the rest). ``close``
    waits for this broadcast's posts only (the pools stay open for the next one) and logs one
    line per kind of failure. It never waits for a loop that stopped: what the loop did not
    report is counted failed.
    """

    concurrency: int
    max_retries: int
    base_delay: float
    on_result: Callable[[str, str], None]
    max_in_flight: int = 0
    # The process's ``send_rate`` bucket: every try takes a token (awaiting it, never blocking
    # the loop) and throttled posts are retried until ``deadline`` (the bucket's clock; default
    # send_throttle_deadline_seconds from now) instead of ``max_retries`` times.
    limiter: SendRate | None = None
    deadline: float | None = None
    _transport: Transport = field(init=False)
    _room: threading.Semaphore = field(init=False)
    # Submitted, not yet started: handed to the loop in batches (one wake-up, not one each).
    _queue: deque[tuple[int, Target, Posts, str]] = field(init=False, default_factory=deque)
    _scheduled: bool = field(init=False, default=False)
    _tasks: set[asyncio.Task[None]] = field(init=False, default_factory=set)
    # Posts submitted and not yet reported, by number: each is settled exactly once, by its
    # task or, when the loop stopped, by the submitting thread. close() waits for none left.
    _pending: dict[int, str] = field(init=False, default_factory=dict)
    _submitted: int = field(init=False, default=0)
    _closing: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)
    _all_done: threading.Event = field(init=False, default_factory=threading.Event)
    # Why posts failed (without the connection id) -> how many, and one example id.
    _failures: Counter[str] = field(init=False, default_factory=Counter)
    _examples: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.max_in_flight = self.max_in_flight or self.concurrency * 4
        self._room = threading.Semaphore(self.max_in_flight)
        self._transport = shared_transport()
        if self.limiter is not None and self.deadline is None:
            self.deadline = self.limiter.clock() + throttle_deadline_seconds()

    def submit(self, target: Target, signer: Signer, payload: bytes, connection_id: str) -> None:
        self.submit_posts(target, ((signer, payload),), connection_id)

    def submit_posts(self, target: Target, posts: Posts, connection_id: str) -> None:
        if not self._room.acquire(blocking=False):
            self._flush()  # the loop must free places: give it what is queued first
            while not self._room.acquire(timeout=LIVENESS_POLL_SECONDS):
                if not self._transport.is_alive():
                    self._abandon()  # frees every place
        with self._lock:
            self._submitted += 1
            number = self._submitted
            self._pending[number] = connection_id
        self._queue.append((number, target, posts, connection_id))
        if len(self._queue) >= SUBMIT_BATCH:
            self._flush()

    def _flush(self) -> None:
        """Have the loop start what is queued (one cross-thread wake-up for the batch).

        Waking it per post would make the loop thread fight the submitting thread for the
        GIL while rows are still being read; a small room is sent as one batch."""
        if self._queue and not self._scheduled:
            self._scheduled = True
            try:
                self._transport.loop.call_soon_threadsafe(self._start_queued)
            except RuntimeError:  # the loop is closed: nothing will ever start these
                self._scheduled = False
                self._fail_queued()

    def _start_queued(self) -> None:
        # Cleared before draining: a submit that sees it set is drained by this very call.
        self._scheduled = False
        if self._transport.closing:
            self._fail_queued()
            return
        loop = self._transport.loop
        while self._queue:
            # The loop keeps only weak references to tasks: hold them until done.
            task = loop.create_task(self._send(*self._queue.popleft()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Wait for every submitted post, then log the failures (one line per reason)."""
        self._flush()
        with self._lock:
            self._closing = True
            done = not self._pending
        while not done:
            done = self._all_done.wait(LIVENESS_POLL_SECONDS)
            if not done and not self._transport.is_alive():
                self._abandon()
                done = True
        for reason, count in self._failures.items():
            logger.error(
                "%d post(s) to @connections failed, not resent: %s (e.g. connection %s)",
                count,
                reason,
                self._examples[reason],
            )

    def _settle(self, number: int, outcome: str, reason: str = "") -> None:
        """Report post ``number``'s outcome (and why it failed) and free its place, unless
        it was already reported."""
        with self._lock:
            connection_id = self._pending.pop(number, None)
            if connection_id is None:
                return
            if reason:
                self._failed(connection_id, reason)
            try:
                self.on_result(connection_id, outcome)
            finally:
                self._room.release()
                if self._closing and not self._pending:
                    self._all_done.set()

    def _fail_queued(self) -> None:
        """Fail the posts handed over but never started (the loop is closed or closing)."""
        while self._queue:
            self._settle(self._queue.popleft()[0], Outcome.FAILED, TRANSPORT_GONE)

    def _abandon(self) -> None:
        """The loop stopped: none of the pending posts will finish. Fail each, once."""
        self._queue.clear()
        with self._lock:
            pending = list(self._pending)
        for number in pending:
            self._settle(number, Outcome.FAILED, TRANSPORT_GONE)

    def _failed(
        self, connection_id: str, reason: str, outcome: Outcome = Outcome.FAILED
    ) -> Outcome:
        # On the loop thread, or under the lock once the loop stopped: never both at once.
        self._failures[reason] += 1
        self._examples.setdefault(reason, connection_id)
        logger.debug("Sending to connection %s failed: %s", connection_id, reason)
        return outcome

    async def _send(self, number: int, target: Target, posts: Posts, connection_id: str) -> None:
        outcome: str = Outcome.FAILED
        reason = ""
        try:
            for signer, payload in posts:
                # Failed until this post is answered (a cancel mid-way is not a delivery).
                outcome = Outcome.FAILED
                outcome = await self._post_with_retries(target, signer, payload, connection_id)
                if outcome is not Outcome.DELIVERED:
                    break
        except (NotSent, SendFailed) as error:
            outcome = self._failed(connection_id, f"{target.host_header}: {error}")
        except asyncio.CancelledError:
            # Only closing the transport cancels posts; this one may have been written.
            reason = TRANSPORT_GONE
            raise
        except Exception as error:
            logger.exception("Sending to connection %s failed", connection_id)
            outcome = self._failed(connection_id, f"{target.host_header}: {error!r}")
        finally:
            # Also on cancellation: the place in the room and the count are always given back.
            self._settle(number, outcome, reason)

    async def _post_with_retries(
        self, target: Target, signer: Signer, payload: bytes, connection_id: str
    ) -> Outcome:
        path = connection_path(target, connection_id)
        pool = self._transport.pool(target.address, self.concurrency)
        if self.limiter is not None:
            return await self._post_paced(
                self.limiter, pool, path, target, signer, payload, connection_id
            )
        for attempt in range(self.max_retries + 1):
            response = await pool.post(_request(path, target, signer, payload))
            status, error_type = response.status, response.error_type
            outcome = classify(status, error_type)
            if outcome is Outcome.FAILED:
                return self._failed(connection_id, f"HTTP {status} {error_type}".rstrip())
            if outcome is not Outcome.THROTTLED:
                return outcome
            # Throttled: the server refused this message, so sending it again is safe.
            if attempt < self.max_retries:
                await asyncio.sleep(backoff_delay(attempt, self.base_delay))
        return self._failed(
            connection_id,
            f"still throttled after {self.max_retries} retries",
            Outcome.THROTTLED,
        )

    async def _post_paced(
        self,
        bucket: SendRate,
        pool: _Pool,
        path: str,
        target: Target,
        signer: Signer,
        payload: bytes,
        connection_id: str,
    ) -> Outcome:
        """Each try after a token of ``bucket``; throttled posts again until the deadline."""
        throttled = False
        while True:
            # Only a retry has a deadline: the first try is always made.
            grant = bucket.reserve(self.deadline if throttled else None)
            while grant is not None and grant.delay:
                await asyncio.sleep(grant.delay)
                if not bucket.stale(grant):
                    break
                grant = bucket.reserve(self.deadline if throttled else None)
            if grant is None:
                return self._failed(connection_id, THROTTLE_DEADLINE, Outcome.THROTTLED)
            # Signed after the wait: the signature's date is the request's.
            response = await pool.post(_request(path, target, signer, payload))
            outcome = classify(response.status, response.error_type)
            if outcome is Outcome.FAILED:
                return self._failed(
                    connection_id, f"HTTP {response.status} {response.error_type}".rstrip()
                )
            if outcome is not Outcome.THROTTLED:
                return outcome
            # Throttled: the server refused this message, so sending it again is safe.
            bucket.throttled(grant)
            throttled = True


def _request(path: str, target: Target, signer: Signer, payload: bytes) -> bytes:
    """The signed ``POST`` of ``payload`` to ``path`` at ``target``, head and body."""
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {target.host_header}",
        *(f"{name}: {value}" for name, value in signer.headers(path)),
        f"Content-Length: {len(payload)}",
        "",
        "",
    ]
    return "\r\n".join(head).encode("latin-1") + payload
