"""An outbox of what the library sends to connections, as ``mail.outbox`` is for e-mail.

While ``capture_sends()`` is active, every @connections client the library asks for is a
local stand-in for API Gateway's Management API: nothing leaves the process, and each post is
recorded, decoded, in the ``Outbox``. It takes the place of what
``models.get_boto3_client`` returns for ``apigatewaymanagementapi`` only, so single sends and
fan-outs are both seen where they leave the library (whatever ``send_message`` returns), and a
test that patches ``get_boto3_client`` itself still gets its own mock.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MANAGEMENT_SERVICE = "apigatewaymanagementapi"


@dataclass(frozen=True)
class SentMessage:
    """One post to one connection."""

    connection_id: str
    # The JSON the library sent, decoded; the text itself when it is not JSON.
    data: Any
    text: str
    endpoint_url: str
    # False: API Gateway answered 410 (the connection was gone), so no one received it.
    delivered: bool


class Outbox(list[SentMessage]):
    """Every post, in the order made; gone connections' posts are kept with ``delivered``
    False, so a test sees both what arrived and what was sent into the void."""

    def __init__(self) -> None:
        super().__init__()
        self.gone_connections: set[str] = set()
        self._lock = threading.Lock()

    def to(self, connection_id: str) -> list[Any]:
        """The decoded messages delivered to ``connection_id``, oldest first, as the browser
        client's handlers see them: a message sent in parts (over 128 KiB) is one message,
        whole, where its last part arrived; a part set never completed is left out, as the
        client drops it. The outbox itself keeps every post, parts included."""
        posts = [m.data for m in self.delivered if m.connection_id == connection_id]
        return _reassembled(posts)

    @property
    def delivered(self) -> list[SentMessage]:
        return [message for message in self if message.delivered]

    @property
    def gone(self) -> list[SentMessage]:
        """Posts API Gateway answered with ``GoneException``."""
        return [message for message in self if not message.delivered]

    def mark_gone(self, connection_id: str) -> None:
        """From now on, posts to ``connection_id`` get 410, as after its socket closed."""
        with self._lock:
            self.gone_connections.add(connection_id)

    def is_gone(self, connection_id: str) -> bool:
        with self._lock:
            return connection_id in self.gone_connections

    def record(self, message: SentMessage) -> None:
        # Fan-out posts arrive from worker threads.
        with self._lock:
            self.append(message)


def _is_part(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("type") == "part"
        and isinstance(data.get("id"), str)
        and isinstance(data.get("index"), int)
        and isinstance(data.get("count"), int)
        and isinstance(data.get("data"), str)
    )


def _reassembled(posts: list[Any]) -> list[Any]:
    """``posts`` with each complete set of parts joined into the message it carries."""
    messages: list[Any] = []
    sets: dict[str, dict[int, str]] = {}
    for data in posts:
        if not _is_part(data):
            messages.append(data)
            continue
        slices = sets.setdefault(data["id"], {})
        slices[data["index"]] = data["data"]
        if slices.keys() == set(range(data["count"])):
            del sets[data["id"]]
            messages.append(_decode("".join(slices[i] for i in range(data["count"])))[0])
    return messages


def _decode(data: Any) -> tuple[Any, str]:
    if hasattr(data, "read"):
        data = data.read()
    text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else str(data)
    try:
        return json.loads(text), text
    except ValueError:
        return text, text


def _metadata(status: int) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "RequestId": request_id,
        "HTTPStatusCode": status,
        "HTTPHeaders": {"x-amzn-requestid": request_id, "content-length": "0"},
        "RetryAttempts": 0,
    }


def _gone_error(operation: str, connection_id: str) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": "GoneException", "Message": f"Connection {connection_id} is gone"},
            "ResponseMetadata": _metadata(410),
        },
        operation,
    )


class LocalConnectionsClient:
    """The three calls of the Management API, answered as API Gateway answers them."""

    def __init__(self, outbox: Outbox, endpoint_url: str) -> None:
        self.outbox = outbox
        self.endpoint_url = endpoint_url

    def post_to_connection(self, *, ConnectionId: str, Data: Any) -> dict[str, Any]:  # noqa: N803
        data, text = _decode(Data)
        gone = self.outbox.is_gone(ConnectionId)
        self.outbox.record(SentMessage(ConnectionId, data, text, self.endpoint_url, not gone))
        if gone:
            raise _gone_error("PostToConnection", ConnectionId)
        return {"ResponseMetadata": _metadata(200)}

    def get_connection(self, *, ConnectionId: str) -> dict[str, Any]:  # noqa: N803
        if self.outbox.is_gone(ConnectionId):
            raise _gone_error("GetConnection", ConnectionId)
        now = datetime.now(UTC)
        return {
            "ConnectedAt": now,
            "Identity": {"SourceIp": "127.0.0.1", "UserAgent": "websocket-test-client"},
            "LastActiveAt": now,
            "ResponseMetadata": _metadata(200),
        }

    def delete_connection(self, *, ConnectionId: str) -> dict[str, Any]:  # noqa: N803
        if self.outbox.is_gone(ConnectionId):
            raise _gone_error("DeleteConnection", ConnectionId)
        self.outbox.mark_gone(ConnectionId)
        return {"ResponseMetadata": _metadata(204)}


_active: list[Outbox] = []


def current_outbox() -> Outbox | None:
    """The outbox of the innermost ``capture_sends()``, if one is active."""
    return _active[-1] if _active else None


@contextmanager
def capture_sends() -> Iterator[Outbox]:
    """Record, instead of sending, every post the library makes to a connection."""
    from .. import models

    outbox = Outbox()
    previous = models.get_boto3_client

    def get_boto3_client(service: str = "apigatewayv2", **kwargs: Any) -> Any:
        if service == MANAGEMENT_SERVICE:
            return LocalConnectionsClient(outbox, str(kwargs.get("endpoint_url", "")))
        return previous(service, **kwargs)

    models.get_boto3_client = get_boto3_client
    _active.append(outbox)
    try:
        yield outbox
    finally:
        _active.remove(outbox)
        models.get_boto3_client = previous
