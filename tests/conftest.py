"""Fixtures the testing guide's examples use (``api_gateway``, ``websocket_session``, from the
library's own plugin) and the suite's own."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

# The fixtures the library ships (its pytest11 plugin, loaded when it is installed; this
# repository runs from the source tree, so they are imported here).
from django_aws_api_gateway_websockets.testing.pytest_plugin import (  # noqa: F401
    api_gateway,
    websocket_client,
    websocket_message_rate_reset,
    websocket_outbox,
    websocket_session,
)


@pytest.fixture
def keep_test_connection(monkeypatch):
    """Lambda closes stale DB connections around each event; inside a test transaction that
    would drop the test's own connection (PostgreSQL), so do what Django's test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    monkeypatch.setattr("django.db.close_old_connections", lambda **kwargs: None)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def root_script_prefix():
    """The Lambda handler sets the thread's script prefix per request (a stage's ``/dev/``)
    and Django's test client never resets it: start every test from the root again."""
    from django.urls import set_script_prefix

    yield
    set_script_prefix("/")


@pytest.fixture(autouse=True)
def no_real_aws(monkeypatch, request):
    """Fail any test whose code tried to reach a real AWS endpoint (moto and local servers
    are fine): a guard at the network edge, so a forgotten mock cannot hide in a fan-out."""
    from botocore.exceptions import EndpointConnectionError
    from botocore.httpsession import URLLib3Session

    # As on Lambda, which sets none of them (this machine exports all three): a test that
    # depends on one must set it itself.
    for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    real_send = URLLib3Session.send
    attempts: list[str] = []

    def guarded_send(self, aws_request):
        host = urlsplit(aws_request.url).hostname or ""
        if host.endswith((".amazonaws.com", ".on.aws")):
            attempts.append(aws_request.url)
            raise EndpointConnectionError(endpoint_url=aws_request.url)
        return real_send(self, aws_request)

    monkeypatch.setattr(URLLib3Session, "send", guarded_send)

    # The library's own transport (fan-out, connections opened ahead) bypasses botocore.
    from django_aws_api_gateway_websockets import connections_http

    real_open = connections_http._Pool._open

    async def guarded_open(self):
        if self.address.host.endswith((".amazonaws.com", ".on.aws")):
            attempts.append(f"{self.address.scheme}://{self.address.host}")
            raise connections_http.NotSent("the test guard refuses real AWS")
        return await real_open(self)

    monkeypatch.setattr(connections_http._Pool, "_open", guarded_open)
    yield
    if attempts:
        pytest.fail(f"{request.node.nodeid} tried to reach real AWS: {attempts}")


@pytest.fixture(autouse=True)
def fresh_exception_mail_interval():
    """Each test starts with no error mail sent yet (the interval is per process)."""
    from django_aws_api_gateway_websockets import views

    views._LAST_MAIL.clear()


@pytest.fixture(autouse=True)
def fresh_send_rate():
    """Each test starts with a full send-rate bucket (it is per process, like the loop)."""
    from django_aws_api_gateway_websockets import send_rate

    send_rate.forget_limiter()
