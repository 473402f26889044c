# ruff: noqa: F811  (the fresh_database fixture is imported from test_deploy_notes)
"""`zappa deploy` and `createApiGateway`, rehearsed against a moto server.

boto3 honours ``AWS_ENDPOINT_URL``, so the unmodified zappa CLI and management command talk to
moto on 127.0.0.1. What cannot be rehearsed: moto cannot run the function (so zappa's status
check, which GETs the real execute-api host, is off here; tests/test_deploy_notes.py sends
that request through the handler instead), and moto has no apigatewayv2 CreateDeployment, so
createApiGateway stops at its last step, "deploy the stage".

The package is built from an empty virtualenv (the project only, about a second); the real
package is tested by the packaging tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.test_deploy_notes import SETTINGS, fresh_database  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
ZAPPA = Path(sys.executable).with_name("zappa")
REGION = SETTINGS["dev"]["aws_region"]
FUNCTION = f"{SETTINGS['dev']['project_name']}-dev"


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_env(moto_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DJANGO_"))},
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "TMPDIR": str(tmp_path),
        **extra,
    }


def client(service: str, moto_url: str):
    return boto3.client(
        service,
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def deployed(moto_url, tmp_path_factory):
    """`zappa deploy dev` with the repository's settings, but a bucket and no status check."""
    tmp_path = tmp_path_factory.mktemp("rehearsal")
    stage = dict(SETTINGS["dev"], s3_bucket="rehearsal-bucket", touch=False)
    stage.pop("prebuild_script")  # bytecode for an empty venv: the packaging tests' concern
    settings_file = tmp_path / "zappa_settings.json"
    settings_file.write_text(json.dumps({"dev": stage}))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    result = subprocess.run(
        [str(ZAPPA), "deploy", "dev", "-s", str(settings_file)],
        cwd=ROOT,
        env=aws_env(moto_url, tmp_path, VIRTUAL_ENV=str(venv)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_zappa_deploy_creates_the_function_schedules_and_site(deployed, moto_url):
    assert "Deployment complete!: https://" in deployed.stdout
    function = client("lambda", moto_url).get_function(FunctionName=FUNCTION)["Configuration"]
    assert function["Handler"] == "lambda_handler.handler"
    assert function["Runtime"] == SETTINGS["dev"]["runtime"]
    variables = function["Environment"]["Variables"]
    assert variables["DJANGO_SETTINGS_MODULE"] == "project.settings"
    role = client("iam", moto_url).get_role(RoleName=f"{FUNCTION}-ZappaLambdaExecutionRole")
    policy = client("iam", moto_url).get_role_policy(
        RoleName=role["Role"]["RoleName"], PolicyName="zappa-permissions"
    )
    document = json.dumps(policy["PolicyDocument"])
    assert SETTINGS["dev"]["extra_permissions"][0]["Resource"] in document
    apis = client("apigateway", moto_url).get_rest_apis()["items"]
    assert [api["name"] for api in apis] == [FUNCTION]


def test_the_schedule_rules_are_the_ones_the_notes_name(deployed, moto_url):
    notes = (ROOT / "serverless-notes.md").read_text()
    rules = {rule["Name"]: rule for rule in client("events", moto_url).list_rules()["Rules"]}
    assert len(rules) == 3
    for name, rule in rules.items():
        if "keep-warm" in name:
            assert name.endswith("-zappa-keep-warm-handler.keep_warm_callback")
            assert rule["ScheduleExpression"] == SETTINGS["dev"]["keep_warm_expression"]
        else:
            assert f"`{name}`" in notes


def test_create_api_gateway_from_the_workstation(deployed, moto_url, fresh_database, tmp_path):
    """The notes' step 5 and 6 with `python manage.py` (the command that `zappa manage` runs
    in the function), against the deployed function's ARN."""
    arn = client("lambda", moto_url).get_function(FunctionName=FUNCTION)["Configuration"][
        "FunctionArn"
    ]
    env = aws_env(moto_url, tmp_path, DATABASE_URL=fresh_database, AWS_GATEWAY_REGION_NAME=REGION)

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "-v0").returncode == 0
    create = (
        "from django_aws_api_gateway_websockets.models import ApiGateway; "
        f"print(ApiGateway.objects.create(api_name='chat', stage_name='production', "
        f"lambda_function_arn={arn!r}).pk)"
    )
    assert manage("shell", "-c", create).stdout.strip().endswith("1")

    result = manage("createApiGateway", "--pk", "1")

    # Everything up to the deployment exists; moto lacks CreateDeployment (404).
    assert result.returncode == 1
    assert "Could not deploy the stage for 'chat'" in result.stderr
    apigw = client("apigatewayv2", moto_url)
    (api,) = [a for a in apigw.get_apis()["Items"] if a["Name"] == "chat"]
    assert api["ProtocolType"] == "WEBSOCKET"
    routes = {r["RouteKey"] for r in apigw.get_routes(ApiId=api["ApiId"])["Items"]}
    assert routes == {"$connect", "$disconnect", "$default"}
    (integration,) = apigw.get_integrations(ApiId=api["ApiId"])["Items"]
    assert integration["IntegrationType"] == "AWS_PROXY" and arn in integration["IntegrationUri"]
    apigw.get_stage(ApiId=api["ApiId"], StageName="production")
    policy = json.loads(client("lambda", moto_url).get_policy(FunctionName=FUNCTION)["Policy"])
    assert any(
        statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
        and api["ApiId"] in json.dumps(statement)
        for statement in policy["Statement"]
    )
    # Run again, it resumes: nothing is created twice.
    assert "Could not deploy the stage" in manage("createApiGateway", "--pk", "1").stderr
    assert len(apigw.get_routes(ApiId=api["ApiId"])["Items"]) == 3
