"""Keeping AWS in step with Django: compare an API's routes, integrations and stage with the
``ApiGateway`` and ``ApiGatewayAdditionalRoute`` records, plan the differences, apply them,
and redeploy the stage once. A second run plans nothing.

Deployment state is compared too: a route or target changed in AWS serves nobody until the
stage is deployed again. The record's ``deployment_id`` is cleared before changes are applied
and set by the deployment that follows them, so a run that failed between the two leaves a
difference (the stage's deployment is not the record's) that the next run redeploys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import aws
from .provisioning import (
    LIFECYCLE_ROUTES,
    GatewayProvisioningError,
    _paged,
    _Provisioner,
    deploy_api,
    lambda_integration_uri,
)

if TYPE_CHECKING:
    from .models import ApiGateway


@dataclass(frozen=True)
class Change:
    """One difference between Django and AWS, and what applying it does."""

    # "create route", "retarget route", "delete route", "create stage", "deploy route",
    # "deploy stage"
    action: str
    route_key: str = ""
    detail: str = ""

    def __str__(self) -> str:
        subject = f" {self.route_key}" if self.route_key else ""
        return f"{self.action}{subject}{': ' + self.detail if self.detail else ''}"


def desired_routes(gateway: ApiGateway) -> dict[str, str]:
    """Route key → integration URI, as the records describe the API."""
    if gateway.uses_lambda:
        uri = lambda_integration_uri(gateway.lambda_function_arn, aws.region())
        keys = [key for key, _ in LIFECYCLE_ROUTES] + [gateway.route_key]
        keys += [route.route_key for route in gateway.additional_routes.all()]
        return dict.fromkeys(keys, uri)
    routes = {key: gateway.integration_url(name) for key, name in LIFECYCLE_ROUTES}
    routes[gateway.route_key] = gateway.integration_url("default")
    for route in gateway.additional_routes.all():
        routes[route.route_key] = route.integration_url or gateway.integration_url(route.route_key)
    return routes


class _Sync:
    def __init__(self, gateway: ApiGateway, client: Any) -> None:
        self.gateway = gateway
        self.client = client
        api_id = gateway.api_id
        self.routes = {item["RouteKey"]: item for item in _paged(client.get_routes, ApiId=api_id)}
        self.integrations = {
            item["IntegrationId"]: item for item in _paged(client.get_integrations, ApiId=api_id)
        }

    def current_uri(self, route: dict[str, Any]) -> str:
        target = route.get("Target") or ""
        integration = self.integrations.get(target.removeprefix("integrations/"), {})
        return integration.get("IntegrationUri", "")

    def stage(self) -> dict[str, Any] | None:
        try:
            return self.client.get_stage(
                ApiId=self.gateway.api_id, StageName=self.gateway.stage_name
            )
        except aws.client_error() as error:
            if "NotFound" in aws.describe(error):
                return None
            raise

    def deployment_changes(self, stage: dict[str, Any]) -> list[Change]:
        """What was changed in AWS but never deployed to the stage."""
        serving = stage.get("DeploymentId") or ""
        expected = self.gateway.deployment_id
        if not serving:
            return [Change("deploy stage", "", "the stage has never been deployed")]
        if serving != expected:
            return [
                Change(
                    "deploy stage",
                    "",
                    f"the stage serves deployment {serving}, not {expected or '(none)'}: "
                    "an earlier change was not deployed",
                )
            ]
        return [
            Change("deploy route", route.route_key, "created but never deployed")
            for route in self.gateway.additional_routes.filter(deployed=False)
            if route.route_key in self.routes
        ]

    def plan(self) -> list[Change]:
        changes: list[Change] = []
        desired = desired_routes(self.gateway)
        for key, uri in desired.items():
            route = self.routes.get(key)
            if route is None:
                changes.append(Change("create route", key, uri))
            elif self.current_uri(route) != uri:
                changes.append(
                    Change("retarget route", key, f"{self.current_uri(route) or '(none)'} -> {uri}")
                )
        for key in sorted(set(self.routes) - set(desired)):
            changes.append(Change("delete route", key, "no record describes it"))
        stage = self.stage()
        if stage is None:
            changes.append(Change("create stage", "", self.gateway.stage_name))
        elif not changes:
            # Any other change is followed by a deployment anyway.
            changes.extend(self.deployment_changes(stage))
        return changes

    def apply(self, changes: list[Change]) -> None:
        gateway, client = self.gateway, self.client
        provisioner = _Provisioner(gateway, client, resuming=False)
        provisioner.integrations = {
            item.get("IntegrationUri", ""): item["IntegrationId"]
            for item in self.integrations.values()
        }
        desired = desired_routes(gateway)
        # Until the deployment below succeeds, AWS holds changes the stage does not serve.
        gateway.deployment_id = ""
        gateway.save(update_fields=["deployment_id", "updated_on"])
        for change in changes:
            if change.action == "create route":
                provisioner.ensure_route(
                    change.route_key, change.route_key.lstrip("$"), desired[change.route_key]
                )
            elif change.action == "retarget route":
                integration_id = provisioner.ensure_integration(desired[change.route_key])
                client.update_route(
                    ApiId=gateway.api_id,
                    RouteId=self.routes[change.route_key]["RouteId"],
                    Target=f"integrations/{integration_id}",
                )
            elif change.action == "delete route":
                client.delete_route(
                    ApiId=gateway.api_id, RouteId=self.routes[change.route_key]["RouteId"]
                )
            elif change.action == "create stage":
                client.create_stage(
                    ApiId=gateway.api_id,
                    StageName=gateway.stage_name,
                    Description=gateway.stage_description,
                )
        deploy_api(gateway, client)


def sync_gateway(gateway: ApiGateway, dry_run: bool = False) -> list[Change]:
    """The changes that bring AWS in line with the records; applied (and the stage redeployed
    once) unless ``dry_run``. Nothing to change: nothing is called but reads."""
    if not gateway.api_id:
        raise GatewayProvisioningError(
            f"API Gateway {gateway.api_name!r} has not been created in AWS yet: "
            "run createApiGateway first."
        )
    if not gateway.api_created:
        # Half-created: routes, stage, permission or deployment may be missing.
        raise GatewayProvisioningError(
            f"Creating API Gateway {gateway.api_name!r} did not finish (api_id="
            f"{gateway.api_id}): run createApiGateway --pk {gateway.pk} again; it resumes "
            "where it stopped."
        )
    if not (gateway.target_base_endpoint or gateway.lambda_function_arn):
        raise GatewayProvisioningError(
            f"API Gateway {gateway.api_name!r} needs a target_base_endpoint or a "
            "lambda_function_arn to sync."
        )
    try:
        client = aws.client("apigatewayv2")
        sync = _Sync(gateway, client)
        changes = sync.plan()
        if changes and not dry_run:
            sync.apply(changes)
    except aws.errors() as error:
        raise GatewayProvisioningError(
            f"Could not sync {gateway.api_name!r} with AWS: {aws.describe(error)}"
        ) from error
    if changes and not dry_run:
        gateway.additional_routes.update(deployed=True)
    return changes
