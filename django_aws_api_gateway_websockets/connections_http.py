"""Posting one payload to many connections quickly: SigV4-signed HTTP/1.1 requests over a pool
of keep-alive connections, driven by asyncio.

boto3 spends ~1.4 ms of CPU per ``post_to_connection`` (validation, serialisation, hooks,
parsing); under the GIL that caps a threaded fan-out near 500 messages/s. Here a fan-out
hashes its payload once, derives the signing key once per day, and each message costs one
HMAC and a few small writes, so throughput is bound by the network, not the interpreter.
Used by ``sending`` for real botocore clients only; anything else keeps boto3's own path.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from .send_policy import Outcome, backoff_delay, classify

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = 10.0


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
        default = 443 if self.scheme == "https" else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


def moto_is_mocking() -> bool:
    """True while moto's ``mock_aws`` intercepts botocore: then requests must go through it."""
    models = sys.modules.get("moto.core.models")
    stubber = getattr(models, "botocore_stubber", None)
    return bool(getattr(stubber, "enabled", False))


def target_for(client: Any) -> Target | None:
    """The endpoint, region and credentials of a real botocore client, or None (mocks, stubs)."""
    from botocore.client import BaseClient

    if not isinstance(client, BaseClient) or moto_is_mocking():
        return None
    http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    verify = getattr(http_session, "_verify", True)
    if client.meta.config.proxies or _proxy_from_environment() or verify is False:
        # Proxies and disabled verification stay boto3's business.
        return None
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is None:
        return None
    frozen = credentials.get_frozen_credentials()
    parts = urlsplit(client.meta.endpoint_url)
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


def _proxy_from_environment() -> bool:
    return any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY"))


def _ssl_context(ca_bundle: str) -> ssl.SSLContext:
    """Verify like botocore: the configured bundle, else certifi's, else the system's."""
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class Signer:
    """AWS Signature Version 4 for ``POST <base>/@connections/<id>`` with a fixed payload."""

    def __init__(self, target: Target, payload: bytes) -> None:
        self.target = target
        self.payload_hash = hashlib.sha256(payload).hexdigest()
        self._day = ""
        self._key = b""

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = f"AWS4{self.target.secret_key}".encode()
            for part in (day, self.target.region, "execute-api", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

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


class _HttpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reused = False

    async def post(self, request: bytes) -> tuple[int, str]:
        """Status code and ``x-amzn-ErrorType`` of one request."""
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        self.reused = True
        return status, headers.get("x-amzn-errortype", "").split(":")[0]

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """Keep-alive connections to one endpoint, at most ``size`` open at once."""

    def __init__(self, target: Target, size: int) -> None:
        self.target = target
        self.idle: list[_HttpConnection] = []
        self.slots = asyncio.Semaphore(size)
        self.ssl = _ssl_context(target.ca_bundle) if target.scheme == "https" else None

    async def _open(self) -> _HttpConnection:
        reader, writer = await asyncio.open_connection(
            self.target.host, self.target.port, ssl=self.ssl
        )
        return _HttpConnection(reader, writer)

    async def post(self, request: bytes) -> tuple[int, str]:
        async with self.slots:
            connection = self.idle.pop() if self.idle else await self._open()
            try:
                result = await asyncio.wait_for(connection.post(request), REQUEST_TIMEOUT)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                connection.close()
                if not connection.reused:
                    raise
                # The server dropped an idle keep-alive connection before reading: not sent.
                logger.debug("Stale keep-alive connection (%s); retrying once", error)
                connection = await self._open()
                result = await asyncio.wait_for(connection.post(request), REQUEST_TIMEOUT)
            except BaseException:
                connection.close()
                raise
            if not connection.closed:
                self.idle.append(connection)
            return result

    def close(self) -> None:
        for connection in self.idle:
            connection.close()


@dataclass
class FanOut:
    """Posts submitted from a synchronous caller, sent from an event loop in its own thread.

    ``submit`` blocks while ``max_in_flight`` posts are pending, so memory stays flat however
    many connections the caller streams in.
    """

    concurrency: int
    max_retries: int
    base_delay: float
    on_result: Callable[[str, str], None]
    max_in_flight: int = 0
    _loop: asyncio.AbstractEventLoop = field(init=False)
    _thread: threading.Thread = field(init=False)
    _room: threading.Semaphore = field(init=False)
    _pools: dict[Target, _Pool] = field(init=False, default_factory=dict)
    _pending: set[Any] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.max_in_flight = self.max_in_flight or self.concurrency * 4
        self._room = threading.Semaphore(self.max_in_flight)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, target: Target, signer: Signer, payload: bytes, connection_id: str) -> None:
        self._room.acquire()
        future = asyncio.run_coroutine_threadsafe(
            self._send(target, signer, payload, connection_id), self._loop
        )
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    def close(self) -> None:
        """Wait for every submitted post, then stop the loop."""
        for future in list(self._pending):
            future.result()
        asyncio.run_coroutine_threadsafe(self._close_pools(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _close_pools(self) -> None:
        for pool in self._pools.values():
            pool.close()

    def _pool(self, target: Target) -> _Pool:
        pool = self._pools.get(target)
        if pool is None:
            pool = self._pools[target] = _Pool(target, self.concurrency)
        return pool

    async def _send(self, target: Target, signer: Signer, payload: bytes, connection_id: str):
        try:
            outcome = await self._post_with_retries(target, signer, payload, connection_id)
        except Exception:
            logger.exception("Sending to connection %s failed", connection_id)
            outcome = Outcome.FAILED
        finally:
            self._room.release()
        self.on_result(connection_id, outcome)

    async def _post_with_retries(
        self, target: Target, signer: Signer, payload: bytes, connection_id: str
    ) -> Outcome:
        path = connection_path(target, connection_id)
        for attempt in range(self.max_retries + 1):
            head = [
                f"POST {path} HTTP/1.1",
                f"Host: {target.host_header}",
                *(f"{name}: {value}" for name, value in signer.headers(path)),
                f"Content-Length: {len(payload)}",
                "",
                "",
            ]
            status, error_type = await self._pool(target).post(
                "\r\n".join(head).encode("latin-1") + payload
            )
            outcome = classify(status, error_type)
            if outcome is Outcome.FAILED:
                logger.error(
                    "Sending to connection %s failed: HTTP %s %s", connection_id, status, error_type
                )
            if outcome is not Outcome.THROTTLED:
                return outcome
            if attempt < self.max_retries:
                await asyncio.sleep(backoff_delay(attempt, self.base_delay))
        logger.error("Sending to connection %s still throttled; giving up", connection_id)
        return Outcome.THROTTLED
