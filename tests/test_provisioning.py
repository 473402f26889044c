"""Gateway provisioning: ``ApiGateway.create_gateway()``, additional routes, custom domains.

AWS is reached only through moto's ``mock_aws`` or through a ``Mock`` returned by patching
``django_aws_api_gateway_websockets.models.get_boto3_client``.

moto 5.2.5 gaps, filled by ``MotoApiGatewayClient`` (everything else is moto's own behaviour):
``create_deployment`` answers 404 (so ``get_stage`` lacks the ``DeploymentId`` it serves), and
``create_domain_name`` does not return the
``ApiGatewayDomainName``/``HostedZoneId`` output fields that AWS always returns.
"""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any
from unittest.mock import Mock, patch

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.exceptions import ImproperlyConfigured, ValidationError
from moto import mock_aws

from django_aws_api_gateway_websockets import models
from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    ApiGatewayAdditionalRoute,
    get_boto3_client,
    get_region_name,
)
from django_aws_api_gateway_websockets.provisioning import GatewayProvisioningError

REGION = "us-east-1"
PATCH_TARGET = "django_aws_api_gateway_websockets.models.get_boto3_client"
CERTIFICATE_ARN = "arn:aws:acm:us-east-1:123456789012:certificate/0f7a-test"


def client_error(code: str, message: str = "injected", operation: str = "Operation"):
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class MotoApiGatewayClient:
    """moto's apigatewayv2 client with ``create_deployment`` (moto: 404) and injectable failures."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.deployments: list[dict[str, Any]] = []
        self.deployed: dict[tuple[str, str], str] = {}  # (api, stage) -> deployment it serves
        self.calls: list[str] = []
        self.responses: dict[str, list[Any]] = {}
        self._failures: dict[str, ClientError] = {}

    def fail_next(self, operation: str, code: str, message: str = "injected") -> None:
        """Make the next call of ``operation`` raise a ClientError, as AWS would."""
        self._failures[operation] = client_error(code, message, operation)

    def __getattr__(self, name: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append(name)
            if name in self._failures:
                raise self._failures.pop(name)
            if name == "create_deployment":
                return self._create_deployment(**kwargs)
            response = getattr(self.client, name)(**kwargs)
            if name == "get_stage":
                # AWS reports the deployment a stage serves; moto has no deployments.
                deployed = self.deployed.get((kwargs["ApiId"], kwargs["StageName"]))
                if deployed:
                    response["DeploymentId"] = deployed
            if name == "create_domain_name":
                configuration = response["DomainNameConfigurations"][0]
                configuration.setdefault(
                    "ApiGatewayDomainName", "d-abc123.execute-api.amazonaws.com"
                )
                configuration.setdefault("HostedZoneId", "Z1UJRXOUMOOFQ8")
            self.responses.setdefault(name, []).append(response)
            return response

        return call

    def _create_deployment(self, **kwargs: Any) -> dict[str, Any]:
        # A deployment of a stage that does not exist fails, as in AWS.
        self.client.get_stage(ApiId=kwargs["ApiId"], StageName=kwargs["StageName"])
        self.deployments.append(kwargs)
        deployment_id = f"deployment{len(self.deployments)}"
        self.deployed[(kwargs["ApiId"], kwargs["StageName"])] = deployment_id
        return {"DeploymentId": deployment_id}

    def count(self, name: str) -> int:
        return self.calls.count(name)


@contextmanager
def moto_aws():
    """moto for every service; ``models.get_boto3_client`` hands out the wrapped apigatewayv2."""
    with mock_aws():
        real_get_client = models.get_boto3_client
        apigw = MotoApiGatewayClient(real_get_client("apigatewayv2"))

        def get_client(service: str = "apigatewayv2", **kwargs: Any) -> Any:
            if service == "apigatewayv2":
                return apigw
            return real_get_client(service, **kwargs)

        with patch(PATCH_TARGET, side_effect=get_client) as patched:
            yield SimpleNamespace(
                apigw=apigw,
                raw=apigw.client,
                get_client=patched,
                real_get_client=real_get_client,
            )


@pytest.fixture
def aws(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    with moto_aws() as fake:
        yield fake


def make_lambda_function(real_get_client: Any, name: str = "websocket-handler") -> str:
    iam = real_get_client("iam")
    role_arn = iam.create_role(
        RoleName=f"{name}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    function = real_get_client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role_arn,
        Handler="handler.handler",
        Code={"ZipFile": archive.getvalue()},
    )
    return function["FunctionArn"]


def routes_by_key(raw: Any, api_id: str) -> dict[str, dict[str, Any]]:
    return {item["RouteKey"]: item for item in raw.get_routes(ApiId=api_id)["Items"]}


def integrations_by_id(raw: Any, api_id: str) -> dict[str, dict[str, Any]]:
    return {item["IntegrationId"]: item for item in raw.get_integrations(ApiId=api_id)["Items"]}


def integration_uri_of_route(raw: Any, api_id: str, route_key: str) -> str:
    target = routes_by_key(raw, api_id)[route_key]["Target"]
    assert target.startswith("integrations/")
    return integrations_by_id(raw, api_id)[target.removeprefix("integrations/")]["IntegrationUri"]


def http_gateway(**overrides: Any) -> ApiGateway:
    fields = {
        "api_name": "Chat",
        "api_description": "Chat sockets",
        "target_base_endpoint": "https://testserver/ws/",
        "stage_name": "production",
        "tags": {"env": "test", "team": 7},
    }
    fields.update(overrides)
    return ApiGateway.objects.create(**fields)


def mock_apigw_client(api_id: str = "api123") -> Mock:
    """A Mock apigatewayv2 client whose create_* calls answer like AWS."""
    client = Mock(name="apigatewayv2")
    client.create_api.return_value = {
        "ApiId": api_id,
        "ApiEndpoint": f"wss://{api_id}.execute-api.{REGION}.amazonaws.com",
    }
    client.create_integration.side_effect = lambda **kw: {
        "IntegrationId": "int-" + kw["IntegrationUri"].rsplit("/", 1)[-1]
    }
    client.create_route.side_effect = lambda **kw: {"RouteId": "route-" + kw["RouteKey"]}
    client.create_route_response.return_value = {"RouteResponseId": "rr"}
    client.create_stage.return_value = {"StageName": "production"}
    client.create_deployment.return_value = {"DeploymentId": "dep-1"}
    client.get_routes.return_value = {"Items": []}
    client.get_integrations.return_value = {"Items": []}
    return client


# ---------------------------------------------------------------------------------------------
# create_gateway against moto
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_gateway_http_integration_against_moto(aws):
    gateway = http_gateway()

    gateway.create_gateway()

    gateway.refresh_from_db()
    assert gateway.api_created is True
    assert gateway.api_id
    assert gateway.api_endpoint == f"https://{gateway.api_id}.execute-api.{REGION}.amazonaws.com"
    assert gateway.deployment_id == "deployment1"

    api = aws.raw.get_api(ApiId=gateway.api_id)
    assert api["Name"] == "Chat"
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    assert api["ApiKeySelectionExpression"] == "$request.header.x-api-key"
    assert api["Description"] == "Chat sockets"
    assert api["Tags"] == {"env": "test", "team": "7"}

    routes = routes_by_key(aws.raw, gateway.api_id)
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    for route_key, name in (
        ("$connect", "connect"),
        ("$disconnect", "disconnect"),
        ("$default", "default"),
    ):
        assert (
            integration_uri_of_route(aws.raw, gateway.api_id, route_key)
            == f"https://testserver/ws/{name}"
        )
    for integration in integrations_by_id(aws.raw, gateway.api_id).values():
        assert integration["IntegrationType"] == "HTTP_PROXY"
        assert integration["IntegrationMethod"] == "POST"
        # The HTTP backend only learns the connection id through this mapping.
        assert integration["RequestParameters"] == {
            "integration.request.header.connectionId": "context.connectionId"
        }

    # Only the two-way $default route sends the view's response back to the client.
    assert routes["$default"]["RouteResponseSelectionExpression"] == "$default"
    assert "RouteResponseSelectionExpression" not in routes["$connect"]
    [route_response] = aws.apigw.responses["create_route_response"]
    stored = aws.raw.get_route_response(
        ApiId=gateway.api_id,
        RouteId=routes["$default"]["RouteId"],
        RouteResponseId=route_response["RouteResponseId"],
    )
    assert stored["RouteResponseKey"] == "$default"

    aws.raw.get_stage(ApiId=gateway.api_id, StageName="production")
    assert aws.apigw.deployments == [
        {
            "ApiId": gateway.api_id,
            "StageName": "production",
            "Description": "Deployment of Chat",
        }
    ]


@pytest.mark.django_db
def test_create_gateway_lambda_integration_against_moto(aws):
    function_arn = make_lambda_function(aws.real_get_client)
    gateway = ApiGateway.objects.create(api_name="Lambda chat", lambda_function_arn=function_arn)

    gateway.create_gateway()

    gateway.refresh_from_db()
    assert gateway.api_created is True
    integrations = list(integrations_by_id(aws.raw, gateway.api_id).values())
    # One AWS_PROXY integration serves every route.
    assert len(integrations) == 1
    assert integrations[0]["IntegrationType"] == "AWS_PROXY"
    assert integrations[0]["IntegrationUri"] == (
        f"arn:aws:apigateway:{REGION}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )
    assert "RequestParameters" not in integrations[0] or not integrations[0]["RequestParameters"]
    routes = routes_by_key(aws.raw, gateway.api_id)
    assert set(routes) == {"$connect", "$disconnect", "$default"}
    assert {r["Target"] for r in routes.values()} == {
        f"integrations/{integrations[0]['IntegrationId']}"
    }

    policy = json.loads(
        aws.real_get_client("lambda").get_policy(FunctionName="websocket-handler")["Policy"]
    )
    [statement] = policy["Statement"]
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
    assert statement["Sid"] == f"apigateway-websocket-{gateway.api_id}"
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == (
        f"arn:aws:execute-api:{REGION}:123456789012:{gateway.api_id}/*"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("target", ["https://x/ws", "https://x/ws/"])
def test_created_integration_urls_have_no_double_slash(aws, target):
    gateway = http_gateway(target_base_endpoint=target)
    assert gateway.target_base_endpoint == "https://x/ws/"
    ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway, name="Chat message", route_key="chat_message"
    )

    gateway.create_gateway()

    uris = {
        key: integration_uri_of_route(aws.raw, gateway.api_id, key)
        for key in ("$connect", "$disconnect", "$default", "chat_message")
    }
    assert uris == {
        "$connect": "https://x/ws/connect",
        "$disconnect": "https://x/ws/disconnect",
        "$default": "https://x/ws/default",
        "chat_message": "https://x/ws/chat_message",
    }


@pytest.mark.django_db
def test_failed_step_leaves_api_not_created_and_rerun_resumes_against_moto(aws):
    gateway = http_gateway()
    aws.apigw.fail_next("create_stage", "TooManyRequestsException", "Rate exceeded")

    with pytest.raises(GatewayProvisioningError) as excinfo:
        gateway.create_gateway()

    message = str(excinfo.value)
    assert "create the stage" in message
    assert "TooManyRequestsException: Rate exceeded" in message
    gateway.refresh_from_db()
    assert gateway.api_created is False
    assert gateway.api_id  # kept, so that the next run resumes with the same API
    assert gateway.deployment_id == ""

    gateway.create_gateway()

    gateway.refresh_from_db()
    assert gateway.api_created is True
    assert aws.apigw.count("create_api") == 1
    assert len(aws.raw.get_apis()["Items"]) == 1
    # Routes and integrations made by the first run were reused, not duplicated.
    assert len(aws.raw.get_routes(ApiId=gateway.api_id)["Items"]) == 3
    assert len(aws.raw.get_integrations(ApiId=gateway.api_id)["Items"]) == 3
    assert gateway.deployment_id == "deployment1"


@pytest.mark.django_db
def test_unimplemented_deployment_in_moto_reports_clearly_and_keeps_api_not_created(settings):
    """moto's own 404 for create_deployment: a real failing AWS answer, reported, not hidden."""
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = http_gateway()
    with mock_aws():
        raw = models.get_boto3_client("apigatewayv2")
        with patch(PATCH_TARGET, return_value=raw):
            with pytest.raises(GatewayProvisioningError, match="deploy the stage") as excinfo:
                gateway.create_gateway()
            assert "run it again" in str(excinfo.value)
            gateway.refresh_from_db()
            assert gateway.api_created is False
            assert gateway.deployment_id == ""
            assert len(raw.get_apis()["Items"]) == 1

        wrapped = MotoApiGatewayClient(raw)
        with patch(PATCH_TARGET, return_value=wrapped):
            gateway.create_gateway()
        gateway.refresh_from_db()
        assert gateway.api_created is True
        assert wrapped.count("create_api") == 0
        assert len(raw.get_apis()["Items"]) == 1


@pytest.mark.django_db
def test_failure_creating_the_api_stores_nothing_and_rerun_creates_it(aws):
    gateway = http_gateway()
    aws.apigw.fail_next("create_api", "AccessDeniedException", "not allowed")

    with pytest.raises(GatewayProvisioningError, match="create the API.*AccessDeniedException"):
        gateway.create_gateway()

    gateway.refresh_from_db()
    assert (gateway.api_id, gateway.api_created) == ("", False)
    assert aws.raw.get_apis()["Items"] == []

    gateway.create_gateway()
    gateway.refresh_from_db()
    assert gateway.api_created is True
    assert len(aws.raw.get_apis()["Items"]) == 1


@pytest.mark.django_db
def test_routes_created_by_create_gateway_are_marked_deployed_and_not_recreated(aws):
    gateway = http_gateway()
    route = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway, name="Chat message", route_key="chat_message"
    )
    assert aws.apigw.calls == []  # the gateway is not created yet: nothing happens in AWS

    gateway.create_gateway()

    route.refresh_from_db()
    assert route.deployed is True
    assert "chat_message" in routes_by_key(aws.raw, gateway.api_id)
    calls_before = list(aws.apigw.calls)

    route.name = "Renamed"
    route.save()

    assert aws.apigw.calls == calls_before
    assert len(aws.raw.get_routes(ApiId=gateway.api_id)["Items"]) == 4


@pytest.mark.django_db
def test_new_route_on_created_gateway_is_created_and_deployment_id_saved(aws):
    gateway = http_gateway()
    gateway.create_gateway()
    assert ApiGateway.objects.get(pk=gateway.pk).deployment_id == "deployment1"

    route = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=ApiGateway.objects.get(pk=gateway.pk),
        name="History",
        route_key="fetch_history",
    )

    assert integration_uri_of_route(aws.raw, gateway.api_id, "fetch_history") == (
        "https://testserver/ws/fetch_history"
    )
    assert ApiGateway.objects.get(pk=gateway.pk).deployment_id == "deployment2"
    assert ApiGatewayAdditionalRoute.objects.get(pk=route.pk).deployed is True
    assert aws.apigw.deployments[-1]["StageName"] == "production"
    # The message route answers through a route response like $default does.
    new_route = routes_by_key(aws.raw, gateway.api_id)["fetch_history"]
    assert new_route["RouteResponseSelectionExpression"] == "$default"


@pytest.mark.django_db
def test_new_route_with_explicit_integration_url_uses_it(aws):
    gateway = http_gateway()
    gateway.create_gateway()

    ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway,
        name="Elsewhere",
        route_key="elsewhere",
        integration_url="https://other.example.com/hooks/elsewhere",
    )

    assert integration_uri_of_route(aws.raw, gateway.api_id, "elsewhere") == (
        "https://other.example.com/hooks/elsewhere"
    )


@pytest.mark.django_db
def test_new_route_on_lambda_gateway_targets_the_function(aws):
    function_arn = make_lambda_function(aws.real_get_client)
    gateway = ApiGateway.objects.create(api_name="Lambda chat", lambda_function_arn=function_arn)
    gateway.create_gateway()

    ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway, name="Chat", route_key="chat_message"
    )

    uri = integration_uri_of_route(aws.raw, gateway.api_id, "chat_message")
    assert uri.endswith(f"/functions/{function_arn}/invocations")


# ---------------------------------------------------------------------------------------------
# create_gateway with a Mock client
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_gateway_with_mock_client_makes_the_expected_calls(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = http_gateway(stage_description="First stage")
    client = mock_apigw_client()

    with patch(PATCH_TARGET, return_value=client) as get_client:
        gateway.create_gateway()

    get_client.assert_called_once_with("apigatewayv2")  # no Lambda client for HTTP gateways
    client.create_api.assert_called_once_with(
        Name="Chat",
        ProtocolType="WEBSOCKET",
        RouteSelectionExpression="$request.body.action",
        ApiKeySelectionExpression="$request.header.x-api-key",
        Description="Chat sockets",
        Tags={"env": "test", "team": "7"},
    )
    integration_uris = [
        c.kwargs["IntegrationUri"] for c in client.create_integration.call_args_list
    ]
    assert sorted(integration_uris) == [
        "https://testserver/ws/connect",
        "https://testserver/ws/default",
        "https://testserver/ws/disconnect",
    ]
    for call in client.create_integration.call_args_list:
        assert call.kwargs["ApiId"] == "api123"
        assert call.kwargs["IntegrationType"] == "HTTP_PROXY"
    routes = {c.kwargs["RouteKey"]: c.kwargs for c in client.create_route.call_args_list}
    assert routes["$connect"]["Target"] == "integrations/int-connect"
    assert routes["$disconnect"]["Target"] == "integrations/int-disconnect"
    assert routes["$default"]["Target"] == "integrations/int-default"
    client.create_route_response.assert_called_once_with(
        ApiId="api123", RouteId="route-$default", RouteResponseKey="$default"
    )
    client.create_stage.assert_called_once_with(
        ApiId="api123", StageName="production", Description="First stage"
    )
    client.create_deployment.assert_called_once_with(
        ApiId="api123", StageName="production", Description="First stage"
    )
    client.get_routes.assert_not_called()

    gateway.refresh_from_db()
    assert gateway.api_id == "api123"
    assert gateway.api_endpoint == "wss://api123.execute-api.us-east-1.amazonaws.com"
    assert gateway.deployment_id == "dep-1"
    assert gateway.api_created is True


@pytest.mark.django_db
def test_create_gateway_uses_the_custom_route_key_and_stage(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = http_gateway(route_key="$catchall", stage_name="dev")
    client = mock_apigw_client()

    with patch(PATCH_TARGET, return_value=client):
        gateway.create_gateway()

    route_keys = {c.kwargs["RouteKey"] for c in client.create_route.call_args_list}
    assert route_keys == {"$connect", "$disconnect", "$catchall"}
    assert client.create_stage.call_args.kwargs["StageName"] == "dev"
    assert client.create_deployment.call_args.kwargs["StageName"] == "dev"


@pytest.mark.django_db
def test_create_gateway_lambda_with_mock_clients_adds_invoke_permission(settings):
    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    arn = "arn:aws:lambda:eu-west-1:111122223333:function:chat"
    gateway = ApiGateway.objects.create(api_name="L", lambda_function_arn=arn)
    apigw = mock_apigw_client("lam1")
    lambda_client = Mock(name="lambda")
    clients = {"apigatewayv2": apigw, "lambda": lambda_client}

    with patch(PATCH_TARGET, side_effect=lambda service="apigatewayv2", **kw: clients[service]):
        gateway.create_gateway()

    assert apigw.create_integration.call_count == 1
    assert apigw.create_integration.call_args.kwargs["IntegrationType"] == "AWS_PROXY"
    assert apigw.create_integration.call_args.kwargs["IntegrationUri"] == (
        f"arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/{arn}/invocations"
    )
    lambda_client.add_permission.assert_called_once_with(
        FunctionName=arn,
        StatementId="apigateway-websocket-lam1",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn="arn:aws:execute-api:eu-west-1:111122223333:lam1/*",
    )
    gateway.refresh_from_db()
    assert gateway.api_created is True


@pytest.mark.django_db
def test_existing_invoke_permission_is_not_an_error_but_other_lambda_errors_are(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    arn = "arn:aws:lambda:us-east-1:111122223333:function:chat"
    apigw = mock_apigw_client()
    lambda_client = Mock(name="lambda")
    clients = {"apigatewayv2": apigw, "lambda": lambda_client}
    get_client = patch(
        PATCH_TARGET, side_effect=lambda service="apigatewayv2", **kw: clients[service]
    )

    lambda_client.add_permission.side_effect = client_error("ResourceConflictException", "exists")
    first = ApiGateway.objects.create(api_name="L1", lambda_function_arn=arn)
    with get_client:
        first.create_gateway()
    first.refresh_from_db()
    assert first.api_created is True

    lambda_client.add_permission.side_effect = client_error("AccessDeniedException", "no")
    second = ApiGateway.objects.create(api_name="L2", lambda_function_arn=arn)
    with get_client, pytest.raises(GatewayProvisioningError, match="invoke the function"):
        second.create_gateway()
    second.refresh_from_db()
    assert second.api_created is False
    assert second.deployment_id == ""


@pytest.mark.django_db
def test_resume_with_mock_client_creates_only_what_is_missing(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = http_gateway(api_id="api123", api_endpoint="wss://api123.example")
    client = mock_apigw_client()
    # Two pages of routes: the pagination token is followed.
    client.get_routes.side_effect = [
        {"Items": [{"RouteKey": "$connect", "RouteId": "r1"}], "NextToken": "page2"},
        {"Items": [{"RouteKey": "$disconnect", "RouteId": "r2"}]},
    ]
    client.get_integrations.return_value = {
        "Items": [{"IntegrationUri": "https://testserver/ws/default", "IntegrationId": "i3"}]
    }
    client.get_stage.return_value = {"StageName": "production"}

    with patch(PATCH_TARGET, return_value=client):
        gateway.create_gateway()

    client.create_api.assert_not_called()
    assert client.get_routes.call_args_list[1].kwargs == {"ApiId": "api123", "NextToken": "page2"}
    # Only $default was missing; its integration already existed and is reused.
    client.create_integration.assert_not_called()
    client.create_route.assert_called_once()
    assert client.create_route.call_args.kwargs["RouteKey"] == "$default"
    assert client.create_route.call_args.kwargs["Target"] == "integrations/i3"
    client.create_stage.assert_not_called()
    client.create_deployment.assert_called_once()
    gateway.refresh_from_db()
    assert gateway.api_created is True
    assert gateway.api_endpoint == "wss://api123.example"


@pytest.mark.django_db
def test_resume_creates_a_missing_stage_but_surfaces_other_stage_errors(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = http_gateway(api_id="api123")
    client = mock_apigw_client()
    client.get_stage.side_effect = client_error("NotFoundException", "Invalid stage identifier")
    with patch(PATCH_TARGET, return_value=client):
        gateway.create_gateway()
    client.create_stage.assert_called_once()

    other = http_gateway(api_name="Other", api_id="api999")
    client = mock_apigw_client()
    client.get_stage.side_effect = client_error("AccessDeniedException", "no")
    with (
        patch(PATCH_TARGET, return_value=client),
        pytest.raises(GatewayProvisioningError, match="stage.*AccessDeniedException"),
    ):
        other.create_gateway()
    client.create_stage.assert_not_called()
    other.refresh_from_db()
    assert other.api_created is False


@pytest.mark.django_db
def test_created_gateway_is_a_logged_no_op_without_aws(settings, caplog):
    """As in the original package: a second create_gateway() returns None and calls nothing."""
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = http_gateway(api_id="api123", api_created=True, deployment_id="dep-1")
    caplog.set_level("INFO", logger="django_aws_api_gateway_websockets.provisioning")

    with patch(PATCH_TARGET) as get_client:
        assert gateway.create_gateway() is None

    get_client.assert_not_called()
    [record] = [r for r in caplog.records if r.name.endswith(".provisioning")]
    assert record.levelname == "INFO"
    assert "Chat" in record.getMessage() and "already created" in record.getMessage()
    gateway.refresh_from_db()
    assert (gateway.api_id, gateway.deployment_id, gateway.api_created) == (
        "api123",
        "dep-1",
        True,
    )


def without_region(settings: Any) -> None:
    """A project that configured no region at all (the testing guide's test settings)."""
    for name in ("AWS_GATEWAY_REGION_NAME", "AWS_REGION_NAME"):
        if hasattr(settings, name):
            delattr(settings, name)


@pytest.mark.django_db
def test_lambda_integration_without_region_says_which_setting_is_missing(settings):
    """The Lambda integration URI and invoke permission do need the region: a clear error
    before anything is created."""
    without_region(settings)
    function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:ws"
    gateway = http_gateway(target_base_endpoint="", lambda_function_arn=function_arn)

    client = mock_apigw_client()
    with (
        patch(PATCH_TARGET, return_value=client),
        pytest.raises(GatewayProvisioningError, match="connect to AWS.*AWS_GATEWAY_REGION_NAME"),
    ):
        gateway.create_gateway()
    client.create_api.assert_not_called()  # nothing half-made in AWS
    gateway.refresh_from_db()
    assert (gateway.api_id, gateway.api_created) == ("", False)


@pytest.mark.django_db
def test_gateway_without_target_saves_and_creation_explains_what_is_missing(settings):
    settings.AWS_GATEWAY_REGION_NAME = REGION
    gateway = ApiGateway.objects.create(api_name="No target yet")
    gateway.full_clean()
    gateway.refresh_from_db()
    assert gateway.target_base_endpoint == ""

    with (
        patch(PATCH_TARGET) as get_client,
        pytest.raises(GatewayProvisioningError) as excinfo,
    ):
        gateway.create_gateway()
    assert "target_base_endpoint" in str(excinfo.value)
    assert "lambda_function_arn" in str(excinfo.value)
    get_client.assert_not_called()


@pytest.mark.django_db
def test_missing_profile_is_reported_as_a_provisioning_error(settings):
    """A misconfigured AWS_IAM_PROFILE fails while creating the client: report it clearly."""
    settings.AWS_GATEWAY_REGION_NAME = REGION
    settings.AWS_IAM_PROFILE = "no-such-profile-anywhere"
    gateway = http_gateway()

    with pytest.raises(GatewayProvisioningError, match="no-such-profile-anywhere"):
        gateway.create_gateway()
    gateway.refresh_from_db()
    assert gateway.api_created is False


@pytest.mark.django_db
def test_missing_region_is_reported_as_a_provisioning_error(settings):
    settings.AWS_GATEWAY_REGION_NAME = ""
    settings.AWS_REGION_NAME = ""
    gateway = http_gateway()

    with pytest.raises(GatewayProvisioningError, match="AWS_GATEWAY_REGION_NAME"):
        gateway.create_gateway()
    gateway.refresh_from_db()
    assert (gateway.api_id, gateway.api_created) == ("", False)


@pytest.mark.django_db
def test_deploy_api_stores_the_new_deployment_id(api_gateway):
    client = Mock()
    client.create_deployment.return_value = {"DeploymentId": "d-42"}

    assert api_gateway.deploy_api(client) == "d-42"

    client.create_deployment.assert_called_once_with(
        ApiId="abc123", StageName="test", Description="Deployment of Test API"
    )
    assert ApiGateway.objects.get(pk=api_gateway.pk).deployment_id == "d-42"


# ---------------------------------------------------------------------------------------------
# Additional routes with a Mock client
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_route_of_uncreated_gateway_is_only_saved(settings):
    gateway = http_gateway()
    with patch(PATCH_TARGET) as get_client:
        route = ApiGatewayAdditionalRoute.objects.create(
            api_gateway=gateway, name="Chat", route_key="chat_message"
        )
    get_client.assert_not_called()
    route.refresh_from_db()
    assert route.deployed is False


@pytest.mark.django_db
def test_route_save_failure_surfaces_and_leaves_route_undeployed(api_gateway):
    client = mock_apigw_client()
    client.create_route.side_effect = client_error("BadRequestException", "bad route key")

    with (
        patch(PATCH_TARGET, return_value=client),
        pytest.raises(GatewayProvisioningError, match="chat_message.*BadRequestException"),
    ):
        ApiGatewayAdditionalRoute.objects.create(
            api_gateway=api_gateway, name="Chat", route_key="chat_message"
        )

    route = ApiGatewayAdditionalRoute.objects.get(route_key="chat_message")
    assert route.deployed is False
    client.create_deployment.assert_not_called()
    assert ApiGateway.objects.get(pk=api_gateway.pk).deployment_id == ""


@pytest.mark.django_db
def test_route_that_already_exists_in_aws_is_reused_and_deployed(api_gateway):
    client = mock_apigw_client()
    client.create_route.side_effect = client_error("ConflictException", "route exists")
    client.create_deployment.return_value = {"DeploymentId": "dep-7"}

    with patch(PATCH_TARGET, return_value=client):
        route = ApiGatewayAdditionalRoute.objects.create(
            api_gateway=api_gateway, name="Chat", route_key="chat_message"
        )

    client.create_deployment.assert_called_once()
    assert ApiGatewayAdditionalRoute.objects.get(pk=route.pk).deployed is True
    assert ApiGateway.objects.get(pk=api_gateway.pk).deployment_id == "dep-7"


@pytest.mark.django_db
def test_create_route_without_deploy_does_not_deploy(api_gateway):
    route = ApiGatewayAdditionalRoute(api_gateway=api_gateway, name="x", route_key="x_route")
    ApiGatewayAdditionalRoute.objects.bulk_create([route])  # bypasses save(): no AWS call
    route = ApiGatewayAdditionalRoute.objects.get(route_key="x_route")
    client = mock_apigw_client()

    route.create_route(client, deploy=False)

    assert client.create_route.call_args.kwargs["RouteKey"] == "x_route"
    client.create_deployment.assert_not_called()
    assert ApiGatewayAdditionalRoute.objects.get(pk=route.pk).deployed is False


@pytest.mark.django_db
def test_create_route_on_gateway_without_api_id_is_refused():
    gateway = http_gateway()
    route = ApiGatewayAdditionalRoute.objects.create(
        api_gateway=gateway, name="Chat", route_key="chat_message"
    )
    client = mock_apigw_client()
    with pytest.raises(GatewayProvisioningError, match="not been created"):
        route.create_route(client)
    client.create_route.assert_not_called()


# ---------------------------------------------------------------------------------------------
# Custom domains
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_custom_domain_against_moto(aws):
    gateway = http_gateway(domain_name="ws.example.com", certificate_arn=CERTIFICATE_ARN)
    gateway.create_gateway()

    gateway.create_custom_domain()

    gateway.refresh_from_db()
    assert gateway.custom_domain_created is True
    assert gateway.api_gateway_domain_name == "d-abc123.execute-api.amazonaws.com"
    assert gateway.hosted_zone_id == "Z1UJRXOUMOOFQ8"
    domain = aws.raw.get_domain_name(DomainName="ws.example.com")
    assert domain["DomainNameConfigurations"][0]["CertificateArn"] == CERTIFICATE_ARN
    [mapping] = aws.raw.get_api_mappings(DomainName="ws.example.com")["Items"]
    assert gateway.api_mapping_id == mapping["ApiMappingId"]
    assert mapping["ApiId"] == gateway.api_id
    assert mapping["Stage"] == "production"


@pytest.mark.django_db
def test_custom_domain_before_gateway_is_created_fails_clearly(settings):
    gateway = http_gateway(domain_name="ws.example.com", certificate_arn=CERTIFICATE_ARN)
    with (
        patch(PATCH_TARGET) as get_client,
        pytest.raises(GatewayProvisioningError, match="before its custom domain"),
    ):
        gateway.create_custom_domain()
    get_client.assert_not_called()
    gateway.refresh_from_db()
    assert gateway.custom_domain_created is False


@pytest.mark.django_db
def test_created_custom_domain_is_a_logged_no_op_without_aws(api_gateway, caplog):
    api_gateway.domain_name = "ws.example.com"
    api_gateway.certificate_arn = CERTIFICATE_ARN
    api_gateway.api_mapping_id = "map-1"
    api_gateway.custom_domain_created = True
    api_gateway.save()
    caplog.set_level("INFO", logger="django_aws_api_gateway_websockets.provisioning")

    with patch(PATCH_TARGET) as get_client:
        assert api_gateway.create_custom_domain() is None

    get_client.assert_not_called()
    [record] = [r for r in caplog.records if r.name.endswith(".provisioning")]
    assert "ws.example.com" in record.getMessage()
    assert "already created" in record.getMessage()
    assert ApiGateway.objects.get(pk=api_gateway.pk).api_mapping_id == "map-1"


@pytest.mark.django_db
def test_unready_records_raise_value_error_as_the_original_did(api_gateway):
    """Code written against the original catches ValueError for these preconditions."""
    not_created = http_gateway(domain_name="ws.example.com", certificate_arn=CERTIFICATE_ARN)
    no_certificate = api_gateway
    no_certificate.domain_name = "ws.example.com"
    no_target = ApiGateway.objects.create(api_name="No target")

    with patch(PATCH_TARGET) as get_client:
        with pytest.raises(ValueError, match="before its custom domain"):
            not_created.create_custom_domain()
        with pytest.raises(ValueError, match="certificate_arn"):
            no_certificate.create_custom_domain()
        with pytest.raises(ValueError, match="target_base_endpoint"):
            no_target.create_gateway()
    get_client.assert_not_called()


@pytest.mark.django_db
def test_custom_domain_needs_domain_and_certificate(api_gateway):
    api_gateway.domain_name = "ws.example.com"
    with (
        patch(PATCH_TARGET) as get_client,
        pytest.raises(GatewayProvisioningError, match="certificate_arn"),
    ):
        api_gateway.create_custom_domain()
    get_client.assert_not_called()


@pytest.mark.django_db
def test_custom_domain_with_missing_profile_is_reported_clearly(api_gateway, settings):
    settings.AWS_IAM_PROFILE = "no-such-profile-anywhere"
    api_gateway.domain_name = "ws.example.com"
    api_gateway.certificate_arn = CERTIFICATE_ARN

    with pytest.raises(GatewayProvisioningError, match="connect to AWS.*no-such-profile"):
        api_gateway.create_custom_domain()
    assert ApiGateway.objects.get(pk=api_gateway.pk).custom_domain_created is False


@pytest.mark.django_db
def test_custom_domain_mapping_failure_then_resume(api_gateway):
    api_gateway.domain_name = "ws.example.com"
    api_gateway.certificate_arn = CERTIFICATE_ARN
    api_gateway.save()
    client = Mock()
    client.create_domain_name.return_value = {
        "DomainNameConfigurations": [
            {"ApiGatewayDomainName": "d-1.execute-api.amazonaws.com", "HostedZoneId": "Z1"}
        ]
    }
    client.create_api_mapping.side_effect = client_error("BadRequestException", "stage missing")

    with (
        patch(PATCH_TARGET, return_value=client),
        pytest.raises(GatewayProvisioningError, match="map the domain.*stage missing"),
    ):
        api_gateway.create_custom_domain()

    gateway = ApiGateway.objects.get(pk=api_gateway.pk)
    assert gateway.custom_domain_created is False
    assert gateway.api_gateway_domain_name == "d-1.execute-api.amazonaws.com"

    client.create_api_mapping.side_effect = None
    client.create_api_mapping.return_value = {"ApiMappingId": "map-1"}
    with patch(PATCH_TARGET, return_value=client):
        gateway.create_custom_domain()

    assert client.create_domain_name.call_count == 1  # not created twice
    client.create_api_mapping.assert_called_with(
        ApiId="abc123", DomainName="ws.example.com", Stage="test"
    )
    gateway.refresh_from_db()
    assert gateway.custom_domain_created is True
    assert gateway.api_mapping_id == "map-1"


# ---------------------------------------------------------------------------------------------
# Names AWS is sent: validated by ApiGateway.clean(), so they fail on their field, not in AWS
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["Chat", "chat-prod_2", "Support desk", "chat.example.com v2", "7", "x" * 128]
)
def test_api_names_aws_accepts_pass_clean(name):
    ApiGateway(api_name=name).clean()


@pytest.mark.parametrize(
    "name",
    [
        "",
        " leading space",
        "trailing ",
        "-dash first",
        "chat/prod",
        "chat<script>",
        "naïve",
        "tab\tname",
        "x" * 129,
    ],
)
def test_bad_api_names_fail_clean_on_the_field(name):
    with pytest.raises(ValidationError) as excinfo:
        ApiGateway(api_name=name).clean()
    assert set(excinfo.value.message_dict) == {"api_name"}


@pytest.mark.parametrize(
    "domain",
    [
        "ws.example.com",
        "WS.Example.COM",
        "a.b.c.example.co.uk",
        "*.example.com",
        "x1-y.io",
        f"{'a' * 63}.example.com",
    ],
)
def test_domain_names_aws_accepts_pass_clean(domain):
    ApiGateway(api_name="Chat", domain_name=domain).clean()


@pytest.mark.parametrize(
    "domain",
    [
        "https://ws.example.com",
        "ws.example.com/",
        "ws.example.com:443",
        "localhost",
        "-ws.example.com",
        "ws-.example.com",
        "ws..example.com",
        "ws.example.com.",
        "ws_1.example.com",
        "192.168.0.1",
        "ws.*.example.com",
        "ws example.com",
        f"{'a' * 64}.example.com",
        ".".join(["abcdefghi"] * 26),
    ],
)
def test_bad_domain_names_fail_clean_on_the_field(domain):
    with pytest.raises(ValidationError) as excinfo:
        ApiGateway(api_name="Chat", domain_name=domain).clean()
    assert set(excinfo.value.message_dict) == {"domain_name"}


@pytest.mark.parametrize("stage", ["", "prod stage", "v1.2", "$default", "x" * 129])
def test_bad_stage_names_fail_clean_on_the_field(stage):
    with pytest.raises(ValidationError) as excinfo:
        ApiGateway(api_name="Chat", stage_name=stage).clean()
    assert set(excinfo.value.message_dict) == {"stage_name"}


@pytest.mark.django_db
def test_full_clean_reports_every_bad_name_at_once_and_the_admin_shows_it(admin_client):
    with pytest.raises(ValidationError) as excinfo:
        ApiGateway(
            api_name="chat!", domain_name="not a domain", target_base_endpoint="https://x/"
        ).full_clean()
    assert set(excinfo.value.message_dict) == {"api_name", "domain_name"}

    response = admin_client.post(
        "/admin/django_aws_api_gateway_websockets/apigateway/add/",
        {
            "api_name": "chat!",
            "domain_name": "https://ws.example.com",
            "default_channel_name": "default",
            "api_key_selection_expression": "$request.header.x-api-key",
            "route_selection_expression": "$request.body.action",
            "route_key": "$default",
            "stage_name": "production",
            "tags": "{}",
            "additional_routes-TOTAL_FORMS": "0",
            "additional_routes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with the errors on their fields
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"api_name", "domain_name"}
    assert "no scheme" in errors["domain_name"][0]
    assert not ApiGateway.objects.exists()


def test_route_str_needs_no_gateway():
    route = ApiGatewayAdditionalRoute(name="Chat messages", route_key="chat_message")
    assert str(route) == "Chat messages"
    assert str(ApiGatewayAdditionalRoute(route_key="chat_message")) == "chat_message"


# ---------------------------------------------------------------------------------------------
# URL validation, region and client helpers
# ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    ["https://testserver/ws/", "http://localhost:8000/ws/", "https://example.com/ws", "https://x"],
)
def test_endpoint_urls_with_any_host_pass_full_clean(url):
    name = f"ok {url.split('://')[1].replace('/', ' ').replace(':', ' ')}".rstrip()
    gateway = ApiGateway(api_name=name, target_base_endpoint=url, management_endpoint_url=url)
    gateway.full_clean()
    gateway.save()
    route = ApiGatewayAdditionalRoute(
        api_gateway=gateway, name="r", route_key="r", integration_url=url
    )
    route.full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["ftp://testserver/ws/", "https:///ws/", "testserver/ws/", "https://", "ws://x/ws/"]
)
def test_bad_endpoint_urls_fail_full_clean(url):
    with pytest.raises(ValidationError) as excinfo:
        ApiGateway(api_name="bad", target_base_endpoint=url).full_clean()
    assert set(excinfo.value.message_dict) == {"target_base_endpoint"}

    with pytest.raises(ValidationError) as excinfo:
        ApiGateway(api_name="bad", management_endpoint_url=url).full_clean()
    assert set(excinfo.value.message_dict) == {"management_endpoint_url"}

    gateway = http_gateway()
    with pytest.raises(ValidationError) as excinfo:
        ApiGatewayAdditionalRoute(
            api_gateway=gateway, name="r", route_key="r", integration_url=url
        ).full_clean()
    assert set(excinfo.value.message_dict) == {"integration_url"}


def test_region_prefers_gateway_region_then_falls_back(settings):
    settings.AWS_GATEWAY_REGION_NAME = "eu-west-1"
    settings.AWS_REGION_NAME = "us-west-2"
    assert get_region_name() == "eu-west-1"
    settings.AWS_GATEWAY_REGION_NAME = ""
    assert get_region_name() == "us-west-2"


def test_region_error_names_both_settings(settings):
    del settings.AWS_GATEWAY_REGION_NAME
    settings.AWS_REGION_NAME = ""
    with pytest.raises(ImproperlyConfigured) as excinfo:
        get_region_name()
    assert "AWS_GATEWAY_REGION_NAME" in str(excinfo.value)
    assert "AWS_REGION_NAME" in str(excinfo.value)


@pytest.fixture
def session_class(settings):
    settings.AWS_GATEWAY_REGION_NAME = "eu-central-1"
    settings.AWS_IAM_PROFILE = ""
    settings.AWS_ACCESS_KEY_ID = ""
    settings.AWS_SECRET_ACCESS_KEY = ""
    with patch.object(boto3.session, "Session") as session:
        yield session


def test_client_uses_profile_when_set(settings, session_class):
    settings.AWS_IAM_PROFILE = "deploy"
    settings.AWS_ACCESS_KEY_ID = "AKIAEXAMPLE"
    settings.AWS_SECRET_ACCESS_KEY = "secret"

    client = get_boto3_client()

    session_class.assert_called_once_with(profile_name="deploy")
    session_class.return_value.client.assert_called_once_with(
        "apigatewayv2", region_name="eu-central-1"
    )
    assert client is session_class.return_value.client.return_value


def test_client_uses_key_and_secret(settings, session_class):
    settings.AWS_ACCESS_KEY_ID = "AKIAEXAMPLE"
    settings.AWS_SECRET_ACCESS_KEY = "secret"

    get_boto3_client("lambda")

    session_class.assert_called_once_with(
        aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret"
    )
    session_class.return_value.client.assert_called_once_with("lambda", region_name="eu-central-1")


def test_client_uses_ambient_credentials_otherwise(settings, session_class):
    settings.AWS_ACCESS_KEY_ID = "AKIAEXAMPLE"  # a key without its secret is not used

    get_boto3_client("apigatewaymanagementapi", endpoint_url="https://x.example/prod")

    session_class.assert_called_once_with()
    session_class.return_value.client.assert_called_once_with(
        "apigatewaymanagementapi", endpoint_url="https://x.example/prod", region_name="eu-central-1"
    )


def test_client_explicit_region_wins(session_class):
    get_boto3_client(region_name="ap-southeast-2")
    session_class.return_value.client.assert_called_once_with(
        "apigatewayv2", region_name="ap-southeast-2"
    )


def test_client_passes_a_session_token_with_temporary_keys(settings, session_class):
    settings.AWS_ACCESS_KEY_ID = "ASIAEXAMPLE"
    settings.AWS_SECRET_ACCESS_KEY = "secret"
    settings.AWS_SESSION_TOKEN = "token"

    get_boto3_client("lambda")

    session_class.assert_called_once_with(
        aws_access_key_id="ASIAEXAMPLE", aws_secret_access_key="secret", aws_session_token="token"
    )


def test_one_boto3_session_per_credential_set(settings, session_class):
    """Sessions load AWS's service data (~100 ms): every send must not pay that again."""
    get_boto3_client("apigatewaymanagementapi", endpoint_url="https://a.example/p")
    get_boto3_client("apigatewaymanagementapi", endpoint_url="https://b.example/p")
    assert session_class.call_count == 1
    assert session_class.return_value.client.call_count == 2
    settings.AWS_IAM_PROFILE = "other"
    get_boto3_client("lambda")
    assert session_class.call_count == 2
