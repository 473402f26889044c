"""What kind of event a Lambda invocation carries, and WebSocket events as WSGI-ready events.

Pure functions over plain dicts: nothing here imports Django or boto3.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

WEBSOCKET_EVENT_TYPES = frozenset({"CONNECT", "MESSAGE", "DISCONNECT"})
KEEP_WARM_FUNCTION_SUFFIX = "keep_warm_callback"
# Headers the adapter sets from requestContext; a client's own copy is dropped, never trusted.
IDENTITY_HEADERS = frozenset(
    {
        "host",
        "connectionid",
        "user-agent",
        "x-amzn-apigateway-api-id",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
        "x-forwarded-host",
        "x-websocket-integration-secret",
        "content-length",
        "content-type",
    }
)
# What the adapter reports of the client's own handshake; a client's copy is dropped too.
CLIENT_HEADER_PREFIX = "x-websocket-client-"


class EventKind(StrEnum):
    WEBSOCKET = "websocket"
    HTTP = "http"
    SCHEDULED = "scheduled"
    MANAGE = "manage"
    COMMAND = "command"
    KEEP_WARM = "keep_warm"
    FANOUT = "fanout"
    REPLAY = "replay"
    UNKNOWN = "unknown"


class MalformedEvent(ValueError):
    """The event claims a known kind but lacks what that kind must carry."""


def scheduled_function_name(event: dict[str, Any]) -> str:
    """The dotted function a zappa schedule names: the rule name's last ``-`` segment."""
    resources = event.get("resources")
    if not isinstance(resources, list) or not resources or not isinstance(resources[0], str):
        return ""
    return resources[0].rsplit("/", 1)[-1].rsplit("-", 1)[-1]


def classify(event: Any) -> EventKind:
    """Decide once what an invocation is; the handler then takes one straight branch."""
    if not isinstance(event, dict):
        return EventKind.UNKNOWN
    context = event.get("requestContext")
    if isinstance(context, dict) and _text(context, "eventType") in WEBSOCKET_EVENT_TYPES:
        return EventKind.WEBSOCKET
    if event.get("detail-type") == "Scheduled Event":
        if scheduled_function_name(event).endswith(KEEP_WARM_FUNCTION_SUFFIX):
            return EventKind.KEEP_WARM
        return EventKind.SCHEDULED
    if event.get("source") == "serverless-plugin-warmup" or event.get("keep_warm") is True:
        return EventKind.KEEP_WARM
    if "websocket_fanout" in event:
        return EventKind.FANOUT
    if "websocket_replay" in event:
        return EventKind.REPLAY
    if "manage" in event:
        return EventKind.MANAGE
    if "command" in event:
        return EventKind.COMMAND
    if event.get("version") == "2.0" and isinstance(context, dict) and "http" in context:
        return EventKind.HTTP
    if isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str):
        return EventKind.HTTP
    return EventKind.UNKNOWN


def _text(mapping: dict[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class WebSocketEvent:
    """The parts of an API Gateway WebSocket event the adapter relies on, validated."""

    event_type: str
    route_key: str
    connection_id: str
    api_id: str
    stage: str
    domain_name: str
    request_id: str
    source_ip: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    body: str
    is_base64_encoded: bool
    raw: dict[str, Any]

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> WebSocketEvent:
        context = event.get("requestContext")
        if not isinstance(context, dict):
            raise MalformedEvent("requestContext missing")
        identity = context.get("identity") if isinstance(context.get("identity"), dict) else {}
        parsed = cls(
            event_type=_text(context, "eventType"),
            route_key=_text(context, "routeKey"),
            connection_id=_text(context, "connectionId"),
            api_id=_text(context, "apiId"),
            stage=_text(context, "stage"),
            domain_name=_text(context, "domainName"),
            request_id=_text(context, "requestId"),
            source_ip=_text(identity, "sourceIp"),
            headers=_single_value_headers(event),
            query=_query_parameters(event),
            body=event.get("body") if isinstance(event.get("body"), str) else "",
            is_base64_encoded=event.get("isBase64Encoded") is True,
            raw=event,
        )
        for field_name in ("event_type", "connection_id", "api_id", "stage", "domain_name"):
            if not getattr(parsed, field_name):
                raise MalformedEvent(f"requestContext has no {field_name}")
        if parsed.is_base64_encoded:
            try:
                base64.b64decode(parsed.body, validate=True)
            except ValueError:
                raise MalformedEvent("body is not base64") from None
        return parsed

    @property
    def route_name(self) -> str:
        """``connect``, ``disconnect``, or the route key without ``$`` (``default``, custom)."""
        if self.event_type == "CONNECT":
            return "connect"
        if self.event_type == "DISCONNECT":
            return "disconnect"
        name = self.route_key.lstrip("$")
        # A custom route may not pose as a lifecycle route in the delivery path.
        return "default" if name in ("", "connect", "disconnect") else name

    def _forwarded(self, name: str, allowed: tuple[str, ...] | None, default: str = "") -> str:
        """A proxy header API Gateway itself sets on $connect (wss: https/443); the local
        gateway sets http. Anything unexpected falls back to the AWS value."""
        value = next((v for k, v in self.headers.items() if k.lower() == name), "")
        if allowed is not None:
            return value if value in allowed else allowed[0]
        return value if value.isdigit() else default

    def as_wsgi_event(self, path: str, extra_headers: dict[str, str]) -> dict[str, Any]:
        """A REST-v1-shaped event apig-wsgi turns into a WSGI request for the WebSocket view.

        Identity headers come only from requestContext; client copies are dropped first.
        """
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in IDENTITY_HEADERS
            and not name.lower().startswith(("x-amzn-", CLIENT_HEADER_PREFIX))
        }
        # The handshake's Host and scheme: on an emulator they say where it listens (the
        # view learns its @connections endpoint from them); on AWS Host is domainName.
        for original, reported in (
            ("user-agent", "X-Websocket-Client-User-Agent"),
            ("host", "X-Websocket-Client-Host"),
            ("x-forwarded-proto", "X-Websocket-Client-Proto"),
        ):
            value = next((v for k, v in self.headers.items() if k.lower() == original), "")
            if value:
                headers[reported] = value
        headers.update(
            {
                "Host": self.domain_name,
                "Connectionid": self.connection_id,
                "User-Agent": f"AmazonAPIGateway_{self.api_id}",
                "X-Amzn-Apigateway-Api-Id": self.api_id,
                "X-Forwarded-Proto": self._forwarded("x-forwarded-proto", ("https", "http")),
                "X-Forwarded-Port": self._forwarded("x-forwarded-port", None, "443"),
                "Content-Type": "application/json",
                **extra_headers,
            }
        )
        if self.source_ip:
            headers["X-Forwarded-For"] = self.source_ip
        if self.request_id:
            headers["X-Amzn-Request-Id"] = self.request_id
        return {
            "httpMethod": "POST",
            "path": path,
            "headers": headers,
            "multiValueQueryStringParameters": self.query or None,
            "body": self.body,
            "isBase64Encoded": self.is_base64_encoded,
            "requestContext": self.raw["requestContext"],
        }


def _single_value_headers(event: dict[str, Any]) -> dict[str, str]:
    """One value per header, preferring multiValueHeaders (last value) as API Gateway does."""
    headers: dict[str, str] = {}
    single = event.get("headers")
    if isinstance(single, dict):
        headers.update({str(k): str(v) for k, v in single.items() if isinstance(v, str)})
    multi = event.get("multiValueHeaders")
    if isinstance(multi, dict):
        for name, values in multi.items():
            if isinstance(values, list) and values and isinstance(values[-1], str):
                headers[str(name)] = values[-1]
    return headers


def _query_parameters(event: dict[str, Any]) -> dict[str, list[str]]:
    multi = event.get("multiValueQueryStringParameters")
    if isinstance(multi, dict):
        return {
            str(name): [str(v) for v in values if isinstance(v, str)]
            for name, values in multi.items()
            if isinstance(values, list)
        }
    single = event.get("queryStringParameters")
    if isinstance(single, dict):
        return {str(name): [value] for name, value in single.items() if isinstance(value, str)}
    return {}
