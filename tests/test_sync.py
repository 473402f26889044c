# ruff: noqa: F811  (the aws fixture is imported from test_provisioning, as pytest expects)
"""syncApiGateway: Django's records are the truth; AWS (moto) is brought in line, redeployed
once, and a second run plans nothing."""

from __future__ import annotations

import io

import pytest
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command

from django_aws_api_gateway_websockets.models import ApiGateway, ApiGatewayAdditionalRoute
from django_aws_api_gateway_websockets.sync import sync_gateway
from tests.test_provisioning import (  # noqa: F401  (the aws fixture)
    aws,
    http_gateway,
    integration_uri_of_route,
    make_lambda_function,
    routes_by_key,
)

pytestmark = pytest.mark.django_db


def sync(pk: int, *args: str) -> str:
    out = io.StringIO()
    call_command("syncApiGateway", "--pk", str(pk), *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def created(aws):
    gateway = http_gateway()
    ApiGatewayAdditionalRoute.objects.create(api_gateway=gateway, name="Chat", route_key="chat")
    gateway.create_gateway()
    gateway.refresh_from_db()
    return gateway


def test_freshly_created_gateway_is_in_sync(created, aws):
    deployments = len(aws.apigw.deployments)
    assert "nothing to change" in sync(created.pk)
    assert len(aws.apigw.deployments) == deployments


def test_changed_target_endpoint_is_planned_then_applied_once(created, aws):
    created.target_base_endpoint = "https://new.example.com/socket/"
    created.save()
    plan = sync(created.pk, "--dry-run")
    assert "Would apply 4 change(s)" in plan
    assert "retarget route $connect: https://testserver/ws/connect -> " in plan
    assert integration_uri_of_route(aws.raw, created.api_id, "$connect") == (
        "https://testserver/ws/connect"
    )
    deployments = len(aws.apigw.deployments)

    applied = sync(created.pk)

    assert "Applied and deployed" in applied
    assert len(aws.apigw.deployments) == deployments + 1
    for key, name in (("$connect", "connect"), ("$default", "default"), ("chat", "chat")):
        uri = integration_uri_of_route(aws.raw, created.api_id, key)
        assert uri == f"https://new.example.com/socket/{name}"
    assert "nothing to change" in sync(created.pk)


def test_route_added_changed_and_removed_in_django(created, aws):
    ApiGatewayAdditionalRoute.objects.filter(route_key="chat").update(
        route_key="chat_v2", deployed=False
    )
    ApiGatewayAdditionalRoute.objects.bulk_create(
        [ApiGatewayAdditionalRoute(api_gateway=created, name="History", route_key="history")]
    )
    changes = sync_gateway(created)
    assert {(c.action, c.route_key) for c in changes} == {
        ("create route", "chat_v2"),
        ("create route", "history"),
        ("delete route", "chat"),
    }
    routes = routes_by_key(aws.raw, created.api_id)
    assert {"chat_v2", "history"} <= set(routes) and "chat" not in routes
    assert not ApiGatewayAdditionalRoute.objects.filter(deployed=False).exists()
    assert sync_gateway(created) == []


def test_missing_stage_is_created(created, aws):
    aws.raw.delete_stage(ApiId=created.api_id, StageName=created.stage_name)
    changes = sync_gateway(created)
    assert [str(c) for c in changes] == ["create stage: production"]
    aws.raw.get_stage(ApiId=created.api_id, StageName=created.stage_name)


def test_lambda_gateway_retargets_to_a_new_function(aws):
    first = make_lambda_function(aws.real_get_client, "first")
    second = make_lambda_function(aws.real_get_client, "second")
    gateway = ApiGateway.objects.create(api_name="L", lambda_function_arn=first)
    gateway.create_gateway()
    gateway.lambda_function_arn = second
    gateway.save()
    changes = sync_gateway(gateway)
    assert {c.action for c in changes} == {"retarget route"} and len(changes) == 3
    assert second in integration_uri_of_route(aws.raw, gateway.api_id, "$default")
    assert sync_gateway(gateway) == []


def test_not_created_gateway_is_a_clear_error(aws):
    gateway = http_gateway()
    with pytest.raises(CommandError, match="createApiGateway first"):
        sync(gateway.pk)


def test_aws_failure_is_a_clear_error(created, aws):
    created.target_base_endpoint = "https://other.example.com/"
    created.save()
    aws.apigw.fail_next("update_route", "BadRequestException", "nope")
    with pytest.raises(CommandError, match="Could not sync"):
        sync(created.pk)


def test_admin_action_and_change_warning(created, aws, admin_client):
    response = admin_client.post(
        "/admin/django_aws_api_gateway_websockets/apigateway/",
        {"action": "sync_action", "_selected_action": [created.pk]},
        follow=True,
    )
    assert "already in sync" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    url = f"/admin/django_aws_api_gateway_websockets/apigateway/{created.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form.initial.get(name, "") for name in form.fields}
    data.update(
        target_base_endpoint="https://moved.example.com/ws/",
        tags="{}",
        **{
            "additional_routes-TOTAL_FORMS": "1",
            "additional_routes-INITIAL_FORMS": "1",
            "additional_routes-MIN_NUM_FORMS": "0",
            "additional_routes-MAX_NUM_FORMS": "1000",
            "additional_routes-0-id": str(created.additional_routes.get().pk),
            "additional_routes-0-api_gateway": str(created.pk),
            "additional_routes-0-name": "Chat",
            "additional_routes-0-route_key": "chat",
            "additional_routes-0-integration_url": "",
        },
    )
    response = admin_client.post(url, data, follow=True)
    messages_text = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "Sync routes and integrations with AWS" in messages_text


def test_change_whose_deployment_failed_is_redeployed_by_the_next_run(created, aws):
    ApiGatewayAdditionalRoute.objects.bulk_create(
        [ApiGatewayAdditionalRoute(api_gateway=created, name="History", route_key="history")]
    )
    aws.apigw.fail_next("create_deployment", "TooManyRequestsException", "slow down")
    with pytest.raises(CommandError, match="Could not sync"):
        sync(created.pk)
    assert "history" in routes_by_key(aws.raw, created.api_id)  # created, not deployed
    deployments = len(aws.apigw.deployments)

    plan = sync(created.pk, "--dry-run")

    assert "nothing to change" not in plan
    assert "deploy stage: the stage serves deployment deployment1" in plan
    applied = sync(created.pk)
    assert "Applied and deployed" in applied
    assert len(aws.apigw.deployments) == deployments + 1
    assert "nothing to change" in sync(created.pk)


def test_route_created_by_a_failed_save_deploy_is_drift(created, aws):
    route = ApiGatewayAdditionalRoute(api_gateway=created, name="History", route_key="history")
    aws.apigw.fail_next("create_deployment", "BadRequestException", "nope")
    with pytest.raises(Exception, match="Could not create route"):
        route.save()
    route = ApiGatewayAdditionalRoute.objects.get(route_key="history")
    assert route.deployed is False and "history" in routes_by_key(aws.raw, created.api_id)

    changes = sync_gateway(created)

    assert [str(c) for c in changes] == ["deploy route history: created but never deployed"]
    route.refresh_from_db()
    assert route.deployed is True
    assert sync_gateway(created) == []


def test_stage_that_was_never_deployed_is_drift(created, aws):
    aws.apigw.deployed.clear()
    changes = sync_gateway(created)
    assert [str(c) for c in changes] == ["deploy stage: the stage has never been deployed"]
    assert sync_gateway(created) == []


def test_half_created_gateway_is_never_in_sync(aws):
    gateway = http_gateway()
    aws.apigw.fail_next("create_deployment", "BadRequestException", "nope")
    with pytest.raises(Exception, match="Could not deploy the stage"):
        gateway.create_gateway()
    gateway.refresh_from_db()
    assert gateway.api_id and not gateway.api_created
    with pytest.raises(CommandError, match="did not finish.*run createApiGateway --pk"):
        sync(gateway.pk, "--dry-run")
