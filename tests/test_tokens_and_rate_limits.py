"""One-time connection tokens, the token endpoint, and the connection rate limit."""

from __future__ import annotations

import queue
import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from django_aws_api_gateway_websockets.models import ConnectionRateLimit, WebSocketToken

TOKEN_RE = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw")


def age_token(token: WebSocketToken, seconds: float) -> None:
    WebSocketToken.objects.filter(pk=token.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def age_attempts(queryset, **delta) -> None:
    queryset.update(attempt_time=timezone.now() - timedelta(**delta))


# --------------------------------------------------------------------------- generate_token


@pytest.mark.django_db
def test_generate_token_is_64_lowercase_hex_bound_to_user_and_session(alice):
    token = WebSocketToken.generate_token(alice, "session-1")

    assert TOKEN_RE.match(token.token)
    stored = WebSocketToken.objects.get(pk=token.pk)
    assert (stored.token, stored.user, stored.session_key, stored.used) == (
        token.token,
        alice,
        "session-1",
        False,
    )
    assert abs(stored.created_at - timezone.now()) < timedelta(seconds=5)


@pytest.mark.django_db
def test_generated_tokens_are_unique(alice, bob):
    tokens = [WebSocketToken.generate_token(alice, "s").token for _ in range(100)]
    tokens += [WebSocketToken.generate_token(bob, "s").token for _ in range(100)]

    assert len(set(tokens)) == 200
    assert all(TOKEN_RE.match(t) for t in tokens)


# --------------------------------------------------------------------------- validate_and_consume


@pytest.mark.django_db
def test_valid_token_returns_user_once(alice):
    token = WebSocketToken.generate_token(alice, "session-1")

    assert WebSocketToken.validate_and_consume(token.token, "session-1") == alice
    token.refresh_from_db()
    assert token.used is True
    assert WebSocketToken.validate_and_consume(token.token, "session-1") is None


@pytest.mark.django_db
def test_tokens_are_independent(alice, bob):
    first = WebSocketToken.generate_token(alice, "s-a")
    second = WebSocketToken.generate_token(bob, "s-b")

    assert WebSocketToken.validate_and_consume(first.token, "s-a") == alice
    assert WebSocketToken.validate_and_consume(second.token, "s-b") == bob


@pytest.mark.django_db
@pytest.mark.parametrize("other_key", ["session-2", "SESSION-1", "session-1 ", "", None])
def test_token_with_other_session_key_is_refused(alice, other_key):
    token = WebSocketToken.generate_token(alice, "session-1")

    assert WebSocketToken.validate_and_consume(token.token, other_key) is None


@pytest.mark.django_db
def test_token_expires_after_default_60_seconds(alice):
    fresh = WebSocketToken.generate_token(alice, "s")
    stale = WebSocketToken.generate_token(alice, "s")
    age_token(fresh, 50)
    age_token(stale, 61)

    assert WebSocketToken.validate_and_consume(stale.token, "s") is None
    assert WebSocketToken.validate_and_consume(fresh.token, "s") == alice


@pytest.mark.django_db
def test_token_expiry_follows_max_age_seconds(alice):
    token = WebSocketToken.generate_token(alice, "s")
    age_token(token, 90)

    assert WebSocketToken.validate_and_consume(token.token, "s", max_age_seconds=60) is None
    assert WebSocketToken.validate_and_consume(token.token, "s", max_age_seconds=120) == alice

    short = WebSocketToken.generate_token(alice, "s")
    age_token(short, 10)
    assert WebSocketToken.validate_and_consume(short.token, "s", max_age_seconds=5) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make_value",
    [
        lambda t: "",
        lambda t: "not-a-token",
        lambda t: t[:63],
        lambda t: t + "0",
        lambda t: "g" * 64,
        lambda t: "' OR '1'='1",
        lambda t: t[:60] + "%25",
        lambda t: None,
        lambda t: 12345,
        lambda t: t.encode(),
        lambda t: [t],
        lambda t: {"token": t},
    ],
    ids=[
        "empty",
        "garbage",
        "short",
        "long",
        "non-hex",
        "sql",
        "percent",
        "none",
        "int",
        "bytes",
        "list",
        "dict",
    ],
)
def test_malformed_token_values_are_refused(alice, make_value):
    token = WebSocketToken.generate_token(alice, "s")

    assert WebSocketToken.validate_and_consume(make_value(token.token), "s") is None
    # Nothing malformed consumed the real token.
    assert WebSocketToken.validate_and_consume(token.token, "s") == alice


@pytest.mark.django_db
def test_unknown_well_formed_token_is_refused(alice):
    WebSocketToken.generate_token(alice, "s")

    assert WebSocketToken.validate_and_consume("0" * 64, "s") is None


@pytest.mark.django_db
def test_inactive_user_gets_no_user(alice):
    token = WebSocketToken.generate_token(alice, "s")
    alice.is_active = False
    alice.save()

    assert WebSocketToken.validate_and_consume(token.token, "s") is None


@pytest.mark.django_db
def test_used_token_is_refused(alice):
    token = WebSocketToken.generate_token(alice, "s")
    WebSocketToken.objects.filter(pk=token.pk).update(used=True)

    assert WebSocketToken.validate_and_consume(token.token, "s") is None


# --------------------------------------------------------------------------- cleanup_expired


@pytest.mark.django_db
def test_cleanup_removes_expired_and_used_tokens_but_keeps_fresh_unused(alice, bob):
    fresh = WebSocketToken.generate_token(alice, "s")
    recent = WebSocketToken.generate_token(bob, "s")
    age_token(recent, 200)
    used = WebSocketToken.generate_token(alice, "s")
    WebSocketToken.validate_and_consume(used.token, "s")
    expired = WebSocketToken.generate_token(bob, "s")
    age_token(expired, 301)

    deleted = WebSocketToken.cleanup_expired()

    assert deleted == 2
    assert set(WebSocketToken.objects.values_list("pk", flat=True)) == {fresh.pk, recent.pk}
    # The survivors still work.
    assert WebSocketToken.validate_and_consume(fresh.token, "s") == alice


@pytest.mark.django_db
def test_cleanup_respects_max_age_seconds(alice):
    young = WebSocketToken.generate_token(alice, "s")
    age_token(young, 10)
    older = WebSocketToken.generate_token(alice, "s")
    age_token(older, 45)

    assert WebSocketToken.cleanup_expired(max_age_seconds=30) == 1
    assert list(WebSocketToken.objects.values_list("pk", flat=True)) == [young.pk]


@pytest.mark.django_db
def test_cleanup_with_nothing_to_remove(alice):
    WebSocketToken.generate_token(alice, "s")

    assert WebSocketToken.cleanup_expired() == 0
    assert WebSocketToken.objects.count() == 1


# --------------------------------------------------------------------------- token rate limit


@pytest.mark.django_db
def test_token_rate_limit_counts_the_users_last_minute(alice, bob):
    for _ in range(2):
        WebSocketToken.generate_token(alice, "s")
    assert WebSocketToken.check_rate_limit(alice, max_tokens_per_minute=3) is True

    WebSocketToken.generate_token(alice, "s")
    assert WebSocketToken.check_rate_limit(alice, max_tokens_per_minute=3) is False
    # Other users are not affected.
    assert WebSocketToken.check_rate_limit(bob, max_tokens_per_minute=3) is True


@pytest.mark.django_db
def test_token_rate_limit_forgets_tokens_older_than_a_minute(alice):
    old = [WebSocketToken.generate_token(alice, "s") for _ in range(3)]
    for token in old:
        age_token(token, 61)

    assert WebSocketToken.check_rate_limit(alice, max_tokens_per_minute=3) is True


@pytest.mark.django_db
def test_token_rate_limit_default_is_ten(alice):
    for _ in range(9):
        WebSocketToken.generate_token(alice, "s")
    assert WebSocketToken.check_rate_limit(alice) is True

    WebSocketToken.generate_token(alice, "s")
    assert WebSocketToken.check_rate_limit(alice) is False


@pytest.mark.django_db
def test_used_tokens_still_count_for_the_rate_limit(alice):
    for _ in range(3):
        token = WebSocketToken.generate_token(alice, "s")
        WebSocketToken.validate_and_consume(token.token, "s")

    assert WebSocketToken.check_rate_limit(alice, max_tokens_per_minute=3) is False


# --------------------------------------------------------------------------- concurrency


def _race(n_threads: int, work) -> tuple[list, list]:
    """Start ``work()`` in ``n_threads`` threads at once; each uses and closes its own DB
    connection. Returns (results, errors)."""
    barrier = threading.Barrier(n_threads)
    results: list = []
    errors: list = []
    lock = threading.Lock()

    def run():
        try:
            barrier.wait(timeout=10)
            value = work()
            with lock:
                results.append(value)
        except BaseException as error:  # reported by the test
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a consumer thread hung"
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_token_consumed_concurrently_has_exactly_one_winner(alice):
    n_threads = 8
    for _ in range(5):  # several rounds: one lucky interleaving proves little
        token = WebSocketToken.generate_token(alice, "session-1")

        def consume(value=token.token):
            user = WebSocketToken.validate_and_consume(value, "session-1")
            return None if user is None else user.pk

        results, errors = _race(n_threads, consume)

        assert errors == []
        assert len(results) == n_threads
        assert [pk for pk in results if pk is not None] == [alice.pk]
        token.refresh_from_db()
        assert token.used is True


@pytest.mark.django_db
def test_token_with_an_origin_is_consumed_only_by_that_origin(alice):
    token = WebSocketToken.generate_token(alice, "s", origin="https://www.example.com")
    for wrong in ("https://evil.net", "", "http://www.example.com"):
        assert WebSocketToken.validate_and_consume(token.token, "s", origin=wrong) is None
    token.refresh_from_db()
    assert token.used is False
    right = WebSocketToken.validate_and_consume(token.token, "s", origin="https://www.example.com")
    assert right == alice


@pytest.mark.django_db
def test_an_origin_too_long_to_store_is_stored_as_none(alice):
    token = WebSocketToken.generate_token(alice, "s", origin="https://" + "a" * 400 + ".io")
    token.refresh_from_db()
    assert token.origin == ""


@pytest.mark.django_db
def test_a_token_without_an_issuing_origin_satisfies_no_origin(alice):
    token = WebSocketToken.generate_token(alice, "s")
    assert WebSocketToken.validate_and_consume(token.token, "s", origin="https://a.io") is None
    assert WebSocketToken.validate_and_consume(token.token, None, bind_to_session=False) == alice


@pytest.mark.django_db(transaction=True)
def test_origin_bound_token_consumed_concurrently_has_one_winner_of_that_origin(alice):
    origins = ["https://www.example.com", "https://evil.net"] * 4
    for _ in range(5):
        token = WebSocketToken.generate_token(alice, "s", origin="https://www.example.com")
        turns: queue.SimpleQueue[str] = queue.SimpleQueue()
        for origin in origins:
            turns.put(origin)

        def consume(value=token.token, turns=turns):
            origin = turns.get_nowait()
            user = WebSocketToken.validate_and_consume(
                value, None, bind_to_session=False, origin=origin
            )
            return None if user is None else origin

        results, errors = _race(len(origins), consume)

        assert errors == []
        assert [origin for origin in results if origin is not None] == ["https://www.example.com"]


# --------------------------------------------------------------------------- ConnectionRateLimit


@pytest.mark.django_db
def test_connection_rate_limit_by_ip():
    for _ in range(3):
        ConnectionRateLimit.record_attempt("10.0.0.1")
    ConnectionRateLimit.record_attempt("10.0.0.2")

    assert ConnectionRateLimit.check_rate_limit("10.0.0.1", max_attempts=3) == (False, 3)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.1", max_attempts=4) == (True, 3)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.2", max_attempts=3) == (True, 1)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.3", max_attempts=3) == (True, 0)


@pytest.mark.django_db
def test_connection_rate_limit_defaults_are_20_in_5_minutes():
    for _ in range(19):
        ConnectionRateLimit.record_attempt("10.0.0.1")
    assert ConnectionRateLimit.check_rate_limit("10.0.0.1") == (True, 19)

    old = ConnectionRateLimit.record_attempt("10.0.0.1")
    assert ConnectionRateLimit.check_rate_limit("10.0.0.1") == (False, 20)

    age_attempts(ConnectionRateLimit.objects.filter(pk=old.pk), minutes=6)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.1") == (True, 19)


@pytest.mark.django_db
def test_successful_and_failed_attempts_both_count():
    ConnectionRateLimit.record_attempt("10.0.0.1", successful=True)
    ConnectionRateLimit.record_attempt("10.0.0.1", successful=False)

    assert ConnectionRateLimit.check_rate_limit("10.0.0.1", max_attempts=2) == (False, 2)


@pytest.mark.django_db
def test_connection_rate_limit_by_user_counts_attempts_from_other_ips(alice, bob):
    for ip in ("10.0.0.1", "10.0.0.2", "192.168.1.9"):
        ConnectionRateLimit.record_attempt(ip, user=alice)
    ConnectionRateLimit.record_attempt("10.0.0.50", user=bob)

    # A fresh IP does not reset alice's budget.
    assert ConnectionRateLimit.check_rate_limit("172.16.0.1", user=alice, max_attempts=3) == (
        False,
        3,
    )
    assert ConnectionRateLimit.check_rate_limit("172.16.0.1", user=bob, max_attempts=3) == (
        True,
        1,
    )
    # Without the user only the IP counts.
    assert ConnectionRateLimit.check_rate_limit("172.16.0.1", max_attempts=3) == (True, 0)


@pytest.mark.django_db
def test_connection_rate_limit_user_on_a_busy_ip(alice):
    """The IP's attempts (anyone's) still count when the user has few of their own."""
    for _ in range(4):
        ConnectionRateLimit.record_attempt("10.0.0.1")
    ConnectionRateLimit.record_attempt("10.0.0.1", user=alice)

    allowed, count = ConnectionRateLimit.check_rate_limit("10.0.0.1", user=alice, max_attempts=5)
    assert (allowed, count) == (False, 5)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.9", user=alice, max_attempts=5) == (
        True,
        1,
    )


@pytest.mark.django_db
def test_connection_rate_limit_anonymous_user_is_ip_only(alice):
    ConnectionRateLimit.record_attempt("10.0.0.2", user=alice)
    ConnectionRateLimit.record_attempt("10.0.0.1")

    assert ConnectionRateLimit.check_rate_limit(
        "10.0.0.1", user=AnonymousUser(), max_attempts=5
    ) == (True, 1)


@pytest.mark.django_db
def test_connection_rate_limit_window(alice):
    ip_old = [ConnectionRateLimit.record_attempt("10.0.0.1") for _ in range(3)]
    user_old = [ConnectionRateLimit.record_attempt("10.0.0.7", user=alice) for _ in range(3)]
    ConnectionRateLimit.record_attempt("10.0.0.1")
    age_attempts(ConnectionRateLimit.objects.filter(pk__in=[a.pk for a in ip_old]), minutes=6)
    age_attempts(ConnectionRateLimit.objects.filter(pk__in=[a.pk for a in user_old]), minutes=6)

    assert ConnectionRateLimit.check_rate_limit("10.0.0.1", window_minutes=5) == (True, 1)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.1", window_minutes=10) == (True, 4)
    assert ConnectionRateLimit.check_rate_limit(
        "10.0.0.9", user=alice, max_attempts=3, window_minutes=5
    ) == (True, 0)
    assert ConnectionRateLimit.check_rate_limit(
        "10.0.0.9", user=alice, max_attempts=3, window_minutes=10
    ) == (False, 3)
    assert ConnectionRateLimit.check_rate_limit("10.0.0.1", window_minutes=1) == (True, 1)


@pytest.mark.django_db
def test_record_attempt_stores_what_happened(alice):
    anonymous = ConnectionRateLimit.record_attempt("10.0.0.1", user=AnonymousUser())
    nobody = ConnectionRateLimit.record_attempt("10.0.0.1")
    known = ConnectionRateLimit.record_attempt(
        "2001:db8:85a3::8a2e:370:7334", user=alice, successful=True
    )

    for record in (anonymous, nobody, known):
        record.refresh_from_db()
    assert (anonymous.user_id, anonymous.successful) == (None, False)
    assert (nobody.user_id, nobody.ip_address) == (None, "10.0.0.1")
    assert (known.user, known.successful, known.ip_address) == (
        alice,
        True,
        "2001:db8:85a3::8a2e:370:7334",
    )
    assert abs(known.attempt_time - timezone.now()) < timedelta(seconds=5)


@pytest.mark.django_db
def test_cleanup_old_records():
    keep = ConnectionRateLimit.record_attempt("10.0.0.1")
    recent = ConnectionRateLimit.record_attempt("10.0.0.1")
    age_attempts(ConnectionRateLimit.objects.filter(pk=recent.pk), days=6)
    old = [ConnectionRateLimit.record_attempt("10.0.0.2") for _ in range(2)]
    age_attempts(ConnectionRateLimit.objects.filter(pk__in=[a.pk for a in old]), days=8)

    assert ConnectionRateLimit.cleanup_old_records() == 2
    assert set(ConnectionRateLimit.objects.values_list("pk", flat=True)) == {keep.pk, recent.pk}

    assert ConnectionRateLimit.cleanup_old_records(days=1) == 1
    assert list(ConnectionRateLimit.objects.values_list("pk", flat=True)) == [keep.pk]


# --------------------------------------------------------------------------- WebSocketTokenView

TOKEN_URL = "/api/ws-token/"


def test_token_url_name():
    assert reverse("websocket_token") == TOKEN_URL


@pytest.mark.django_db
def test_token_view_refuses_anonymous_users():
    response = Client().post(TOKEN_URL)

    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
    assert "error" in response.json()
    assert WebSocketToken.objects.count() == 0


@pytest.mark.django_db
def test_token_view_refuses_get(alice):
    client = Client()
    client.force_login(alice)

    assert client.get(TOKEN_URL).status_code == 405
    assert WebSocketToken.objects.count() == 0


@pytest.mark.django_db
def test_token_view_enforces_csrf(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)

    refused = client.post(TOKEN_URL)
    assert refused.status_code == 403
    assert WebSocketToken.objects.count() == 0

    # The same request with the CSRF cookie and header (as the browser client sends) works.
    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    accepted = client.post(TOKEN_URL, HTTP_X_CSRFTOKEN=secret)
    assert accepted.status_code == 200
    assert WebSocketToken.objects.count() == 1


@pytest.mark.django_db
def test_token_view_issues_a_token_for_the_users_session(alice):
    client = Client()
    client.force_login(alice)

    response = client.post(TOKEN_URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expires_in"}
    assert TOKEN_RE.match(body["token"])
    assert body["expires_in"] == 60
    assert "no-store" in response["Cache-Control"]
    stored = WebSocketToken.objects.get(token=body["token"])
    assert stored.user == alice
    assert stored.session_key == client.session.session_key


@pytest.mark.django_db
def test_token_view_records_the_issuing_origin_and_survives_an_absurd_host(settings, alice):
    settings.ALLOWED_HOSTS = ["*"]
    client = Client()
    client.force_login(alice)
    for host, origin in (
        ("Chat.Example.com:8443", "http://chat.example.com:8443"),
        ("a" * 400 + ".io", ""),
    ):
        response = client.post(TOKEN_URL, HTTP_HOST=host)
        assert response.status_code == 200
        assert WebSocketToken.objects.get(token=response.json()["token"]).origin == origin


@pytest.mark.django_db
def test_token_from_view_is_bound_to_the_session(alice):
    client = Client()
    client.force_login(alice)
    token = client.post(TOKEN_URL).json()["token"]

    other = Client()
    other.force_login(alice)  # same user, another browser session
    assert other.session.session_key != client.session.session_key

    assert WebSocketToken.validate_and_consume(token, other.session.session_key) is None
    assert WebSocketToken.validate_and_consume(token, client.session.session_key) == alice


@pytest.mark.django_db
def test_token_view_rate_limit_per_user(settings, alice, bob):
    settings.WEBSOCKETS = {"token_rate_limit_per_minute": 2}
    client = Client()
    client.force_login(alice)

    assert [client.post(TOKEN_URL).status_code for _ in range(2)] == [200, 200]
    third = client.post(TOKEN_URL)
    assert third.status_code == 403
    assert "error" in third.json()
    assert WebSocketToken.objects.filter(user=alice).count() == 2

    # The limit is per user: bob is unaffected.
    other = Client()
    other.force_login(bob)
    assert other.post(TOKEN_URL).status_code == 200

    # A minute later alice may ask again.
    WebSocketToken.objects.filter(user=alice).update(
        created_at=timezone.now() - timedelta(seconds=61)
    )
    assert client.post(TOKEN_URL).status_code == 200


@pytest.mark.django_db
def test_token_view_expires_in_follows_setting(settings, alice):
    settings.WEBSOCKETS = {"token_expiry_seconds": 15}
    client = Client()
    client.force_login(alice)

    assert client.post(TOKEN_URL).json()["expires_in"] == 15


@pytest.mark.django_db
def test_a_token_deleted_right_after_its_redemption_is_refused_not_an_error(monkeypatch):
    """The scheduled clean-up deletes used tokens; one that runs between the consuming UPDATE
    and the read of the token's user must not turn the connect into a 500."""
    from django.contrib.auth import get_user_model
    from django.db.models import QuerySet

    user = get_user_model().objects.create_user(username="carol")
    token = WebSocketToken.generate_token(user, "session-1")
    real_update = QuerySet.update

    def update_then_clean_up(queryset, **kwargs):
        count = real_update(queryset, **kwargs)
        WebSocketToken.cleanup_expired()
        return count

    monkeypatch.setattr(QuerySet, "update", update_then_clean_up)
    assert WebSocketToken.validate_and_consume(token.token, None, bind_to_session=False) is None
