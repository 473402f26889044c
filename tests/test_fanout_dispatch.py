"""Opt-in fan-out across Lambda invocations: batches queued asynchronously, then sent by the
handler with the same code path; every connection gets the message exactly once."""

from __future__ import annotations

import json
from collections import Counter
from unittest.mock import Mock, patch

import pytest

from django_aws_api_gateway_websockets.fanout_dispatch import MAX_EVENT_BYTES, _event_bytes, batches
from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler

pytestmark = pytest.mark.django_db


@pytest.fixture
def clients():
    management, lambda_ = Mock(), Mock()
    management.post_to_connection.return_value = {}

    def factory(service="apigatewayv2", **kwargs):
        return lambda_ if service == "lambda" else management

    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", side_effect=factory):
        yield management, lambda_


@pytest.fixture
def sessions(api_gateway):
    WebSocketSession.objects.bulk_create(
        WebSocketSession(connection_id=f"c{n}", channel_name="big", api_gateway=api_gateway)
        for n in range(10)
    )


def posted(management) -> Counter:
    return Counter(c.kwargs["ConnectionId"] for c in management.post_to_connection.call_args_list)


def test_large_fan_out_is_split_and_completed_by_the_handler(
    settings, clients, sessions, keep_test_connection
):
    management, lambda_ = clients
    settings.WEBSOCKETS = {"fanout_invocation_batch": 3, "fanout_function_name": "websockets-fn"}

    report = WebSocketSession.objects.filter(channel_name="big").send_message({"type": "news"})

    assert (report.delivered, report.queued) == (3, 7)
    invocations = lambda_.invoke.call_args_list
    assert [c.kwargs["InvocationType"] for c in invocations] == ["Event"] * 3
    assert {c.kwargs["FunctionName"] for c in invocations} == {"websockets-fn"}

    handler = make_lambda_handler()
    for invocation in invocations:
        result = handler(json.loads(invocation.kwargs["Payload"]), None)
        assert result["statusCode"] == 200
    assert posted(management) == Counter({f"c{n}": 1 for n in range(10)})
    assert {
        json.loads(c.kwargs["Data"])["type"] for c in management.post_to_connection.call_args_list
    } == {"news"}
    assert lambda_.invoke.call_count == 3  # the handler's batches are not split again


def test_off_by_default_and_outside_lambda(settings, clients, sessions, monkeypatch):
    management, lambda_ = clients
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    settings.WEBSOCKETS = {"fanout_invocation_batch": 3}  # no function to hand batches to
    report = WebSocketSession.objects.all().send_message({"type": "x"})
    assert (report.delivered, report.queued) == (10, 0)
    lambda_.invoke.assert_not_called()


def test_the_running_function_is_the_default_target(settings, clients, sessions, monkeypatch):
    management, lambda_ = clients
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "serverless-websockets-dev")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
    settings.WEBSOCKETS = {"fanout_invocation_batch": 5}
    WebSocketSession.objects.all().send_message({"type": "x"})
    assert lambda_.invoke.call_args.kwargs["FunctionName"] == "serverless-websockets-dev"


def test_a_published_version_hands_its_batches_to_the_same_version(
    settings, clients, sessions, monkeypatch
):
    """A SnapStart alias runs a published version: the batches must not land on $LATEST."""
    management, lambda_ = clients
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "serverless-websockets-production")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_VERSION", "17")
    settings.WEBSOCKETS = {"fanout_invocation_batch": 5}
    WebSocketSession.objects.all().send_message({"type": "x"})
    assert lambda_.invoke.call_args.kwargs["FunctionName"] == "serverless-websockets-production:17"


@pytest.mark.parametrize(
    "payload",
    [
        "x" * 120_000,
        json.dumps({"text": "漢字" * 21_000}, ensure_ascii=False),  # 3 bytes per character
        json.dumps({"q": ['"'] * 20_000}),  # every quote escaped in the event
    ],
    ids=["ascii", "cjk", "quotes"],
)
def test_batches_respect_the_async_payload_limit(payload):
    """Measured on the bytes sent: an event never exceeds the limit, whatever the escaping."""
    ids = [f"L0SM9cOFvHcC{n:04d}=" for n in range(20000)]
    split = list(batches(ids, 10_000, payload))
    assert sum(len(b) for b in split) == len(ids)
    for batch in split:
        assert len(_event_bytes(batch, payload)) <= MAX_EVENT_BYTES
    assert max(len(b) for b in list(batches(ids, 7, "{}"))) == 7


def test_a_payload_too_large_to_hand_on_is_sent_here(settings, clients, sessions, monkeypatch):
    """Escaped twice, a 128 KiB message of backslashes no longer fits an event: nothing is
    queued, every connection is still sent to, by this invocation."""
    management, lambda_ = clients
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "serverless-websockets-dev")
    settings.WEBSOCKETS = {"fanout_invocation_batch": 3}
    report = WebSocketSession.objects.all().send_message({"t": "\\" * 65_000})
    assert (report.delivered, report.queued) == (10, 0)
    lambda_.invoke.assert_not_called()


def test_a_failing_invoke_never_loses_or_repeats_a_connection(
    settings, clients, sessions, monkeypatch
):
    """Batch 1 queued, batch 2 throttled beyond its retries: batch 2 and later are sent here,
    batch 1 is not (the queued invocation delivers it), and nothing raises."""
    from botocore.exceptions import ClientError

    management, lambda_ = clients
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "serverless-websockets-dev")
    settings.WEBSOCKETS = {
        "fanout_invocation_batch": 3,
        "send_max_retries": 2,
        "send_retry_base_delay": 0.001,
    }
    throttled = ClientError(
        {
            "Error": {"Code": "TooManyRequestsException"},
            "ResponseMetadata": {"HTTPStatusCode": 429},
        },
        "Invoke",
    )
    lambda_.invoke.side_effect = [None, throttled, throttled, throttled]

    report = WebSocketSession.objects.all().send_message({"type": "x"})

    assert lambda_.invoke.call_count == 4  # batch 1, then batch 2 tried three times
    queued_ids = json.loads(lambda_.invoke.call_args_list[0].kwargs["Payload"])["websocket_fanout"][
        "connection_ids"
    ]
    assert report.queued == len(queued_ids) == 3
    assert report.delivered == 7
    assert set(posted(management)) == {f"c{n}" for n in range(10)} - set(queued_ids)


@pytest.mark.parametrize(
    "body", [None, "x", {"connection_ids": "c1", "payload": "{}"}, {"connection_ids": []}]
)
def test_malformed_fan_out_events_are_400(body, keep_test_connection):
    handler = make_lambda_handler()
    assert handler({"websocket_fanout": body}, None)["statusCode"] == 400


def test_the_invoke_client_fails_fast_and_leaves_retries_to_the_library():
    """A connect (replay) or a broadcast (fan-out batches) waits for the Invoke: botocore's
    defaults (60 s to connect, several attempts) would outlast API Gateway's 29 s in a
    function with no route to the Lambda API."""
    from django_aws_api_gateway_websockets import aws

    made = {}

    def factory(service="apigatewayv2", **kwargs):
        made[service] = kwargs["config"]
        return Mock()

    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", side_effect=factory):
        aws.invoke_client()
    config = made["lambda"]
    assert config.connect_timeout <= 5 and config.read_timeout <= 10
    assert config.retries["total_max_attempts"] == 1
