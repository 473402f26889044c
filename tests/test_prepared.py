"""Prepared statements: the same rows and instances as the ORM, one statement each, any value."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F

from django_aws_api_gateway_websockets.models import WebSocketSession
from django_aws_api_gateway_websockets.prepared import MARKER, PreparedGet, PreparedUpdate

pytestmark = pytest.mark.django_db


def session_lookup() -> PreparedGet[WebSocketSession]:
    return PreparedGet(
        lambda connection_id: WebSocketSession.objects.select_related("api_gateway", "user").filter(
            connection_id=connection_id
        )
    )


@pytest.fixture
def user():
    return get_user_model().objects.create_user("prepared", password="x", first_name="Zoë")


def field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.fields}


def test_get_returns_the_orm_instance_with_related_objects_loaded(
    websocket_session, user, django_assert_num_queries
):
    websocket_session.user = user
    websocket_session.save()
    expected = WebSocketSession.objects.select_related("api_gateway", "user").get(
        connection_id="connection-1"
    )

    with django_assert_num_queries(1):
        found = session_lookup()("connection-1")
        gateway, found_user = found.api_gateway, found.user

    assert found == expected
    assert field_values(found) == field_values(expected)
    assert field_values(gateway) == field_values(expected.api_gateway)
    assert field_values(found_user) == field_values(expected.user)
    assert found.created_on.tzinfo is not None
    assert found._state.adding is False
    assert found._state.db == "default"


def test_missing_related_rows_are_none_without_a_query(
    websocket_session, django_assert_num_queries
):
    lookup = session_lookup()
    lookup("warm-up")
    with django_assert_num_queries(1):
        found = lookup("connection-1")
        assert found.user is None
    assert found.api_gateway_id == websocket_session.api_gateway_id


@pytest.mark.parametrize(
    "value", ["nobody", "connection-1' OR '1'='1", "%s", MARKER + "x", "conn-é-漢字", ""]
)
def test_get_binds_any_value_as_a_parameter(websocket_session, value):
    assert session_lookup()(value) is None


def test_the_same_lookup_serves_many_values(websocket_session, api_gateway):
    WebSocketSession.objects.create(connection_id="connection-2", api_gateway=api_gateway)
    lookup = session_lookup()
    assert lookup("connection-2").connection_id == "connection-2"
    assert lookup("connection-1").connection_id == "connection-1"
    assert lookup("connection-3") is None


def test_update_changes_only_the_matching_row_in_one_statement(
    websocket_session, api_gateway, django_assert_num_queries
):
    other = WebSocketSession.objects.create(connection_id="connection-2", api_gateway=api_gateway)
    count = PreparedUpdate(WebSocketSession, "connection_id", request_count=F("request_count") + 1)

    with django_assert_num_queries(1):
        assert count("connection-1") == 1
    assert count("connection-1") == 1
    assert count("absent") == 0

    websocket_session.refresh_from_db()
    other.refresh_from_db()
    assert (websocket_session.request_count, other.request_count) == (2, 0)


def test_update_inside_a_transaction_rolls_back_with_it(websocket_session):
    disconnect = PreparedUpdate(WebSocketSession, "connection_id", connected=False)
    with pytest.raises(RuntimeError), transaction.atomic():
        disconnect("connection-1")
        raise RuntimeError("abort")
    websocket_session.refresh_from_db()
    assert websocket_session.connected is True


def test_a_query_using_the_parameter_twice_is_refused(websocket_session):
    lookup = PreparedGet(
        lambda value: WebSocketSession.objects.filter(connection_id=value, channel_name=value)
    )
    with pytest.raises(ValueError, match="exactly once"):
        lookup("connection-1")
