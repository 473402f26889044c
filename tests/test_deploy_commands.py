"""ensureSuperuser and createrooms as `zappa manage` runs them: `{"manage": ...}` events
through the handler, the password only from the function's environment."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from tests.lambda_support import log_lines
from websocket_app.models import Room

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-pass-phrase-4-tests"


@pytest.fixture
def manage(settings, keep_test_connection):
    handler = make_lambda_handler()
    return lambda command: handler({"manage": command}, None)


@pytest.fixture
def admin_env(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "admin")
    monkeypatch.setenv("DJANGO_SUPERUSER_EMAIL", "admin@example.com")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)


def test_creates_the_admin_from_the_environment(manage, admin_env, capsys):
    result = manage("ensureSuperuser")
    assert result["statusCode"] == 200
    user = get_user_model().objects.get(username="admin")
    assert (user.is_staff, user.is_superuser, user.email) == (True, True, "admin@example.com")
    assert user.check_password(PASSWORD)
    assert PASSWORD not in json.dumps(result) + capsys.readouterr().out


def test_arguments_win_over_the_environment(manage, admin_env):
    assert manage("ensureSuperuser --username root --email r@example.com")["statusCode"] == 200
    assert get_user_model().objects.get(username="root").email == "r@example.com"


def test_running_again_keeps_a_changed_password(manage, admin_env):
    manage("ensureSuperuser")
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed-in-the-admin-42")
    user.is_superuser = False
    user.save()
    result = manage("ensureSuperuser")
    assert "password unchanged" in result["output"]
    user.refresh_from_db()
    assert user.is_superuser and user.check_password("changed-in-the-admin-42")
    manage("ensureSuperuser --reset-password")
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_no_password_in_the_environment_is_a_400_naming_it(manage, monkeypatch, capsys):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    result = manage("ensureSuperuser --username admin")
    assert result["statusCode"] == 400 and "DJANGO_SUPERUSER_PASSWORD" in result["error"]
    assert not get_user_model().objects.exists()
    (line,) = [
        entry
        for entry in log_lines(capsys.readouterr().out)
        if "DJANGO_SUPERUSER_PASSWORD" in str(entry)
    ]
    assert line["level"] == "WARNING"


def test_no_username_is_a_400_naming_the_variable(manage, monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_USERNAME", raising=False)
    assert "DJANGO_SUPERUSER_USERNAME" in manage("ensureSuperuser")["error"]


def test_weak_password_is_refused_without_repeating_it(manage, admin_env, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "12345678")
    result = manage("ensureSuperuser")
    assert result["statusCode"] == 400 and "too common" in result["error"]
    assert "12345678" not in result["error"]
    assert not get_user_model().objects.exists()


def test_createrooms_creates_public_and_private_rooms_once(manage):
    result = manage("createrooms general random=Off-topic")
    assert result["statusCode"] == 200
    assert {(r.slug, r.title, r.is_private) for r in Room.objects.all()} == {
        ("general", "General", False),
        ("random", "Off-topic", False),
    }
    assert "already there: general" in manage("createrooms general staff --private")["output"]
    assert Room.objects.get(slug="staff").is_private
    assert not Room.objects.get(slug="general").is_private
    assert not get_user_model().objects.exists()  # no demo users in production


@pytest.mark.parametrize("slug", ["Not A Slug", "=Title", "ümlaut"])
def test_createrooms_refuses_a_bad_slug(manage, slug):
    result = manage(f"createrooms general '{slug}'")
    assert result["statusCode"] == 400 and "slug" in result["error"]
    assert not Room.objects.exists()


def test_health_answers_ok_and_503_without_the_database(client, monkeypatch):
    """Served outside Lambda (runserver, gunicorn) the view checks the database itself."""
    from django.db import OperationalError, connection

    assert client.get("/health/").json() == {"status": "ok"}

    def refuse() -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json() == {"status": "database unavailable"}
