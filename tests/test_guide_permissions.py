"""Testing guide: permission examples, verbatim, against the example chat's ``restricted``
handler. The connection they post from is created by the ``connected`` fixture."""

import json

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tests.seed.headers import api_gateway_headers


@pytest.fixture(autouse=True)
def connected(websocket_session):
    """The guide's examples post as connection-1 of API abc123."""
    return websocket_session


@pytest.mark.django_db
def test_user_without_permission_is_denied(django_user_model):
    user = django_user_model.objects.create_user(
        username="alice",
        password="password",
    )

    client = Client()
    client.force_login(user)

    response = client.post(
        "/ws/default",
        data=json.dumps({"action": "restricted"}),
        content_type="application/json",
        **api_gateway_headers(),
    )

    assert response.status_code in [400, 403]


@pytest.mark.django_db
def test_user_with_permission_is_allowed(django_user_model):
    user = django_user_model.objects.create_user(
        username="alice",
        password="password",
    )

    permission = Permission.objects.get(codename="can_use_chat")
    user.user_permissions.add(permission)

    client = Client()
    client.force_login(user)

    response = client.post(
        "/ws/default",
        data=json.dumps({"action": "restricted"}),
        content_type="application/json",
        **api_gateway_headers(),
    )

    assert response.status_code == 200
