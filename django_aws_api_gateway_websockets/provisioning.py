"""Creating API Gateway resources in AWS for an ``ApiGateway`` record.

Each step stores what it created before the next one runs, so a failed run leaves the record
consistent (``api_created`` stays False) and running it again resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from . import aws

if TYPE_CHECKING:
    from .models import ApiGateway, ApiGatewayAdditionalRoute

logger = logging.getLogger(__name__)

# (route key, route name used in the HTTP integration URL), besides the gateway's own route key.
LIFECYCLE_ROUTES = (("$connect", "connect"), ("$disconnect", "disconnect"))


class GatewayProvisioningError(Exception):
    """An AWS step failed or the record cannot be provisioned; the message says which."""


class GatewayNotReady(GatewayProvisioningError, ValueError):
    """The record lacks what the step needs (a target, a created API, a certificate).

    A ``ValueError`` too: the original package raised ``ValueError`` for these, and code
    migrating from it may catch that.
    """


def _paged(operation: Callable[..., dict[str, Any]], **kwargs: Any) -> Iterator[dict[str, Any]]:
    """Items of a paginated apigatewayv2 ``get_*`` call."""
    while True:
        response = operation(**kwargs)
        yield from response.get("Items", [])
        next_token = response.get("NextToken")
        if not next_token:
            return
        kwargs["NextToken"] = next_token


def lambda_integration_uri(function_arn: str, region: str) -> str:
    return (
        f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function_arn}/invocations"
    )


class _Provisioner:
    """Creates the pieces of one gateway; remembers what already exists when resuming."""

    def __init__(self, gateway: ApiGateway, client: Any, resuming: bool) -> None:
        self.gateway = gateway
        self.client = client
        self._region = ""
        self.routes: dict[str, str] = {}
        self.integrations: dict[str, str] = {}
        if resuming:
            api_id = gateway.api_id
            self.routes = {
                item["RouteKey"]: item["RouteId"]
                for item in _paged(client.get_routes, ApiId=api_id)
            }
            self.integrations = {
                item.get("IntegrationUri", ""): item["IntegrationId"]
                for item in _paged(client.get_integrations, ApiId=api_id)
            }

    @property
    def region(self) -> str:
        """Asked for only by the Lambda integration URI and the invoke permission: an HTTP
        integration is created without any region setting (a patched client needs none)."""
        if not self._region:
            self._region = aws.region()
        return self._region

    def integration_uri(self, route_name: str, explicit_url: str = "") -> str:
        if self.gateway.uses_lambda:
            return lambda_integration_uri(self.gateway.lambda_function_arn, self.region)
        return explicit_url or self.gateway.integration_url(route_name)

    def ensure_integration(self, uri: str) -> str:
        if uri in self.integrations:
            return self.integrations[uri]
        kwargs: dict[str, Any] = {
            "ApiId": self.gateway.api_id,
            "IntegrationUri": uri,
            "IntegrationMethod": "POST",
        }
        if self.gateway.uses_lambda:
            kwargs["IntegrationType"] = "AWS_PROXY"
        else:
            kwargs["IntegrationType"] = "HTTP_PROXY"
            # API Gateway does not forward the connection id to HTTP backends unless mapped.
            kwargs["RequestParameters"] = {
                "integration.request.header.connectionId": "context.connectionId"
            }
        integration_id = self.client.create_integration(**kwargs)["IntegrationId"]
        self.integrations[uri] = integration_id
        return integration_id

    def ensure_route(self, route_key: str, route_name: str, explicit_url: str = "") -> str:
        if route_key in self.routes:
            return self.routes[route_key]
        integration_id = self.ensure_integration(self.integration_uri(route_name, explicit_url))
        two_way = route_key not in ("$connect", "$disconnect")
        kwargs: dict[str, Any] = {
            "ApiId": self.gateway.api_id,
            "RouteKey": route_key,
            "Target": f"integrations/{integration_id}",
        }
        if two_way:
            # Lets the view's response body travel back to the client as the route response.
            kwargs["RouteResponseSelectionExpression"] = "$default"
        route_id = self.client.create_route(**kwargs)["RouteId"]
        if two_way:
            self.client.create_route_response(
                ApiId=self.gateway.api_id, RouteId=route_id, RouteResponseKey="$default"
            )
        self.routes[route_key] = route_id
        return route_id

    def ensure_stage(self, resuming: bool) -> None:
        gateway = self.gateway
        if resuming:
            try:
                self.client.get_stage(ApiId=gateway.api_id, StageName=gateway.stage_name)
                return
            except aws.client_error() as error:
                if "NotFound" not in aws.describe(error):
                    raise
        self.client.create_stage(
            ApiId=gateway.api_id,
            StageName=gateway.stage_name,
            Description=gateway.stage_description,
        )

    def ensure_invoke_permission(self) -> None:
        """Allow API Gateway to invoke the Lambda function (idempotent)."""
        function_arn = self.gateway.lambda_function_arn
        account_id = function_arn.split(":")[4] if function_arn.count(":") >= 6 else "*"
        lambda_client = aws.client("lambda")
        try:
            lambda_client.add_permission(
                FunctionName=function_arn,
                StatementId=f"apigateway-websocket-{self.gateway.api_id}",
                Action="lambda:InvokeFunction",
                Principal="apigateway.amazonaws.com",
                SourceArn=f"arn:aws:execute-api:{self.region}:{account_id}:{self.gateway.api_id}/*",
            )
        except aws.client_error() as error:
            if "ResourceConflict" not in aws.describe(error):
                raise


def create_gateway(gateway: ApiGateway) -> None:
    """Create the WebSocket API and everything it needs, then mark ``api_created``.

    A gateway already created is left alone (one log line, no AWS call): running it twice,
    from the admin or a deploy script, is harmless.
    """
    if gateway.api_created:
        logger.info("API Gateway %s is already created; nothing to do", gateway.api_name)
        return
    if not (gateway.target_base_endpoint or gateway.lambda_function_arn):
        raise GatewayNotReady(
            f"API Gateway {gateway.api_name!r} needs a target_base_endpoint (HTTP integration) "
            "or a lambda_function_arn (Lambda integration)."
        )
    resuming = bool(gateway.api_id)
    step = "connect to AWS"
    try:
        # Inside the try: a missing profile or region is reported like any failed step.
        client = aws.client("apigatewayv2")
        if gateway.uses_lambda:
            # The Lambda integration URI names the region: fail before creating anything.
            aws.region()
        step = "create the API"
        if not resuming:
            response = client.create_api(
                Name=gateway.api_name,
                ProtocolType="WEBSOCKET",
                RouteSelectionExpression=gateway.route_selection_expression,
                ApiKeySelectionExpression=gateway.api_key_selection_expression,
                Description=gateway.api_description,
                Tags={str(k): str(v) for k, v in (gateway.tags or {}).items()},
            )
            gateway.api_id = response["ApiId"]
            gateway.api_endpoint = response.get("ApiEndpoint", "")
            gateway.save(update_fields=["api_id", "api_endpoint", "updated_on"])
        step = "read the existing routes"
        provisioner = _Provisioner(gateway, client, resuming)
        step = "create the routes"
        for route_key, route_name in (*LIFECYCLE_ROUTES, (gateway.route_key, "default")):
            provisioner.ensure_route(route_key, route_name)
        additional = list(gateway.additional_routes.all())
        for route in additional:
            provisioner.ensure_route(route.route_key, route.route_key, route.integration_url)
        step = "create the stage"
        provisioner.ensure_stage(resuming)
        if gateway.uses_lambda:
            step = "allow API Gateway to invoke the function"
            provisioner.ensure_invoke_permission()
        step = "deploy the stage"
        deploy_api(gateway, client)
    except (*aws.errors(), ImproperlyConfigured) as error:
        logger.error("Creating API Gateway %s failed: %s", gateway.api_name, error)
        raise GatewayProvisioningError(
            f"Could not {step} for {gateway.api_name!r}: {aws.describe(error)}. "
            "Fix the cause and run it again: it resumes where it stopped."
        ) from error
    # Created and deployed with the stage: they must not be created again on the next save.
    gateway.additional_routes.filter(pk__in=[r.pk for r in additional]).update(deployed=True)
    gateway.api_created = True
    gateway.save(update_fields=["api_created", "updated_on"])


def deploy_api(gateway: ApiGateway, client: Any) -> str:
    """Deploy the gateway's stage and store the new deployment id on the record."""
    response = client.create_deployment(
        ApiId=gateway.api_id,
        StageName=gateway.stage_name,
        Description=gateway.stage_description or f"Deployment of {gateway.api_name}",
    )
    gateway.deployment_id = response["DeploymentId"]
    gateway.save(update_fields=["deployment_id", "updated_on"])
    return gateway.deployment_id


def create_additional_route(route: ApiGatewayAdditionalRoute, client: Any, deploy: bool) -> None:
    """Create one additional route of an already created gateway, then optionally deploy."""
    gateway = route.api_gateway
    if not gateway.api_id:
        raise GatewayNotReady(f"API Gateway {gateway.api_name!r} has not been created in AWS yet.")
    try:
        # Resuming: reuse the API's integrations (one Lambda integration serves every route)
        # and survive a retry after a failed deploy.
        provisioner = _Provisioner(gateway, client, resuming=True)
        try:
            provisioner.ensure_route(route.route_key, route.route_key, route.integration_url)
        except aws.errors() as error:
            if "Conflict" not in aws.describe(error):
                raise
            logger.info("Route %s already exists in AWS; reusing it", route.route_key)
        if deploy:
            deploy_api(gateway, client)
    except aws.errors() as error:
        raise GatewayProvisioningError(
            f"Could not create route {route.route_key!r} on {gateway.api_name!r}: "
            f"{aws.describe(error)}"
        ) from error
    if deploy:
        type(route)._default_manager.filter(pk=route.pk).update(deployed=True)
        route.deployed = True


def create_route_in_aws(route: ApiGatewayAdditionalRoute) -> None:
    """Create a saved route of an already created gateway in AWS, and deploy it."""
    try:
        client = aws.client("apigatewayv2")
    except (*aws.errors(), ImproperlyConfigured) as error:
        raise GatewayProvisioningError(
            f"Could not connect to AWS to create route {route.route_key!r}: {aws.describe(error)}"
        ) from error
    route.create_route(client, deploy=True)


def create_custom_domain(gateway: ApiGateway) -> None:
    """Create the gateway's custom domain name and map it to the stage (resumable).

    A custom domain already created is left alone (one log line, no AWS call).
    """
    if gateway.custom_domain_created:
        logger.info(
            "Custom domain %s of %s is already created; nothing to do",
            gateway.domain_name,
            gateway.api_name,
        )
        return
    if not gateway.api_created:
        raise GatewayNotReady(f"Create API Gateway {gateway.api_name!r} before its custom domain.")
    if not (gateway.domain_name and gateway.certificate_arn):
        raise GatewayNotReady(
            f"API Gateway {gateway.api_name!r} needs domain_name and certificate_arn "
            "for a custom domain."
        )
    step = "connect to AWS"
    try:
        client = aws.client("apigatewayv2")
        step = "create the domain name"
        if not gateway.api_gateway_domain_name:
            response = client.create_domain_name(
                DomainName=gateway.domain_name,
                DomainNameConfigurations=[
                    {
                        "CertificateArn": gateway.certificate_arn,
                        "EndpointType": "REGIONAL",
                        "SecurityPolicy": "TLS_1_2",
                    }
                ],
                Tags={str(k): str(v) for k, v in (gateway.tags or {}).items()},
            )
            configuration = response["DomainNameConfigurations"][0]
            gateway.api_gateway_domain_name = configuration["ApiGatewayDomainName"]
            gateway.hosted_zone_id = gateway.hosted_zone_id or configuration.get("HostedZoneId", "")
            gateway.save(update_fields=["api_gateway_domain_name", "hosted_zone_id", "updated_on"])
        step = "map the domain to the stage"
        if not gateway.api_mapping_id:
            response = client.create_api_mapping(
                ApiId=gateway.api_id, DomainName=gateway.domain_name, Stage=gateway.stage_name
            )
            gateway.api_mapping_id = response["ApiMappingId"]
    except (*aws.errors(), ImproperlyConfigured) as error:
        raise GatewayProvisioningError(
            f"Could not {step} for {gateway.api_name!r}: {aws.describe(error)}"
        ) from error
    gateway.custom_domain_created = True
    gateway.save(update_fields=["api_mapping_id", "custom_domain_created", "updated_on"])
