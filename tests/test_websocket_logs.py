"""websocketLogs against a real botocore logs client, stubbed with AWS's response shapes."""

from __future__ import annotations

import io
import json
from unittest.mock import patch

import boto3
import pytest
from botocore.stub import ANY, Stubber
from django.core.management import CommandError, call_command

from django_aws_api_gateway_websockets.logs import build_query

GROUP = "/aws/lambda/serverless-websockets-dev"


@pytest.fixture
def logs():
    client = boto3.client("logs", region_name="eu-west-1")
    with (
        Stubber(client) as stubber,
        patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client),
        patch("django_aws_api_gateway_websockets.logs.POLL_INTERVAL", 0),
    ):
        yield stubber


def row(**fields):
    return [{"field": key, "value": str(value)} for key, value in fields.items()] + [
        {"field": "@ptr", "value": "CmAK"}
    ]


def run(*args):
    out = io.StringIO()
    call_command("websocketLogs", *args, stdout=out)
    return out.getvalue()


def test_one_connections_history_through_insights(logs):
    logs.add_response(
        "start_query",
        {"queryId": "q-1"},
        {
            "logGroupName": GROUP,
            "startTime": ANY,
            "endTime": ANY,
            "queryString": build_query("connection", "L0SM9cOFvHcCIhw=").insights,
            "limit": 50,
        },
    )
    logs.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-1"})
    logs.add_response(
        "get_query_results",
        {
            "status": "Complete",
            "results": [
                row(
                    **{
                        "@timestamp": "2026-11-26 09:00:00.000",
                        "level": "INFO",
                        "event_type": "CONNECT",
                        "status": 200,
                        "message": "Event handled",
                    }
                ),
                row(
                    **{
                        "@timestamp": "2026-11-26 09:00:01.000",
                        "level": "INFO",
                        "event_type": "MESSAGE",
                        "status": 200,
                        "message": "Event handled",
                    }
                ),
            ],
        },
        {"queryId": "q-1"},
    )
    output = json.loads(
        run(
            "--function",
            "serverless-websockets-dev",
            "--connection-id",
            "L0SM9cOFvHcCIhw=",
            "--json",
        )
    )
    assert output["source"] == "insights"
    assert [r["event_type"] for r in output["rows"]] == ["CONNECT", "MESSAGE"]
    assert all("@ptr" not in r for r in output["rows"])


def test_errors_fall_back_to_filter_log_events(logs):
    logs.add_client_error("start_query", "AccessDeniedException", "not allowed")
    line = {"level": "ERROR", "message": "WebSocket handler chat_message failed", "status": 500}
    logs.add_response(
        "filter_log_events",
        {
            "events": [
                {"timestamp": 1795683600000, "message": json.dumps(line)},
                {"timestamp": 1795683600001, "message": "START RequestId: x"},
            ],
            "nextToken": "n1",
        },
        {
            "logGroupName": GROUP,
            "startTime": ANY,
            "endTime": ANY,
            "filterPattern": build_query("errors").pattern,
        },
    )
    logs.add_response(
        "filter_log_events",
        {"events": []},
        {
            "logGroupName": GROUP,
            "startTime": ANY,
            "endTime": ANY,
            "filterPattern": build_query("errors").pattern,
            "nextToken": "n1",
        },
    )
    output = run("--log-group", GROUP, "--errors", "--since", "2h")
    assert f"1 line(s) from {GROUP} (filter)" in output
    assert "WebSocket handler chat_message failed" in output


def test_slowest_sorts_by_duration_in_the_fallback(logs):
    logs.add_client_error("start_query", "InvalidParameterException")
    events = [
        {"timestamp": 1, "message": json.dumps({"message": "Event handled", "duration_ms": d})}
        for d in (3.5, 120.0, 8.25)
    ]
    logs.add_response("filter_log_events", {"events": events}, None)
    output = json.loads(run("--log-group", GROUP, "--slowest", "--limit", "2", "--json"))
    assert [r["duration_ms"] for r in output["rows"]] == [120.0, 8.25]


def test_failed_query_is_a_clear_error(logs):
    logs.add_response("start_query", {"queryId": "q"}, None)
    logs.add_response("get_query_results", {"status": "Failed", "results": []}, None)
    with pytest.raises(CommandError, match="ended as Failed"):
        run("--log-group", GROUP, "--request-id", "Cq1BJFkOIAMFdWh=")


@pytest.mark.parametrize(
    "args",
    [
        ["--errors"],  # no log group
        ["--log-group", GROUP, "--connection-id", 'x" or 1=1'],
        ["--log-group", GROUP, "--errors", "--since", "soon"],
        ["--log-group", GROUP, "--errors", "--since", "1h", "--until", "2h"],
        ["--log-group", GROUP, "--errors", "--limit", "0"],
    ],
)
def test_bad_arguments(args, monkeypatch):
    monkeypatch.delenv("WEBSOCKETS_LOG_GROUP", raising=False)
    with pytest.raises(CommandError):
        run(*args)
