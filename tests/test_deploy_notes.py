"""serverless-notes.md's deploy steps, run as the notes give them.

The `zappa manage` commands are read from the notes' console blocks, so the notes cannot
drift from what is tested: each runs, in order, as the `{"manage": ...}` event zappa sends,
through a fresh Lambda-like process of ``lambda_handler`` on a fresh database (a new SQLite
file, or a new PostgreSQL database when ``DATABASE_URL`` is PostgreSQL). Before them comes
zappa's deploy-time status check on the unmigrated database; after them, the admin logs in on
the site and sees the rooms. ``createApiGateway``/``createCustomDomain`` need AWS: see
tests/test_deploy_rehearsal.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import string
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.lambda_process import ROOT, invoke_in_process, lambda_environment

NOTES = (ROOT / "serverless-notes.md").read_text()
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())
NEEDS_AWS = {"createApiGateway", "createCustomDomain"}
SHELL_VARIABLES = {
    "ARN": "arn:aws:lambda:eu-west-1:123456789012:function:serverless-websockets-dev",
    "FUNCTION": "serverless-websockets-dev",
}
HOST = "rest123456.execute-api.eu-west-1.amazonaws.com"
ADMIN = {
    "DJANGO_SUPERUSER_USERNAME": "admin",
    "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
    "DJANGO_SUPERUSER_PASSWORD": "a-long-pass-phrase-4-tests",
}


def deploy_section() -> str:
    start = NOTES.index("## Deploying with zappa")
    return NOTES[start : NOTES.index("\n## ", start + 1)]


def console_commands(text: str) -> list[str]:
    """The `$ ` lines of the ```console blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [line[2:] for line in joined.splitlines() if line.startswith("$ ")]
    return commands


def manage_commands(text: str) -> list[str]:
    """What each `zappa manage dev …` or `aws lambda invoke --payload '{"manage": …}'` runs."""
    found = []
    for command in console_commands(text):
        words = shlex.split(command)
        if words[:3] == ["zappa", "manage", "dev"]:
            # The notes' shell variables, expanded as bash does inside double quotes.
            found.append(string.Template(" ".join(words[3:])).substitute(SHELL_VARIABLES))
        elif words[:3] == ["aws", "lambda", "invoke"]:
            payload = json.loads(words[words.index("--payload") + 1])
            if "manage" in payload:
                found.append(payload["manage"])
    return found


def rest_event(method: str, path: str, headers: dict | None = None, body: str = "") -> dict:
    """A REST API (v1) event of zappa's API, stage `dev`, as API Gateway sends it."""
    headers = {
        "Host": HOST,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Port": "443",
        **(headers or {}),
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {key: [value] for key, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/dev{path}",
            "stage": "dev",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "203.0.113.5", "userAgent": "Mozilla/5.0"},
            "domainName": HOST,
            "apiId": "rest123456",
        },
        "body": body or None,
        "isBase64Encoded": False,
    }


@pytest.fixture
def fresh_database(tmp_path):
    """A database URL nobody has migrated, removed afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        yield f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
        return
    import psycopg

    name = f"notes_{uuid.uuid4().hex[:12]}"
    server = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_notes_give_the_first_deploy_commands_in_order():
    commands = manage_commands(deploy_section())
    names = [shlex.split(command)[0] for command in commands]
    assert names[:4] == ["migrate", "ensureSuperuser", "createrooms", "shell"]
    assert "createApiGateway" in names
    zappa = [c for c in console_commands(deploy_section()) if c.startswith("zappa ")]
    assert zappa.index("zappa deploy dev") < zappa.index("zappa manage dev migrate")


def test_notes_manage_commands_run_in_order_through_the_handler(fresh_database, tmp_path):
    commands = manage_commands(deploy_section())
    offline = [c for c in commands if shlex.split(c)[0] not in NEEDS_AWS]
    # Only the steps that need AWS are left out (rehearsed in tests/test_deploy_rehearsal.py).
    assert len(commands) - len(offline) == 1 and "createApiGateway --pk 1" in commands
    touch = rest_event("GET", SETTINGS["dev"]["touch_path"])
    events = [touch, rest_event("GET", "/")] + [{"manage": command} for command in offline]
    env = lambda_environment(DATABASE_URL=fresh_database, **ADMIN)

    results, logs, _ = invoke_in_process(events, env, tmp_path)

    # zappa deploy's status check (a 5xx fails the deploy) passes before any migration...
    assert results[0]["statusCode"] == 200, results[0]
    assert json.loads(results[0]["body"]) == {"status": "ok"}
    # ...where the site itself cannot answer yet.
    assert results[1]["statusCode"] == 500
    for command, result in zip(offline, results[2:], strict=True):
        assert result["statusCode"] == 200, (command, result)
    assert "Created superuser 'admin'" in results[3]["output"]
    assert ADMIN["DJANGO_SUPERUSER_PASSWORD"] not in json.dumps(results) + json.dumps(logs)

    site = run_site_checks(env, tmp_path)
    # Logged in: redirected away from the login page (where the redirect lands under the
    # stage prefix is the stage-prefix work's, tested with it).
    assert site["login"] == 302 and "login" not in site["location"]
    assert site["index"] == 200 and "General" in site["body"] and "Random" in site["body"]
    assert site["admin"] == 200
    # Step 5's record, which step 6's `createApiGateway --pk 1` provisions.
    assert site["gateway"] == ["chat", "production", SHELL_VARIABLES["ARN"]]


SITE_CHECKS = r"""
import json, re, sys
import lambda_handler
from tests.test_deploy_notes import ADMIN, HOST, rest_event

def call(event):
    response = lambda_handler.handler(event, None)
    cookies = [c.split(";")[0] for c in response.get("multiValueHeaders", {}).get("Set-Cookie", [])]
    return response, cookies

page, cookies = call(rest_event("GET", "/login/"))
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page["body"]).group(1)
form = f"username=admin&password={ADMIN['DJANGO_SUPERUSER_PASSWORD']}&csrfmiddlewaretoken={token}"
login, session = call(rest_event("POST", "/login/", {
    "Cookie": "; ".join(cookies),
    "Content-Type": "application/x-www-form-urlencoded",
    "Origin": f"https://{HOST}",
    "Referer": f"https://{HOST}/dev/login/",
}, form))
jar = {"Cookie": "; ".join(cookies + session)}
index, _ = call(rest_event("GET", "/", jar))
admin, _ = call(rest_event("GET", "/admin/", jar))
location = (login.get("multiValueHeaders") or {}).get("Location", [""])[0]
from django_aws_api_gateway_websockets.models import ApiGateway
gateway = ApiGateway.objects.get(pk=1)
json.dump({"login": login["statusCode"], "location": location, "index": index["statusCode"],
           "body": index["body"], "admin": admin["statusCode"],
           "gateway": [gateway.api_name, gateway.stage_name, gateway.lambda_function_arn]},
          open(sys.argv[1], "w"))
"""


def run_site_checks(env: dict[str, str], tmp_path: Path) -> dict:
    out = tmp_path / "site.json"
    process = subprocess.run(
        [sys.executable, "-c", SITE_CHECKS, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(out.read_text())


def test_notes_name_the_schedule_rules_zappa_creates():
    from zappa.core import Zappa

    zappa = Zappa.__new__(Zappa)  # only its naming, no AWS session
    function_name = f"{SETTINGS['dev']['project_name']}-dev"
    for event in SETTINGS["dev"]["events"]:
        name = zappa.get_scheduled_event_name(event, event["function"], function_name)
        assert f"`{name}`" in NOTES
    keep_warm = {"name": "zappa-keep-warm", "function": "handler.keep_warm_callback"}
    name = zappa.get_scheduled_event_name(keep_warm, keep_warm["function"], function_name)
    assert name.startswith(hashlib.sha1(function_name.encode()).hexdigest()[:21])
    assert "`<21 hex digits>-zappa-keep-warm-handler.keep_warm_callback`" in NOTES


def test_notes_and_settings_agree_on_the_connections_permission():
    (statement,) = SETTINGS["dev"]["extra_permissions"]
    assert statement["Action"] == ["execute-api:ManageConnections"]
    assert statement["Resource"].endswith("/POST/@connections/*")
    assert f"`{statement['Resource']}`" in NOTES
    library = ROOT / "django_aws_api_gateway_websockets"
    # testing/ answers these calls for a project's own code (its outbox stands in for AWS).
    calls = "".join(
        path.read_text() for path in library.rglob("*.py") if "testing" not in path.parts
    )
    # The library calls only POST on @connections: nothing to grant for GET or DELETE.
    assert "post_to_connection" in calls
    assert "get_connection(" not in calls and "delete_connection(" not in calls


def test_the_deployer_policy_is_valid_and_covers_what_zappa_calls():
    block = re.search(
        r"\$ cat > deployer-policy.json <<'EOF'\n(.*?)\nEOF\n", deploy_section(), re.S
    )
    policy = json.loads(block.group(1))
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    # zappa deploy: the execution role (create_iam_roles), the function, the REST API's
    # stack, the schedules, the package upload; createApiGateway from the workstation.
    for needed in (
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:GetRole",
        "iam:PassRole",
        "iam:UpdateAssumeRolePolicy",
        "lambda:*",
        "apigateway:*",
        "cloudformation:*",
        "events:*",
        "s3:*",
        "iam:CreateServiceLinkedRole",  # the account's first RDS database
    ):
        assert needed in actions
