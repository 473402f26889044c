"""Which @connections endpoint an event's host stands for: AWS, a custom domain, an emulator."""

from __future__ import annotations

import pytest

from django_aws_api_gateway_websockets.endpoints import (
    emulator_endpoint,
    endpoint_from_event,
    is_emulator_host,
)

EXECUTE_API = "https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com/production"


def learn(domain: str, host: str = "", scheme: str = "", region: str = "eu-west-1") -> str:
    return endpoint_from_event(domain, "a1b2c3d4e5", "production", region, host, scheme)


class TestAws:
    def test_execute_api_domain_is_used_with_its_stage(self):
        assert learn("a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com") == EXECUTE_API

    def test_execute_api_ignores_the_handshake_host(self):
        domain = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
        assert learn(domain, host="localhost:9999", scheme="http") == EXECUTE_API

    @pytest.mark.parametrize("domain", ["ws.example.com", "chat.example.co.uk", "WS.Example.COM"])
    def test_custom_domain_maps_to_the_execute_api_url(self, domain):
        assert learn(domain) == EXECUTE_API

    def test_custom_domain_never_takes_the_handshake_host(self):
        assert learn("ws.example.com", host="127.0.0.1:9999", scheme="http") == EXECUTE_API

    def test_custom_domain_without_region_learns_nothing(self):
        assert learn("ws.example.com", region="") == ""

    @pytest.mark.parametrize(
        ("domain", "api_id", "stage"), [("", "a", "s"), ("x.com", "", "s"), ("x.com", "a", "")]
    )
    def test_incomplete_event_learns_nothing(self, domain, api_id, stage):
        assert endpoint_from_event(domain, api_id, stage, "eu-west-1") == ""


class TestEmulators:
    def test_serverless_offline_is_the_port_the_client_used(self):
        # serverless-offline: domainName "localhost", Host "localhost:3001", no proto header.
        assert learn("localhost", host="localhost:3001") == "http://localhost:3001"

    def test_loopback_host_of_the_handshake_wins_over_bare_localhost(self):
        assert learn("localhost", host="127.0.0.1:3001") == "http://127.0.0.1:3001"
        assert learn("localhost", host="[::1]:3001") == "http://[::1]:3001"

    def test_scheme_comes_from_the_handshake(self):
        assert learn("localhost", host="localhost:3001", scheme="https") == "https://localhost:3001"
        assert learn("localhost", host="localhost:3001", scheme="gopher") == "http://localhost:3001"

    def test_domain_with_a_port_is_used_as_is(self):
        assert learn("127.0.0.1:8001") == "http://127.0.0.1:8001"

    def test_without_a_handshake_host_the_domain_is_the_endpoint(self):
        assert learn("localhost") == "http://localhost"

    def test_a_foreign_handshake_host_is_not_taken(self):
        # Only the event's own host name or a loopback one: never a host the client names.
        assert learn("localhost", host="evil.example.com:80") == "http://localhost"
        assert learn("gateway.internal", host="10.0.0.7:22") == "http://gateway.internal"
        assert learn("gateway.internal", host="gateway.internal:4510") == (
            "http://gateway.internal:4510"
        )

    def test_malformed_handshake_host_is_ignored(self):
        assert learn("localhost", host="localhost:notaport") == "http://localhost"
        assert learn("localhost", host="user@localhost:1") == "http://localhost"

    def test_malformed_domain_is_no_endpoint(self):
        assert emulator_endpoint("bad host", "localhost:3001") == ""

    def test_never_an_execute_api_url(self):
        for domain in ("localhost", "127.0.0.1", "host.docker.internal", "gateway", "ws.test"):
            assert "execute-api" not in learn(domain, host="localhost:3001")


@pytest.mark.parametrize(
    ("authority", "emulator"),
    [
        ("localhost", True),
        ("localhost:3001", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("192.168.1.20", True),
        ("[::1]:3001", True),
        ("gateway", True),  # a container or service name
        ("chat.local", True),
        ("host.docker.internal", True),
        ("ws.test", True),
        ("router.home.arpa", True),
        ("ws.example.com:8443", True),  # API Gateway's domainName never has a port
        ("ws.example.com", False),
        ("example.com", False),
        ("a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", False),
        ("", False),
        ("bad host", False),
    ],
)
def test_emulator_hosts(authority, emulator):
    assert is_emulator_host(authority) is emulator
