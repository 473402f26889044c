"""The fast fan-out path: our SigV4 signature equals botocore's, and real boto3 clients use it
(moto-mocked and non-botocore clients do not)."""

from __future__ import annotations

import time
from unittest.mock import Mock, patch

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from django_aws_api_gateway_websockets.connections_http import (
    Signer,
    Target,
    connection_path,
    target_for,
)


def botocore_signature(target: Target, path: str, payload: bytes, now: float) -> dict:
    credentials = Credentials(target.access_key, target.secret_key, target.token)
    request = AWSRequest(
        method="POST", url=f"{target.scheme}://{target.host_header}{path}", data=payload
    )
    import datetime

    # botocore's signer reads the clock through get_current_datetime (naive UTC).
    moment = datetime.datetime.fromtimestamp(now, datetime.UTC).replace(tzinfo=None)
    with patch("botocore.auth.get_current_datetime", return_value=moment):
        SigV4Auth(credentials, "execute-api", target.region).add_auth(request)
    return dict(request.headers)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEJr//////////session"])
@pytest.mark.parametrize(
    ("host", "port", "scheme"),
    [("abc123.execute-api.eu-west-1.amazonaws.com", 443, "https"), ("127.0.0.1", 8001, "http")],
)
@pytest.mark.parametrize("connection_id", ["L0SM9cOFvHcCIhw=", "a+b/c=="])
def test_signature_matches_botocore(token, host, port, scheme, connection_id):
    target = Target(
        scheme, host, port, "/production", "eu-west-1", "", "AKIDEXAMPLE", "s3cr3t", token
    )
    payload = '{"type":"chat","text":"Grüße"}'.encode()
    path = connection_path(target, connection_id)
    now = time.time()
    ours = dict(Signer(target, payload).headers(path, now))
    theirs = botocore_signature(target, path, payload, now)
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"]
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token")


def test_only_real_unmocked_botocore_clients_take_the_fast_path():
    from moto import mock_aws

    client = boto3.client(
        "apigatewaymanagementapi",
        endpoint_url="https://abc.execute-api.eu-west-1.amazonaws.com/prod",
        region_name="eu-west-1",
        aws_access_key_id="AKID",
        aws_secret_access_key="secret",
    )
    target = target_for(client)
    assert (target.host, target.base_path, target.region) == (
        "abc.execute-api.eu-west-1.amazonaws.com",
        "/prod",
        "eu-west-1",
    )
    assert target_for(Mock()) is None
    with mock_aws():
        assert target_for(client) is None


def test_proxies_and_disabled_verification_keep_boto3(monkeypatch):
    from botocore.config import Config

    def client(**kwargs):
        return boto3.client(
            "apigatewaymanagementapi",
            endpoint_url="https://abc.execute-api.eu-west-1.amazonaws.com/prod",
            region_name="eu-west-1",
            aws_access_key_id="AKID",
            aws_secret_access_key="secret",
            **kwargs,
        )

    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    assert target_for(client(config=Config(proxies={"https": "http://proxy:3128"}))) is None
    assert target_for(client(verify=False)) is None
    assert target_for(client(verify="/etc/ssl/custom-ca.pem")).ca_bundle == (
        "/etc/ssl/custom-ca.pem"
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert target_for(client()) is None
