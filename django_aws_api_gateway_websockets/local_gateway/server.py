"""The local API Gateway: one asyncio server on one port.

- ``ws://HOST:PORT/STAGE``: WebSocket connections, each event sent to the Lambda handler in
  the exact AWS shape, with AWS's limits and timeouts;
- ``/STAGE/@connections/{id}``: the management API (POST, GET, DELETE) that boto3 calls;
- anything else: the Django site, as REST proxy events through the same handler.

As on AWS, the site and the socket may have two host names (``socket_host``: pages are told
``ws://SOCKET_HOST:PORT/STAGE``, and the site is not served on that name, so the site's
cookies never reach the socket), and the site may live under a stage prefix
(``site_stage``: ``http://HOST:PORT/SITE_STAGE/``, as zappa's REST API URL).

The handler runs in worker threads (it is synchronous Django); the loop stays free to serve
@connections calls the handler makes while it runs.
"""

from __future__ import annotations

import asyncio
import base64
import errno
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from websockets.frames import CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.server import ServerProtocol

from . import events
from .http import BadRequest, Request, read_request, response_bytes
from .sigv4 import SignatureCheck

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], Any]
RouteConfig = Callable[[], tuple[str, set[str]]]
CONTEXT_FACTORY_DEFAULT: Callable[[], Any] = lambda: None  # noqa: E731
READ_CHUNK = 65536
# Pending TCP connections the kernel queues before accept() (capped by net.core.somaxconn).
# asyncio's default of 100 overflows when fan-outs open hundreds of @connections requests at
# once: the kernel then drops SYNs and each dropped client waits 1 s, 3 s... to retry.
LISTEN_BACKLOG = 4096
# What an @connections POST may leave queued for a client that is not reading before the
# client is dropped: the POST answers at once, as API Gateway's does, so one stuck browser
# never holds up the handler (and with it every other socket) that is sending to it.
MAX_UNSENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class GatewayLimits:
    """API Gateway's quotas; the timeouts are configurable so tests need not wait 10 minutes."""

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    idle_timeout: float = 10 * 60
    max_connection_duration: float = 2 * 60 * 60


def client_went_away(error: BaseException) -> bool:
    """Whether ``error`` says the peer is gone (reset, broken pipe, or a socket the kernel
    already tore down: ``ENOTCONN`` when a browser that navigated away answers our close
    frame with a reset), not that the gateway is broken."""
    return isinstance(error, ConnectionError) or (
        isinstance(error, OSError) and error.errno == errno.ENOTCONN
    )


def log_client_gone(who: str, error: OSError) -> None:
    """The one line a vanished client is worth: routine for browsers, so INFO, no traceback."""
    logger.info("Client went away: %s (%s)", who, error.strerror or error)


class LocalConnection:
    """One accepted WebSocket: its protocol state, socket and AWS-visible details."""

    def __init__(
        self,
        info: events.ConnectionInfo,
        protocol: ServerProtocol,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.info = info
        self.protocol = protocol
        self.writer = writer
        self.open = True
        # Until a close frame is seen either way, a vanished client is an abnormal closure.
        self.close_code = int(CloseCode.ABNORMAL_CLOSURE)
        self.close_reason = ""
        # Why the client's socket failed under us, if it did (logged once, at the end).
        self.lost: OSError | None = None

    def went_away(self, error: OSError) -> None:
        self.open = False
        if self.lost is None:
            self.lost = error

    async def flush(self) -> None:
        try:
            for chunk in self.protocol.data_to_send():
                if chunk:
                    self.writer.write(chunk)
                elif self.writer.can_write_eof():
                    self.writer.write_eof()
            await self.writer.drain()
        except OSError as error:
            if not client_went_away(error):
                raise
            self.went_away(error)

    async def send_text(self, text: str) -> None:
        if self.open and self.protocol.state is State.OPEN:
            self.protocol.send_text(text.encode("utf-8"))
            await self.flush()

    def post_text(self, text: str) -> bool:
        """Queue ``text`` without waiting for the client to read it (an @connections POST);
        False when the client has fallen more than ``MAX_UNSENT_BYTES`` behind and was
        dropped for it."""
        if not self.open or self.protocol.state is not State.OPEN:
            return False
        self.protocol.send_text(text.encode("utf-8"))
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.writer.write(chunk)
        unsent = self.writer.transport.get_write_buffer_size()
        if unsent <= MAX_UNSENT_BYTES:
            return True
        logger.warning(
            "Connection %s is not reading (%d bytes unsent): dropped",
            self.info.connection_id,
            unsent,
        )
        self.open = False
        self.writer.transport.abort()
        return False

    async def close(self, code: int, reason: str) -> None:
        if self.protocol.state is State.OPEN:
            self.close_code, self.close_reason = code, reason
            self.protocol.send_close(code, reason)
            await self.flush()
        self.open = False


class LocalApiGateway:
    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        port: int = 8001,
        stage: str = "local",
        api_id: str = "local",
        route_config: RouteConfig | None = None,
        limits: GatewayLimits | None = None,
        workers: int = 8,
        context_factory: Callable[[], Any] = CONTEXT_FACTORY_DEFAULT,
        socket_host: str | None = None,
        site_stage: str = "",
        signature_check: SignatureCheck | None = None,
    ) -> None:
        self.handler = handler
        # None: @connections answers any request (the class on its own, in tests); the
        # runapigateway command passes one, so requests are verified as AWS verifies them.
        self.signature_check = signature_check
        self.host = host
        self.socket_host = socket_host or host
        self.site_stage = site_stage.strip("/")
        self.port = port
        self.stage = stage
        self.api_id = api_id
        self.route_config = route_config or (lambda: ("$request.body.action", {"$default"}))
        self.limits = limits or GatewayLimits()
        self.context_factory = context_factory
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lambda")
        self.connections: dict[str, LocalConnection] = {}
        self.pending: set[str] = set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.socket_tasks: set[asyncio.Task[Any]] = set()
        # How long stop() waits for the $disconnects of the sockets it closes.
        self.disconnect_grace_seconds = 10.0
        self.stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._serve_client, self.host, self.port, limit=256 * 1024, backlog=LISTEN_BACKLOG
        )
        self.port = self.server.sockets[0].getsockname()[1]

    @property
    def websocket_url(self) -> str:
        return f"ws://{self.socket_host}:{self.port}/{self.stage}"

    @property
    def site_url(self) -> str:
        prefix = f"{self.site_stage}/" if self.site_stage else ""
        return f"http://{self.host}:{self.port}/{prefix}"

    @property
    def management_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.stage}"

    @property
    def management_prefix(self) -> str:
        return f"/{self.stage}/@connections/"

    async def stop(self) -> None:
        """Close every socket as going away and let each $disconnect run (the @connections
        API keeps serving the sends they make), then stop serving."""
        self.stopping = True
        for connection in list(self.connections.values()):
            await connection.close(int(CloseCode.GOING_AWAY), "Gateway shutting down")
        if self.socket_tasks:
            await asyncio.wait(set(self.socket_tasks), timeout=self.disconnect_grace_seconds)
        # Past the grace period, queued invocations are dropped; the running ones finish while
        # this loop still answers their @connections calls (closing first refused them).
        self.executor.shutdown(wait=False, cancel_futures=True)
        await asyncio.to_thread(self.executor.shutdown, wait=True)
        if self.server is not None:
            self.server.close()
        # What is left are idle HTTP keep-alive readers: nothing to finish.
        for task in list(self.tasks):
            task.cancel()
        if self.server is not None:
            await self.server.wait_closed()

    async def invoke(self, event: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, self.handler, event, self.context_factory()
        )

    # ------------------------------------------------------------------ dispatch

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        try:
            await self._serve_requests(reader, writer)
        except asyncio.CancelledError:
            pass
        except OSError as error:
            if not client_went_away(error):
                logger.exception("Local gateway connection failed")
            else:
                log_client_gone(_peer_ip(writer), error)
        except Exception:
            logger.exception("Local gateway connection failed")
        finally:
            if task is not None:
                self.tasks.discard(task)
            writer.close()

    async def _serve_requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        while True:
            try:
                request = await read_request(reader)
            except BadRequest as error:
                writer.write(response_bytes(error.status, [], str(error).encode(), False))
                await writer.drain()
                await _linger(reader, writer)
                return
            if request is None:
                return
            if self.stopping and not request.path.startswith(self.management_prefix):
                # Only the sends of handlers still running are served while stopping.
                writer.write(response_bytes(503, [], b"Gateway shutting down", False))
                await writer.drain()
                return
            if request.wants_websocket:
                task = asyncio.current_task()
                if task is not None:
                    self.socket_tasks.add(task)
                try:
                    await self._websocket(request, reader, writer)
                finally:
                    self.socket_tasks.discard(task)
                return
            status, headers, body = await self._http(request, writer)
            keep_alive = request.keep_alive
            writer.write(response_bytes(status, headers, body, keep_alive))
            await writer.drain()
            if not keep_alive:
                return

    async def _http(
        self, request: Request, writer: asyncio.StreamWriter
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        prefix = self.management_prefix
        if request.path.startswith(prefix):
            refusal = self.signature_check and self.signature_check.refusal(request)
            if refusal:
                logger.warning(
                    "@connections %s refused (403 %s): %s",
                    request.method,
                    refusal.error_type,
                    refusal.detail,
                )
                return _aws_error(403, refusal.error_type, refusal.message)
            return await self._management(request, unquote(request.path[len(prefix) :]))
        if not self._serves_site(request):
            # API Gateway's answer for a path outside the REST API's stage, or on a WebSocket
            # API's host.
            return 403, [("Content-Type", "application/json")], b'{"message":"Forbidden"}'
        source_ip = _peer_ip(writer)
        event = events.http_event(
            request.method,
            request.target,
            request.headers,
            request.body,
            source_ip,
            self.site_stage or self.stage,
            self.api_id,
            stage_prefix=bool(self.site_stage),
        )
        response = await self.invoke(event)
        return _http_response(response)

    def _serves_site(self, request: Request) -> bool:
        if self.socket_host != self.host and _host_name(request) == self.socket_host.lower():
            return False
        if not self.site_stage:
            return True
        path = request.path
        return path == f"/{self.site_stage}" or path.startswith(f"/{self.site_stage}/")

    # ------------------------------------------------------------------ @connections

    async def _management(
        self, request: Request, connection_id: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = self.connections.get(connection_id)
        if connection is None or not connection.open:
            return _aws_error(410, "GoneException", f"{connection_id} is not connected")
        if request.method == "POST":
            if len(request.body) > self.limits.max_message_bytes:
                return _aws_error(413, "PayloadTooLargeException", "Message too long")
            text = request.body.decode("utf-8", errors="replace")
            if not connection.post_text(text):
                return _aws_error(410, "GoneException", f"{connection_id} is not connected")
            return 200, [("Content-Type", "application/json")], b""
        if request.method == "GET":
            body = json.dumps(connection.info.as_connection_info()).encode()
            return 200, [("Content-Type", "application/json")], body
        if request.method == "DELETE":
            await connection.close(int(CloseCode.NORMAL_CLOSURE), "Deleted by @connections")
            return 204, [], b""
        return _aws_error(405, "MethodNotAllowed", "Use POST, GET or DELETE")

    # ------------------------------------------------------------------ WebSocket

    async def _websocket(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        protocol = ServerProtocol(
            max_size=(self.limits.max_message_bytes, self.limits.max_frame_bytes)
        )
        protocol.receive_data(request.raw_head)
        handshake = next(iter(protocol.events_received()), None)
        info = events.ConnectionInfo(
            connection_id=events.aws_id(),
            api_id=self.api_id,
            stage=self.stage,
            domain_name=request.header("Host", f"{self.host}:{self.port}"),
            source_ip=_peer_ip(writer),
            user_agent=request.header("User-Agent"),
        )
        if request.path.rstrip("/") != f"/{self.stage}" or handshake is None:
            response = protocol.reject(404, "No WebSocket API at this path\n")
            protocol.send_response(response)
            await _send_rejection(LocalConnection(info, protocol, writer))
            return
        self.pending.add(info.connection_id)
        try:
            result = await self.invoke(events.connect_event(info, request.target, request.headers))
        except Exception:
            logger.exception("Handler failed on $connect")
            result = {"statusCode": 500}
        finally:
            self.pending.discard(info.connection_id)
        status = _status_of(result)
        if not 200 <= status < 300:
            logger.info("$connect refused with %s", status)
            protocol.send_response(protocol.reject(status, "Connection refused\n"))
            await _send_rejection(LocalConnection(info, protocol, writer))
            return
        protocol.send_response(protocol.accept(handshake))
        connection = LocalConnection(info, protocol, writer)
        await connection.flush()
        if protocol.state is not State.OPEN:
            return
        self.connections[info.connection_id] = connection
        try:
            await self._converse(connection, reader)
        finally:
            self.connections.pop(info.connection_id, None)
            connection.open = False
            if connection.lost is not None:
                log_client_gone(f"connection {info.connection_id}", connection.lost)
            await self._disconnect(connection)

    async def _close_at_max_duration(self, connection: LocalConnection) -> None:
        """API Gateway's 2-hour maximum: the same 1001 "Going away" as its idle close (a client
        cannot tell them apart by the close frame), so only the log line says which it was."""
        logger.info(
            "Connection %s reached the maximum duration of %g s: closed (1001)",
            connection.info.connection_id,
            self.limits.max_connection_duration,
        )
        await connection.close(int(CloseCode.GOING_AWAY), "Going away")

    async def _converse(self, connection: LocalConnection, reader: asyncio.StreamReader) -> None:
        """Read frames until the socket closes; each whole text message becomes an event."""
        protocol = connection.protocol
        deadline = time.monotonic() + self.limits.max_connection_duration
        fragments: list[bytes] = []
        inbox: asyncio.Queue[str | None] = asyncio.Queue()
        worker = asyncio.create_task(self._deliver_messages(connection, inbox))
        try:
            while protocol.state is not State.CLOSED and connection.open:
                timeout = min(self.limits.idle_timeout, deadline - time.monotonic())
                if timeout <= 0:
                    await self._close_at_max_duration(connection)
                    break
                try:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), timeout=timeout)
                except TimeoutError:  # an OSError too: before the clause below
                    if time.monotonic() < deadline:
                        # API Gateway's own words for its 10-minute idle close.
                        logger.info(
                            "Connection %s sent nothing for %g s: closed (1001)",
                            connection.info.connection_id,
                            self.limits.idle_timeout,
                        )
                        await connection.close(int(CloseCode.GOING_AWAY), "Going away")
                    else:
                        await self._close_at_max_duration(connection)
                    break
                except OSError as error:
                    if not client_went_away(error):
                        raise
                    connection.went_away(error)
                    break
                if data:
                    protocol.receive_data(data)
                else:
                    protocol.receive_eof()
                for frame in protocol.events_received():
                    message = self._assemble(connection, frame, fragments)
                    if message is not None:
                        connection.info.last_active_at_ms = events.now_ms()
                        inbox.put_nowait(message)
                # Before answering: a client that closed and left at once (a browser
                # navigating away) must still have its own close code in $disconnect.
                if protocol.close_rcvd is not None:
                    connection.close_code = protocol.close_rcvd.code
                    connection.close_reason = protocol.close_rcvd.reason
                elif protocol.close_sent is not None and not connection.close_reason:
                    connection.close_code = protocol.close_sent.code
                    connection.close_reason = protocol.close_sent.reason
                await connection.flush()
                if not data or connection.lost is not None:
                    break
        finally:
            inbox.put_nowait(None)
            await worker

    def _assemble(
        self, connection: LocalConnection, frame: Frame, fragments: list[bytes]
    ) -> str | None:
        if frame.opcode is Opcode.BINARY:
            # This gateway, like the library, speaks JSON text only.
            connection.protocol.fail(int(CloseCode.UNSUPPORTED_DATA), "Binary frames unsupported")
            return None
        if frame.opcode not in (Opcode.TEXT, Opcode.CONT):
            return None
        fragments.append(frame.data)
        if not frame.fin:
            return None
        data = b"".join(fragments)
        fragments.clear()
        return data.decode("utf-8", errors="replace")

    async def _deliver_messages(
        self, connection: LocalConnection, inbox: asyncio.Queue[str | None]
    ) -> None:
        """One message at a time per connection, each answered with its route response."""
        while (body := await inbox.get()) is not None:
            expression, route_keys = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.route_config
            )
            route_key = events.select_route(expression, body, route_keys | {"$default"})
            try:
                result = await self.invoke(events.message_event(connection.info, route_key, body))
            except Exception:
                logger.exception("Handler failed on a message")
                result = {
                    "statusCode": 500,
                    "body": json.dumps({"message": "Internal server error"}),
                }
            reply = _body_of(result)
            if reply:
                await connection.send_text(reply)

    async def _disconnect(self, connection: LocalConnection) -> None:
        event = events.disconnect_event(
            connection.info, connection.close_code, connection.close_reason
        )
        try:
            await self.invoke(event)
        except Exception:
            logger.exception("Handler failed on $disconnect")


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close and drain what the client is still sending, so closing with unread data
    does not reset the connection before it has read our error response."""
    if writer.can_write_eof():
        writer.write_eof()
    try:
        async with asyncio.timeout(1):
            while await reader.read(READ_CHUNK):
                pass
    except (TimeoutError, ConnectionError):
        pass


async def _send_rejection(connection: LocalConnection) -> None:
    """Answer a refused handshake; a client that has already left gets its one INFO line."""
    await connection.flush()
    if connection.lost is not None:
        log_client_gone(f"refused handshake from {connection.info.source_ip}", connection.lost)


def _host_name(request: Request) -> str:
    """The ``Host`` header without its port, in lower case (``[::1]`` keeps its brackets)."""
    host = request.header("Host").lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.split(":", 1)[0]


def _peer_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "127.0.0.1"


def _status_of(result: Any) -> int:
    status = result.get("statusCode") if isinstance(result, dict) else None
    return status if isinstance(status, int) else 502


def _body_of(result: Any) -> str:
    if not isinstance(result, dict):
        return ""
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", errors="replace")
    return body if isinstance(body, str) else ""


def _http_response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """A Lambda proxy response as status, header list and body bytes."""
    if not isinstance(result, dict):
        return 502, [("Content-Type", "text/plain")], b"Bad gateway"
    headers: list[tuple[str, str]] = []
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(name, str(value)) for value in values]
    if not headers:
        headers = [(name, str(value)) for name, value in (result.get("headers") or {}).items()]
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    else:
        payload = body.encode("utf-8") if isinstance(body, str) else b""
    return _status_of(result), headers, payload


def _aws_error(
    status: int, error_type: str, message: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)]
    return status, headers, json.dumps({"message": message}).encode()
