"""Testing guide: "Testing API Gateway creation". The guide gives a strategy in prose; this is
that strategy, step by step, as a user following it writes it.

"Tests for API Gateway creation should mock AWS clients. [...] create an ApiGateway record;
mock get_boto3_client; configure mocked responses for API creation, routes, stages, and
deployment; call api_gateway.create_gateway(); assert the record is updated."
"""

from unittest.mock import patch

import pytest

from django_aws_api_gateway_websockets.models import ApiGateway


@pytest.mark.django_db
def test_testing_guide_gateway_creation_strategy_needs_no_region(settings):
    """The testing guide's "Testing API Gateway creation" strategy, step by step, in a project
    with no region setting: an HTTP integration never needs one."""
    # A project that configured no region at all.
    for name in ("AWS_GATEWAY_REGION_NAME", "AWS_REGION_NAME"):
        if hasattr(settings, name):
            delattr(settings, name)
    # create an ApiGateway record;
    api_gateway = ApiGateway.objects.create(
        api_name="Test API", target_base_endpoint="https://example.com/ws/"
    )
    # mock get_boto3_client;
    with patch("django_aws_api_gateway_websockets.models.get_boto3_client") as get_client:
        client = get_client.return_value
        # configure mocked responses for API creation, routes, stages, and deployment;
        client.create_api.return_value = {
            "ApiId": "abc123",
            "ApiEndpoint": "wss://abc123.execute-api.eu-west-2.amazonaws.com",
        }
        client.create_integration.return_value = {"IntegrationId": "int-1"}
        client.create_route.return_value = {"RouteId": "route-1"}
        client.create_stage.return_value = {"StageName": "production"}
        client.create_deployment.return_value = {"DeploymentId": "dep-1"}
        # call api_gateway.create_gateway();
        api_gateway.create_gateway()

    # assert the record is updated.
    api_gateway.refresh_from_db()
    assert api_gateway.api_created is True
    assert api_gateway.api_id == "abc123"
    assert api_gateway.api_endpoint == "wss://abc123.execute-api.eu-west-2.amazonaws.com"
    assert api_gateway.deployment_id == "dep-1"
    assert client.create_api.called
    assert client.create_route.call_count == 3
    assert client.create_stage.called
    assert client.create_deployment.called
