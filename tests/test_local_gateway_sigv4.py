"""The local gateway's ``@connections`` API verifies SigV4 as AWS does: requests boto3 (or the
library's own HTTP fan-out) signs with the project's credentials for its region pass;
unsigned, wrongly signed, stale or foreign ones get 403 in AWS's error shape."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from django.core.management.base import CommandError
from websockets.sync.client import connect

from django_aws_api_gateway_websockets.connections_http import FanOut, Signer, target_for
from django_aws_api_gateway_websockets.local_gateway import SignatureCheck
from django_aws_api_gateway_websockets.management.commands.runapigateway import signature_check
from tests.e2e_support import GatewayProcess, e2e_database
from tests.test_local_gateway import StubHandler, gateway_records, running_gateway, wait_for

ACCESS_KEY, SECRET_KEY, REGION = "AKIDPROJECT", "project-secret", "eu-west-1"
MISSING = "MissingAuthenticationTokenException"


@pytest.fixture
def stub():
    return StubHandler()


@pytest.fixture
def gateway(stub):
    check = SignatureCheck(Credentials(ACCESS_KEY, SECRET_KEY), REGION)
    yield from running_gateway(stub, signature_check=check)


@pytest.fixture
def socket_and_id(gateway):
    with connect(gateway.websocket_url) as ws:
        wait_for(lambda: gateway.connections)
        yield ws, next(iter(gateway.connections))


def client(gateway, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, token=None):
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url=gateway.management_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        config=Config(retries={"total_max_attempts": 1}),
    )


def refused(call, **kwargs) -> tuple[int, str]:
    with pytest.raises(ClientError) as error:
        call(**kwargs)
    response = error.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def nothing_arrives(ws) -> bool:
    try:
        ws.recv(timeout=0.3)
    except TimeoutError:
        return True
    return False


def test_boto3_post_get_and_delete_pass(gateway, socket_and_id):
    ws, connection_id = socket_and_id
    management = client(gateway)
    management.post_to_connection(ConnectionId=connection_id, Data=b'{"n": 1}')
    assert json.loads(ws.recv(timeout=5)) == {"n": 1}
    assert management.get_connection(ConnectionId=connection_id)["Identity"]["SourceIp"]
    management.delete_connection(ConnectionId=connection_id)
    wait_for(lambda: not gateway.connections)


def test_temporary_credentials_need_their_session_token(stub):
    check = SignatureCheck(Credentials(ACCESS_KEY, SECRET_KEY, "the-token"), REGION)
    gateways = running_gateway(stub, signature_check=check)
    gateway = next(gateways)
    with connect(gateway.websocket_url) as ws:
        wait_for(lambda: gateway.connections)
        connection_id = next(iter(gateway.connections))
        post = {"ConnectionId": connection_id, "Data": b"{}"}
        client(gateway, token="the-token").post_to_connection(**post)
        assert ws.recv(timeout=5) == "{}"
        for token in (None, "another-token"):
            management = client(gateway, token=token)
            assert refused(management.post_to_connection, **post) == (
                403,
                "UnrecognizedClientException",
            )
        assert nothing_arrives(ws)
    next(gateways, None)


@pytest.fixture
def gateway_log():
    with gateway_records() as records:
        yield records


def test_an_unsigned_request_is_403_missing_authentication_token(
    gateway, socket_and_id, gateway_log
):
    ws, connection_id = socket_and_id
    url = f"{gateway.management_url}/@connections/{connection_id}"
    for method, data in (("POST", b'{"forged": true}'), ("GET", None), ("DELETE", None)):
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(urllib.request.Request(url, data=data, method=method))
        assert error.value.code == 403
        assert error.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
        assert json.loads(error.value.read()) == {"message": "Missing Authentication Token"}
    assert nothing_arrives(ws)
    assert connection_id in gateway.connections
    # One line each, saying why, without a traceback.
    lines = [(r.levelname, r.getMessage(), r.exc_info) for r in gateway_log]
    assert [line for line in lines if line[0] != "INFO"] == [
        ("WARNING", f"@connections {method} refused (403 {MISSING}): no Authorization header", None)
        for method in ("POST", "GET", "DELETE")
    ]


@pytest.mark.parametrize(
    ("signed_with", "code"),
    [
        ({"secret_key": "not-the-secret"}, "InvalidSignatureException"),
        ({"access_key": "AKIDSOMEONEELSE"}, "UnrecognizedClientException"),
        ({"region": "us-east-1"}, "InvalidSignatureException"),
    ],
)
def test_a_wrongly_signed_request_is_403(gateway, socket_and_id, signed_with, code):
    ws, connection_id = socket_and_id
    management = client(gateway, **signed_with)
    post = {"ConnectionId": connection_id, "Data": b"{}"}
    assert refused(management.post_to_connection, **post) == (403, code)
    assert refused(management.delete_connection, ConnectionId=connection_id)[0] == 403
    assert nothing_arrives(ws)


def signed_request(gateway, connection_id, body: bytes):
    """A POST signed by botocore itself, for tampering with afterwards."""
    url = f"{gateway.management_url}/@connections/{quote(connection_id, safe='')}"
    request = AWSRequest(method="POST", url=url, data=body)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "execute-api", REGION).add_auth(request)
    return request


def send(request, body: bytes | None = None) -> tuple[int, str]:
    raw = urllib.request.Request(
        request.url, data=request.body if body is None else body, method=request.method
    )
    for name, value in request.headers.items():
        raw.add_header(name, value)
    try:
        with urllib.request.urlopen(raw, timeout=5) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-amzn-ErrorType", "")


def test_a_signature_covers_the_body_path_and_time(gateway, socket_and_id):
    ws, connection_id = socket_and_id
    genuine = signed_request(gateway, connection_id, b'{"amount": 1}')
    assert send(genuine, body=b'{"amount": 9}') == (403, "InvalidSignatureException")
    other = signed_request(gateway, "AnotherConnId0=", b"{}")
    other.url = genuine.url
    assert send(other) == (403, "InvalidSignatureException")
    real_clock = gateway.signature_check.clock
    for skew in (-6 * 60, 6 * 60):  # AWS allows 5 minutes either way
        gateway.signature_check.clock = lambda skew=skew: real_clock() - skew
        assert send(genuine) == (403, "InvalidSignatureException")
    gateway.signature_check.clock = real_clock
    assert nothing_arrives(ws)
    assert send(genuine) == (200, "")
    assert json.loads(ws.recv(timeout=5)) == {"amount": 1}


def test_the_librarys_http_fanout_signs_as_the_gateway_checks(gateway, socket_and_id):
    ws, connection_id = socket_and_id
    target = target_for(client(gateway))
    assert target is not None
    outcomes: list[tuple[str, str]] = []
    fanout = FanOut(
        concurrency=4,
        max_retries=0,
        base_delay=0.0,
        on_result=lambda cid, outcome: outcomes.append((cid, outcome)),
    )
    payload = b'{"via": "connections_http"}'
    fanout.submit(target, Signer(target, payload), payload, connection_id)
    fanout.close()
    assert outcomes == [(connection_id, "delivered")]
    assert json.loads(ws.recv(timeout=5)) == {"via": "connections_http"}


def test_the_command_refuses_to_start_without_loadable_credentials(settings):
    settings.AWS_IAM_PROFILE = "no-such-profile-h14a"
    options = {"verify_signature": True, "host": "127.0.0.1", "stage": "local"}
    with pytest.raises(CommandError, match="--no-verify-signature"):
        signature_check(options)
    assert signature_check({**options, "verify_signature": False}) is None
    settings.WEBSOCKETS = {"local_gateway_verify_signature": False}
    assert signature_check(options) is None


@pytest.mark.parametrize(
    ("extra_args", "env"),
    [
        ((), {}),
        (("--no-verify-signature",), {}),
        ((), {"WEBSOCKETS_LOCAL_GATEWAY_VERIFY_SIGNATURE": "false"}),
    ],
    ids=["verified", "flag-off", "env-off"],
)
def test_runapigateway_verifies_unless_told_not_to(tmp_path, extra_args, env):
    with e2e_database(tmp_path) as database_url:
        gateway = GatewayProcess(database_url, *extra_args, env=env)
        try:
            url = f"{gateway.connections_url}/@connections/NoSuchConnId0="
            request = urllib.request.Request(url, data=b"{}", method="POST")
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(request, timeout=10)
        finally:
            gateway.stop()
            banner = gateway.rest_of_output()
    if extra_args or env:
        # Not checked: the request reaches @connections, which knows no such connection.
        assert error.value.code == 410
        assert "Signatures:  not verified" in banner
    else:
        assert error.value.code == 403
        assert "Signatures:  SigV4 verified (execute-api, us-east-1, access key local)" in banner
