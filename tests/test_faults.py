"""Faults between and during invocations: the database connection dropped while a container
sits warm, duplicate and out-of-order events."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketSession
from django_aws_api_gateway_websockets.serverless import make_lambda_handler
from django_aws_api_gateway_websockets.serverless.local import authenticate_connect_event
from tests.lambda_support import SAMPLE_API_ID, SAMPLE_CONNECTION_ID, load_event


def drop_database_connection() -> None:
    """What an idle Lambda container meets: the server (or RDS Proxy) closed its connection."""
    if connection.vendor == "postgresql":
        from django.db import connections

        with connections["default"].cursor() as cursor:
            pid = cursor.connection.info.backend_pid
        import psycopg

        settings_dict = connection.settings_dict
        admin = psycopg.connect(
            host=settings_dict["HOST"],
            port=settings_dict["PORT"] or 5432,
            user=settings_dict["USER"],
            dbname=settings_dict["NAME"],
            autocommit=True,
        )
        with admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    else:
        connection.close()  # SQLite has no server to drop it: the closest is a closed handle


@pytest.mark.django_db(transaction=True)
def test_a_dropped_database_connection_is_replaced_between_invocations(settings, django_user_model):
    settings.ALLOWED_HOSTS = [".amazonaws.com"]
    handler = make_lambda_handler()
    ApiGateway.objects.create(
        api_name="Sample",
        api_id=SAMPLE_API_ID,
        stage_name="production",
        management_endpoint_url="https://x.execute-api.eu-west-1.amazonaws.com/p",
    )
    user = django_user_model.objects.create_user(username="alice")
    assert (
        handler(authenticate_connect_event(load_event("connect"), user), None)["statusCode"] == 200
    )

    drop_database_connection()

    response = handler(load_event("message_who_is_here"), None)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["type"] == "here_now"
    session = WebSocketSession.objects.get(connection_id=SAMPLE_CONNECTION_ID)
    assert session.request_count == 1  # the message was applied once, nothing half-done


@pytest.mark.django_db
class TestOutOfOrderEvents:
    @pytest.fixture
    def handler(self, settings, keep_test_connection):
        settings.ALLOWED_HOSTS = [".amazonaws.com"]
        ApiGateway.objects.create(
            api_name="Sample",
            api_id=SAMPLE_API_ID,
            stage_name="production",
            management_endpoint_url="https://x.execute-api.eu-west-1.amazonaws.com/p",
        )
        return make_lambda_handler()

    def test_disconnect_before_connect_refuses_the_late_connect(self, handler, django_user_model):
        assert handler(load_event("disconnect"), None)["statusCode"] == 200
        user = django_user_model.objects.create_user(username="alice")
        late = authenticate_connect_event(load_event("connect"), user)
        # The socket is already gone: no session may be left connected for it.
        assert handler(late, None)["statusCode"] == 409
        assert not WebSocketSession.objects.filter(connected=True).exists()
        assert WebSocketSession.objects.get().connection_id == SAMPLE_CONNECTION_ID

    def test_disconnect_before_connect_twice_is_harmless(self, handler):
        assert handler(load_event("disconnect"), None)["statusCode"] == 200
        assert handler(load_event("disconnect"), None)["statusCode"] == 200
        assert WebSocketSession.objects.filter(connected=False).count() == 1

    def test_repeated_connect_keeps_the_first(self, handler, django_user_model):
        user = django_user_model.objects.create_user(username="alice")
        first = authenticate_connect_event(load_event("connect"), user)
        assert handler(first, None)["statusCode"] == 200
        again = authenticate_connect_event(load_event("connect"), user)
        again["queryStringParameters"]["channel"] = "elsewhere"
        again["multiValueQueryStringParameters"]["channel"] = ["elsewhere"]
        assert handler(again, None)["statusCode"] == 409
        assert WebSocketSession.objects.get().channel_name == "general"

    def test_message_after_disconnect_is_refused(self, handler, django_user_model):
        user = django_user_model.objects.create_user(username="alice")
        handler(authenticate_connect_event(load_event("connect"), user), None)
        handler(load_event("disconnect"), None)
        assert handler(load_event("message_who_is_here"), None)["statusCode"] == 403

    def test_repeated_disconnect_is_harmless(self, handler, django_user_model):
        user = django_user_model.objects.create_user(username="alice")
        handler(authenticate_connect_event(load_event("connect"), user), None)
        assert handler(load_event("disconnect"), None)["statusCode"] == 200
        assert handler(load_event("disconnect"), None)["statusCode"] == 200
        assert WebSocketSession.objects.get().connected is False
