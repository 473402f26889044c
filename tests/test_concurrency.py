"""Real concurrency on the database: a burst of simultaneous connects from one address, or
token requests from one user, never gets more than the limit through (PostgreSQL: advisory
locks; SQLite: IMMEDIATE transactions)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test import Client

from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from tests.seed.headers import api_gateway_connect_headers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.support_urls")]
CLIENTS = 24
LIMIT = 7


def burst(work, count: int = CLIENTS) -> Counter:
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def run(number: int) -> None:
        try:
            barrier.wait()
            statuses.append(work(number))
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return Counter(statuses)


def test_concurrent_connects_from_one_address_never_exceed_the_limit(settings):
    settings.WEBSOCKETS = {"rate_limit_max_attempts": LIMIT}
    ApiGateway.objects.create(api_name="Test API", api_id="abc123", stage_name="test")

    def connect(number: int) -> int:
        headers = api_gateway_connect_headers(connection_id=f"burst-{number}")
        return (
            Client()
            .post("/ws/connect", data="", content_type="application/json", **headers)
            .status_code
        )

    outcome = burst(connect)

    assert outcome == Counter({200: LIMIT, 429: CLIENTS - LIMIT})
    assert WebSocketSession.objects.count() == LIMIT
    assert ConnectionRateLimit.objects.count() == CLIENTS
    assert ConnectionRateLimit.objects.filter(successful=True).count() == LIMIT


def anonymous_connect(address: str, connection_id: str) -> int:
    headers = api_gateway_connect_headers(connection_id=connection_id)
    headers["HTTP_X_FORWARDED_FOR"] = address
    return (
        Client()
        .post("/ws/connect", data="", content_type="application/json", **headers)
        .status_code
    )


def test_concurrent_connects_from_two_addresses_each_get_the_whole_limit(settings):
    settings.WEBSOCKETS = {"rate_limit_max_attempts": LIMIT}
    ApiGateway.objects.create(api_name="Test API", api_id="abc123", stage_name="test")
    addresses = ("198.51.100.1", "203.0.113.9")

    outcome = burst(lambda n: anonymous_connect(addresses[n % 2], f"pair-{n}"))

    assert outcome == Counter({200: 2 * LIMIT, 429: CLIENTS - 2 * LIMIT})
    for address in addresses:
        attempts = ConnectionRateLimit.objects.filter(ip_address=address)
        assert attempts.count() == CLIENTS // 2
        assert attempts.filter(successful=True).count() == LIMIT


def test_an_anonymous_connect_never_waits_for_another_address(settings):
    """The limit counts per address, so the lock is per address: while one address's connect is
    inside its count-and-insert (here held open by an outer transaction), a connect from another
    address completes, and only one from the same address waits. SQLite has one writer at a
    time whatever the library locks, so there the hold itself would stop every connect."""
    settings.WEBSOCKETS = {"rate_limit_max_attempts": LIMIT}
    ApiGateway.objects.create(api_name="Test API", api_id="abc123", stage_name="test")
    if connection.vendor != "postgresql":
        assert anonymous_connect("203.0.113.9", "other") == 200
        return
    held, release = threading.Event(), threading.Event()
    statuses: dict[str, int] = {}

    def hold_address() -> None:
        try:
            with transaction.atomic():
                ConnectionRateLimit.admit("198.51.100.1", max_attempts=LIMIT)
                held.set()
                release.wait(30)
        finally:
            connection.close()

    def connect(name: str, address: str) -> threading.Thread:
        def run() -> None:
            try:
                statuses[name] = anonymous_connect(address, name)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    holder = threading.Thread(target=hold_address)
    holder.start()
    assert held.wait(10)
    try:
        other = connect("other", "203.0.113.9")
        other.join(10)
        other_done_while_held = not other.is_alive()
        same = connect("same", "198.51.100.1")
        same.join(1)
        same_waited = same.is_alive()
    finally:
        release.set()
        holder.join(30)
    other.join(30)
    same.join(30)

    assert other_done_while_held and statuses["other"] == 200
    assert same_waited and statuses["same"] == 200
    assert ConnectionRateLimit.objects.filter(ip_address="198.51.100.1").count() == 2


def test_concurrent_token_requests_never_exceed_the_limit(settings, django_user_model):
    settings.WEBSOCKETS = {"token_rate_limit_per_minute": LIMIT}
    user = django_user_model.objects.create_user(username="burst")
    client = Client()
    client.force_login(user)
    cookies = client.cookies

    def request_token(number: int) -> int:
        own = Client()
        own.cookies = cookies
        return own.post("/api/ws-token/").status_code

    outcome = burst(request_token)

    assert outcome == Counter({200: LIMIT, 403: CLIENTS - LIMIT})
    assert WebSocketToken.objects.filter(user=user).count() == LIMIT


def test_fan_out_and_cleanup_run_concurrently_without_errors_or_double_sends(settings):
    """A broadcast streams sessions while the scheduled cleanup deletes disconnected rows and
    other connections come and go: no exception, every connected session sent once."""
    import time
    from unittest.mock import Mock, patch

    from django.core.management import call_command

    gateway = ApiGateway.objects.create(api_name="Test API", api_id="abc123", stage_name="test")
    WebSocketSession.objects.bulk_create(
        WebSocketSession(connection_id=f"live-{n}", api_gateway=gateway, channel_name="all")
        for n in range(300)
    )
    WebSocketSession.objects.bulk_create(
        WebSocketSession(
            connection_id=f"old-{n}", api_gateway=gateway, channel_name="all", connected=False
        )
        for n in range(300)
    )
    client = Mock()

    def slow_post(**kwargs):
        time.sleep(0.001)
        return {}

    client.post_to_connection.side_effect = slow_post
    errors: list[BaseException] = []

    def broadcast() -> None:
        try:
            report = WebSocketSession.objects.filter(channel_name="all").send_message({"t": 1})
            assert report.delivered == 300 and report.failed == 0
        except BaseException as error:  # reported to the main thread
            errors.append(error)
        finally:
            connection.close()

    def cleanup() -> None:
        try:
            for _ in range(5):
                call_command("clearWebSocketSessions", stdout=__import__("io").StringIO())
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    with patch("django_aws_api_gateway_websockets.models.get_boto3_client", return_value=client):
        threads = [threading.Thread(target=broadcast), threading.Thread(target=cleanup)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

    assert errors == []
    sent = Counter(c.kwargs["ConnectionId"] for c in client.post_to_connection.call_args_list)
    assert sent == Counter({f"live-{n}": 1 for n in range(300)})
    assert not WebSocketSession.objects.filter(connected=False).exists()


def test_one_token_redeemed_at_once_from_the_site_and_a_foreign_origin(settings):
    """Real clients, cookieless as on an execute-api socket: the site's pages and a foreign
    page race to redeem one token; exactly one connect from the issuing origin gets through
    and no foreign one consumes it."""
    settings.WEBSOCKETS = {"rate_limit_max_attempts": 1000}
    ApiGateway.objects.create(api_name="Test API", api_id="abc123", stage_name="test")
    user = get_user_model().objects.create_user(username="racer")
    site, foreign = "https://www.example.com", "https://evil.net"
    token = WebSocketToken.generate_token(user, "site-session", origin=site).token

    def connect(number: int) -> int:
        headers = api_gateway_connect_headers(connection_id=f"race-{number}")
        headers.pop("HTTP_COOKIE")
        headers["HTTP_ORIGIN"] = site if number % 2 else foreign
        return (
            Client()
            .post(
                f"/token/connect?ws_token={token}",
                data="",
                content_type="application/json",
                **headers,
            )
            .status_code
        )

    outcome = burst(connect)

    assert outcome == Counter({200: 1, 401: CLIENTS // 2 - 1, 403: CLIENTS // 2})
    session = WebSocketSession.objects.get()
    assert session.user == user and int(session.connection_id.split("-")[1]) % 2 == 1
    assert WebSocketToken.objects.get(token=token).used is True
