"""Reading the deployed function's structured logs: CloudWatch Logs Insights queries (the same
ones serverless-notes.md documents), with ``filter_log_events`` when Insights is unavailable."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Connection and request ids are base64-like; anything else is refused rather than quoted.
SAFE_VALUE = re.compile(r"^[A-Za-z0-9+/=_.:-]{1,128}$")
EVENT_FIELDS = "@timestamp, level, event_type, route_key, connection_id, correlation_id, status"
POLL_INTERVAL = 0.5


@dataclass(frozen=True)
class LogQuery:
    insights: str  # Logs Insights query
    pattern: str  # filter_log_events pattern for the fallback
    sort_key: str | None = None  # fallback: client-side sort, descending
    newest_first: bool = True


def build_query(kind: str, value: str = "", limit: int = 50) -> LogQuery:
    """The query for ``kind``: errors, request, connection or slowest."""
    if kind in ("request", "connection") and not SAFE_VALUE.match(value):
        raise ValueError(f"{value!r} is not a connection or request id.")
    if kind == "errors":
        return LogQuery(
            f"fields {EVENT_FIELDS}, duration_ms, message, exception\n"
            '| filter level = "ERROR" or status >= 500\n'
            f"| sort @timestamp desc\n| limit {limit}",
            '{ ($.level = "ERROR") || ($.status >= 500) }',
        )
    if kind == "request":
        return LogQuery(
            f"fields {EVENT_FIELDS}, duration_ms, message\n"
            f'| filter correlation_id = "{value}"\n| sort @timestamp asc\n| limit {limit}',
            f'{{ $.correlation_id = "{value}" }}',
            newest_first=False,
        )
    if kind == "connection":
        return LogQuery(
            f"fields {EVENT_FIELDS}, duration_ms, message\n"
            f'| filter connection_id = "{value}" or message like "{value}"\n'
            f"| sort @timestamp asc\n| limit {limit}",
            f'{{ $.connection_id = "{value}" }}',
            newest_first=False,
        )
    if kind == "slowest":
        return LogQuery(
            f"fields {EVENT_FIELDS}, duration_ms, cold_start\n"
            '| filter message = "Event handled"\n'
            f"| sort duration_ms desc\n| limit {limit}",
            '{ $.message = "Event handled" }',
            sort_key="duration_ms",
        )
    raise ValueError(f"Unknown query {kind!r}.")


def run_query(
    client: Any,
    log_group: str,
    query: LogQuery,
    start: int,
    end: int,
    limit: int,
    timeout: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, list[dict[str, Any]]]:
    """``("insights" | "filter", rows)``; rows are dicts of the log lines' fields."""
    from botocore.exceptions import ClientError

    try:
        query_id = client.start_query(
            logGroupName=log_group,
            startTime=start,
            endTime=end,
            queryString=query.insights,
            limit=limit,
        )["queryId"]
    except ClientError:
        return "filter", _filter_events(client, log_group, query, start, end, limit)
    deadline = time.monotonic() + timeout
    while True:
        response = client.get_query_results(queryId=query_id)
        if response["status"] in ("Complete", "Failed", "Cancelled", "Timeout", "Unknown"):
            break
        if time.monotonic() > deadline:
            raise TimeoutError("Logs Insights did not finish in time")
        sleep(POLL_INTERVAL)
    if response["status"] != "Complete":
        raise RuntimeError(f"Logs Insights query ended as {response['status']}")
    rows = [
        {cell["field"]: cell.get("value", "") for cell in row if cell["field"] != "@ptr"}
        for row in response.get("results", [])
    ]
    return "insights", rows


def _filter_events(
    client: Any, log_group: str, query: LogQuery, start: int, end: int, limit: int
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "logGroupName": log_group,
        "startTime": start * 1000,
        "endTime": end * 1000,
        "filterPattern": query.pattern,
    }
    scan_cap = limit * 20 if query.sort_key else limit
    while len(rows) < scan_cap:
        response = client.filter_log_events(**kwargs)
        for event in response.get("events", []):
            try:
                line = json.loads(event["message"])
            except ValueError:
                continue
            if isinstance(line, dict):
                line.setdefault("@timestamp", _iso(event.get("timestamp", 0)))
                rows.append(line)
        if not response.get("nextToken"):
            break
        kwargs["nextToken"] = response["nextToken"]
    if query.sort_key:
        rows.sort(key=lambda row: float(row.get(query.sort_key) or 0), reverse=True)
    elif query.newest_first:
        rows.reverse()
    return rows[:limit]


def _iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch_ms / 1000))
