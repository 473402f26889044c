"""Just enough HTTP/1.1 for a local gateway: read one request, write one response."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

MAX_BODY_BYTES = 10 * 1024 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def header(self, name: str, default: str = "") -> str:
        lowered = name.lower()
        for header_name, value in self.headers:
            if header_name.lower() == lowered:
                return value
        return default

    @property
    def wants_websocket(self) -> bool:
        return self.header("Upgrade").lower() == "websocket"

    @property
    def keep_alive(self) -> bool:
        connection = self.header("Connection").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on the connection, or None when the client has gone."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest(431, "Request header fields too large") from None
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise BadRequest(400, "Malformed request line") from None
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, separator, value = line.partition(":")
        if not separator:
            raise BadRequest(400, "Malformed header")
        headers.append((name.strip(), value.strip()))
    request = Request(method, target, version, headers, b"", head)
    if request.header("Transfer-Encoding"):
        raise BadRequest(501, "Chunked request bodies are not supported")
    length_text = request.header("Content-Length", "0") or "0"
    if not length_text.isdigit():
        raise BadRequest(400, "Invalid Content-Length")
    length = int(length_text)
    if length > MAX_BODY_BYTES:
        raise BadRequest(413, "Request body too large")
    if length:
        try:
            request.body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            return None
    return request


def response_bytes(
    status: int, headers: list[tuple[str, str]], body: bytes, keep_alive: bool
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    skip = {"content-length", "connection", "transfer-encoding"}
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in skip]
    lines.append(f"Content-Length: {len(body)}")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
