"""The zappa package, built as the docs say, run the way AWS Lambda's python3.12 runtime runs it.

One package per test run (``zappa package dev`` from a cached python3.12 venv holding
requirements.txt and zappa), one Lambda execution environment (read-only task root, an isolated
interpreter as an unprivileged user, AWS's runtime interface client as bootstrap) and one
PostgreSQL database; each test sends it events and checks the answers AWS would pass on.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from tests.e2e_support import e2e_database
from tests.lambda_package import (
    ROOT,
    build_runtime_dir,
    build_venv,
    cached_package,
    runtime_python,
)
from tests.lambda_sandbox import LambdaSandbox, lambda_environment

STAGE = "dev"
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())[STAGE]
FUNCTION_NAME = f"{SETTINGS['project_name']}-{STAGE}"
REGION = SETTINGS["aws_region"]
EVENTS_DIR = ROOT / "events"
SAMPLES_DIR = Path(__file__).resolve().parent / "aws_samples"
API_ID = "w5ck3t1234"
DOMAIN = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
SITE_ID = "s1te123456"
SITE_DOMAIN = f"{SITE_ID}.execute-api.{REGION}.amazonaws.com"
CUSTOM_DOMAIN = "chat.example.com"
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


# ---------------------------------------------------------------- fixtures


class ConnectionsApi:
    """A local @connections API: records each POST (connection id, payload), answers 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection_id = unquote(self.path.rsplit("/", 1)[-1])
                recorder.posts.append((connection_id, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def to(self, connection_id: str) -> list[Any]:
        return [payload for target, payload in self.posts if target == connection_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def package() -> Path:
    return cached_package(STAGE)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    configured = os.environ.get("DATABASE_URL", "")
    server = configured if configured.startswith("postgres") else DEFAULT_POSTGRES
    with e2e_database(tmp_path_factory.mktemp("db"), server) as url:
        yield url


@pytest.fixture(scope="module")
def connections_api():
    api = ConnectionsApi()
    yield api
    api.close()


@pytest.fixture(scope="module")
def function_variables(database) -> dict[str, str]:
    """The stage's aws_environment_variables, with a real database and secret key."""
    return {
        **SETTINGS["aws_environment_variables"],
        "DATABASE_URL": database,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        # The site's custom domain (no stage in its paths), as its operator would allow it.
        "DJANGO_ALLOWED_HOSTS": f"{SETTINGS['aws_environment_variables']['DJANGO_ALLOWED_HOSTS']},"
        f"{CUSTOM_DOMAIN}",
    }


def new_sandbox(package: Path, function_variables: dict[str, str]) -> LambdaSandbox:
    """A fresh execution environment of the function (not started)."""
    env = lambda_environment(
        FUNCTION_NAME,
        SETTINGS["lambda_handler"],
        REGION,
        function_variables,
        SETTINGS.get("memory_size", 512),
    )
    arn = f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION_NAME}"
    return LambdaSandbox(package, build_runtime_dir(), runtime_python(), env, arn)


@pytest.fixture(scope="module")
def sandbox(package, function_variables):
    with new_sandbox(package, function_variables) as running:
        yield running


@pytest.fixture(scope="module")
def migrated(sandbox):
    answer = sandbox.invoke({"manage": "migrate"})
    assert answer.error is None, answer.error
    return answer.result


SEED = """
import json, sys
import django
django.setup()
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django_aws_api_gateway_websockets.models import ApiGateway, WebSocketToken

user = get_user_model().objects.create_user("postman", password=None)
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
ApiGateway.objects.create(
    api_name="chat", api_id=sys.argv[1], api_created=True, stage_name="dev",
    target_base_endpoint="https://example.invalid/ws/", management_endpoint_url=sys.argv[2],
)
tokens = [WebSocketToken.generate_token(user, session.session_key).token for _ in range(7)]
print(json.dumps({"session": session.session_key, "tokens": tokens}))
"""


@pytest.fixture(scope="module")
def seeded(migrated, function_variables, connections_api) -> dict[str, Any]:
    """A user signed in on the site, one-time tokens for them, and the gateway's row, created
    in the function's database by the example project's own models."""
    env = {**os.environ, **function_variables, "DJANGO_SETTINGS_MODULE": "project.settings"}
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    result = subprocess.run(
        [sys.executable, "-c", SEED, API_ID, connections_api.url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def answer(sandbox: LambdaSandbox, event: Any) -> Any:
    invocation = sandbox.invoke(event)
    assert invocation.error is None, f"{invocation.error}\n{sandbox.stderr[-3000:]}"
    return invocation.result


def body_of(result: dict[str, Any]) -> Any:
    return json.loads(result["body"]) if result.get("body") else None


def header(result: dict[str, Any], name: str) -> str | None:
    for key, value in (result.get("headers") or {}).items():
        if key.lower() == name.lower():
            return value
    for key, values in (result.get("multiValueHeaders") or {}).items():
        if key.lower() == name.lower():
            return values[0]
    return None


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- the package


def test_package_is_under_25_mib_and_holds_what_the_function_imports(package):
    names = set(zipfile.ZipFile(package).namelist())
    assert package.stat().st_size < 25 * 1024 * 1024
    for module in (
        "lambda_handler.py",
        "django/contrib/staticfiles/apps.py",
        "django_aws_api_gateway_websockets/serverless/handler.py",
        "websocket_app/migrations/0001_initial.py",
        "psycopg/__init__.py",
    ):
        assert module in names, module
    tops = {name.split("/", 1)[0] for name in names}
    build_tools = {"zappa", "troposphere", "setuptools", "yaml", "werkzeug", "click", "tqdm"}
    runtime_stack = {"boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3"}
    project_only = {"tests", "docs", "bench", "events", ".ci"}
    assert not tops & (build_tools | runtime_stack | project_only)
    stray = {"MANIFEST.in", ".gitignore", "requirements.txt", "requirements-dev.txt", "Makefile"}
    assert not names & (stray | {"zappa_settings.json", "pyproject.toml", "package.json"})
    assert not [name for name in names if name.endswith(".md") and "/" not in name]


def test_no_exclude_rule_removes_a_file_of_a_runtime_dependency(package):
    """zappa's ``exclude`` names match anywhere in site-packages: every file that pip installed
    for requirements.txt (but the boto3 stack AWS provides) must still be in the package."""
    names = set(zipfile.ZipFile(package).namelist())
    missing = []
    for distribution, files in runtime_distribution_files(build_venv()).items():
        # Translation sources (.po) are left out on purpose: gettext reads the compiled .mo.
        lost = [name for name in files if name not in names and not name.endswith(".po")]
        if lost:
            missing.append((distribution, len(lost), lost[:3]))
    assert not missing


def test_exclude_names_match_no_file_of_an_installed_distribution():
    """The rule itself, without packing: no folder or file name pip installed (for any
    distribution of the build venv) matches a name-anywhere ``exclude`` entry."""
    patterns = SETTINGS["exclude"]
    hits = [
        (distribution, name)
        for distribution, files in _distributions(build_venv()).items()
        for name in files["files"]
        if any(fnmatch.fnmatch(part, pattern) for part in name.split("/") for pattern in patterns)
    ]
    assert not hits


def test_every_build_only_distribution_is_left_out(package):
    """A release of zappa that brings a new dependency must be excluded too (exclude_glob)."""
    tops = {name.split("/", 1)[0] for name in zipfile.ZipFile(package).namelist()}
    shipped = [
        distribution
        for distribution, files in build_only_distribution_files(build_venv()).items()
        if {name.split("/", 1)[0] for name in files} & tops
    ]
    assert not shipped


def test_package_bytecode_is_hash_checked_so_it_stays_valid_on_a_read_only_disk(package):
    """zappa dates every entry 1980; only hash-checked .pyc files (PEP 552) stay valid."""
    archive = zipfile.ZipFile(package)
    tag = "cpython-312"
    checked = [
        name
        for name in (
            f"django/db/models/__pycache__/query.{tag}.pyc",
            f"django_aws_api_gateway_websockets/serverless/__pycache__/events.{tag}.pyc",
            f"websocket_app/__pycache__/views.{tag}.pyc",
            f"__pycache__/lambda_handler.{tag}.pyc",
        )
        if int.from_bytes(archive.read(name)[4:8], "little") == 0b11
    ]
    assert len(checked) == 4


# ---------------------------------------------------------------- the environment


def test_init_loads_the_handler_without_boto3_and_writes_nothing(sandbox):
    assert sandbox.init_seconds is not None
    assert {
        "awslambdaric",
        "django",
        "django_aws_api_gateway_websockets",
    } <= sandbox.imports_at_init
    assert "boto3" not in sandbox.imports_at_init
    assert sandbox.writes == []


def test_a_package_without_django_staticfiles_answers_500_and_names_the_cause(
    package, function_variables, tmp_path
):
    """The harness sees what the issue saw: the old ``"staticfiles"`` exclude removed Django's
    app. Init no longer crash-loops on it: every event is a clean 500, and the log says why."""
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(package) as good, zipfile.ZipFile(broken, "w") as bad:
        for item in good.infolist():
            if not item.filename.startswith("django/contrib/staticfiles/"):
                bad.writestr(item, good.read(item))
    with new_sandbox(broken, function_variables) as sandbox:
        results = [answer(sandbox, load(EVENTS_DIR / name)) for name in ("connect.json",) * 2]
        log = sandbox.stdout
    assert [result["statusCode"] for result in results] == [500, 500]
    assert json.loads(results[0]["body"]) == {"error": "Service misconfigured"}
    assert "staticfiles" not in results[0]["body"]
    lines = [line for line in log.splitlines() if "Function misconfigured" in line]
    assert len(lines) == 2
    assert "No module named 'django.contrib.staticfiles'" in lines[0]


def test_migrate_on_postgresql(migrated):
    assert migrated["statusCode"] == 200, migrated
    assert "Applying websocket_app.0001_initial... OK" in migrated["output"]


EXPECTED = {
    # file: (what the function answers, why)
    "connect.json": (401, "a browser CONNECT with no one-time token"),
    "disconnect.json": (200, "an unknown connection's disconnect is remembered"),
    "forged_http_connect.json": (403, "an HTTP request dressed as a CONNECT"),
    "http_alb.json": (200, "the rooms page through an ALB (.amazonaws.com is allowed)"),
    "http_api_v2.json": (200, "the rooms page"),
    "http_function_url.json": (200, "the login page"),
    "http_rest_v1.json": (200, "the rooms page"),
    "keep_warm.json": ("warm", "zappa's keep-warm rule"),
    "manage_clear_sessions.json": (200, "a management command"),
    "message_chat.json": (403, "a message from an unknown connection"),
    "message_who_is_here.json": (403, "a message from an unknown connection"),
    "scheduled_cleanup_tokens.json": ("Deleted", "the token clean-up schedule"),
    "scheduled_clear_sessions.json": ("Deleted", "the session clean-up schedule"),
}


def test_every_sample_event_has_an_expected_answer():
    assert sorted(path.name for path in EVENTS_DIR.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_event(sandbox, migrated, name):
    result = answer(sandbox, load(EVENTS_DIR / name))
    expected, why = EXPECTED[name]
    if expected == "warm":
        assert result == {"status": "warm"}, why
    elif expected == "Deleted":
        assert isinstance(result, str) and result.startswith("Deleted"), (why, result)
    else:
        assert result["statusCode"] == expected, (why, result)
        assert "Traceback" not in json.dumps(result)


# ---------------------------------------------------------------- AWS's own samples


def addressed(sample: str, connection_id: str, **changes: Any) -> dict[str, Any]:
    """A published sample, sent to our WebSocket API (id, host, stage) on one connection."""
    event = copy.deepcopy(load(SAMPLES_DIR / sample))
    context = event["requestContext"]
    context.update(apiId=API_ID, domainName=DOMAIN, stage=STAGE, connectionId=connection_id)
    if "headers" in event:
        event["headers"]["Host"] = DOMAIN
        event["multiValueHeaders"]["Host"] = [DOMAIN]
    for key, value in changes.items():
        event[key] = value
    return event


def with_query_and_cookie(
    event: dict[str, Any], query: dict[str, str], cookie: str | None = None
) -> None:
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {key: [value] for key, value in query.items()}
    if cookie is not None:
        event["headers"]["Cookie"] = cookie
        event["multiValueHeaders"]["Cookie"] = [cookie]


def test_published_samples_as_published_get_clean_refusals(sandbox, migrated):
    """As stored: other regions' hosts, one redacted, an API the function does not know."""
    answers = [
        answer(sandbox, load(SAMPLES_DIR / name))
        for name in (
            "apigw-websocket-request.json",
            "apigw-websocket-request-send-message.json",
            "apigw-websocket-request-disconnect.json",
        )
    ]
    # The CONNECT's domainName is redacted to "*.execute-api...": not a host, so 400. The message
    # is for a connection this function never saw (403); its disconnect is harmless (200).
    assert [result["statusCode"] for result in answers] == [400, 403, 200], answers
    assert [body_of(result) for result in answers] == [
        {"error": "Host not allowed"},
        {"error": "Unknown connection"},
        {"status": "disconnected"},
    ]
    assert "Traceback" not in json.dumps(answers)


def test_postman_connect_without_origin_then_message_then_disconnect(
    sandbox, seeded, connections_api
):
    connection_id = "TWegAcC4EowCHnB="
    connect = addressed("apigw-websocket-request.json", connection_id)
    assert "Origin" not in connect["headers"] and "Origin" not in connect["multiValueHeaders"]
    # Postman has no cookie of the site: the one-time token alone names the user.
    assert "Cookie" not in connect["headers"]
    with_query_and_cookie(connect, {"ws_token": seeded["tokens"][0], "channel": "lobby"})
    assert answer(sandbox, connect)["statusCode"] == 200

    message = addressed(
        "apigw-websocket-request-send-message.json",
        connection_id,
        body=json.dumps({"action": "chat_message", "message": "hello from Postman"}),
    )
    result = answer(sandbox, message)
    assert result["statusCode"] == 200, result
    assert body_of(result) == {"type": "ack", "delivered": 1}
    posted = connections_api.to(connection_id)
    assert any("hello from Postman" in json.dumps(payload) for payload in posted), posted

    assert (
        answer(sandbox, addressed("apigw-websocket-request-disconnect.json", connection_id))[
            "statusCode"
        ]
        == 200
    )
    again = answer(sandbox, message)
    assert again["statusCode"] == 403, again  # gone: its messages are refused


def test_browser_connect_with_its_origin(sandbox, seeded):
    """A browser's handshake (events/connect.json: Origin, Chrome's headers) on our API."""
    event = load(EVENTS_DIR / "connect.json")
    event["requestContext"].update(
        apiId=API_ID, domainName=DOMAIN, stage=STAGE, connectionId="Cq1AAFkNIAMFXfR="
    )
    for name, value in (("Host", DOMAIN), ("Origin", f"https://{DOMAIN}")):
        event["headers"][name] = value
        event["multiValueHeaders"][name] = [value]
    cookie = f"sessionid={seeded['session']}"
    with_query_and_cookie(event, {"ws_token": seeded["tokens"][2], "channel": "lobby"}, cookie)
    assert answer(sandbox, event)["statusCode"] == 200

    event["headers"]["Origin"] = event["multiValueHeaders"]["Origin"][0] = "https://evil.example"
    event["requestContext"]["connectionId"] = "Cq1AAFkNIAMFXfS="
    with_query_and_cookie(event, {"ws_token": seeded["tokens"][3], "channel": "lobby"}, cookie)
    refused = answer(sandbox, event)
    assert refused["statusCode"] == 403, refused  # another site's page
    assert body_of(refused) == {"error": "Origin not allowed"}


def test_token_is_one_time(sandbox, seeded):
    connect = addressed("apigw-websocket-request.json", "TWegAcC4EowCHnC=")
    with_query_and_cookie(
        connect, {"ws_token": seeded["tokens"][1]}, f"sessionid={seeded['session']}"
    )
    assert answer(sandbox, connect)["statusCode"] == 200
    reused = addressed("apigw-websocket-request.json", "TWegAcC4EowCHnD=")
    with_query_and_cookie(
        reused, {"ws_token": seeded["tokens"][1]}, f"sessionid={seeded['session']}"
    )
    assert answer(sandbox, reused)["statusCode"] == 401


# ---------------------------------------------------------------- SnapStart

SNAPSHOT_AND_RESTORE = r"""
import json, os, random, sys, threading, time
from awslambdaric import lambda_runtime_hooks_runner as runtime_hooks

import lambda_handler  # Lambda's init phase: what SnapStart snapshots

from django.core.signals import request_started
from django.db import connection
from django_aws_api_gateway_websockets.send_policy import backoff_delay
from django_aws_api_gateway_websockets.serverless.local import LocalLambdaContext

plan = json.loads(os.environ["SNAPSTART_PLAN"])


def sockets():
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return sorted(found)


def serve(events):
    answers = []
    for event in events:
        result = lambda_handler.handler(event, LocalLambdaContext())
        answers.append([result["statusCode"], json.loads(result.get("body") or "null")])
    return answers


# What a priming step or a project's init code may leave live: a database connection, clients,
# the fan-out's loop and keep-alive pool.
primed = serve(plan["prime"])
before = {"sockets": sockets(), "threads": sorted(t.name for t in threading.enumerate())}
rehearsed = []
request_started.connect(lambda **kwargs: rehearsed.append(1), weak=False)
runtime_hooks.run_before_snapshot()  # the runtime's own runner: reverse registration order
after = {"sockets": sockets(), "threads": sorted(t.name for t in threading.enumerate())}
snapshot = random.getstate()

go_read, go_write = os.pipe()
children = []
for events in plan["children"]:
    out_read, out_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(go_write)
            os.read(go_read, 1)  # both copies start at once
            random.setstate(snapshot)  # fork() reseeds random; a restored snapshot does not
            started = time.perf_counter()
            runtime_hooks.run_after_restore()
            answers = serve(events)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend = cursor.fetchone()[0]
                cursor.execute(
                    "SELECT (SELECT COUNT(*) FROM auth_user WHERE username LIKE 'snapstart-%%')"
                    " + (SELECT COUNT(*) FROM django_aws_api_gateway_websockets_apigateway"
                    " WHERE api_id = 'snapstart')"
                )
                rehearsal_rows = cursor.fetchone()[0]
            report = {
                "answers": answers,
                "seconds": time.perf_counter() - started,
                "jitter": [backoff_delay(8, 1.0) for _ in range(3)],
                "backend": backend,
                "rehearsal_rows": rehearsal_rows,
                "sockets": sockets(),
            }
            os.write(out_write, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(out_write)
    children.append((pid, out_read))
os.write(go_write, b"go")
reports = []
for pid, out_read in children:
    with os.fdopen(out_read) as pipe:
        reports.append(json.loads(pipe.read() or "null"))
    os.waitpid(pid, 0)
outcome = {"primed": primed, "rehearsed": len(rehearsed), "before": before, "after": after}
print(json.dumps({**outcome, "children": reports}))
"""


def connect_and_chat(connection_id: str, token: str, text: str) -> list[dict[str, Any]]:
    connect = addressed("apigw-websocket-request.json", connection_id)
    with_query_and_cookie(connect, {"ws_token": token, "channel": "snapstart"})
    message = addressed(
        "apigw-websocket-request-send-message.json",
        connection_id,
        body=json.dumps({"action": "chat_message", "message": text}),
    )
    return [connect, message]


def test_snapstart_restored_copies_share_nothing_and_answer_every_event(
    sandbox, seeded, connections_api
):
    """The packaged handler initialised once, snapshotted by the runtime's own hook runner,
    restored twice at once (fork), on PostgreSQL: each copy answers CONNECT and a broadcasting
    MESSAGE with its own database connection, sockets and jitter."""
    tokens = seeded["tokens"]
    plan = {
        "prime": connect_and_chat("SnApPrImE0000A=", tokens[4], "before the snapshot"),
        "children": [
            connect_and_chat(f"SnApCoPy{n}00000A=", tokens[5 + n], f"from copy {n}")
            for n in range(2)
        ],
    }
    run = sandbox.run_script(SNAPSHOT_AND_RESTORE, environment={"SNAPSTART_PLAN": json.dumps(plan)})
    assert run.returncode == 0, run.stderr[-4000:]
    outcome = json.loads(run.stdout.strip().splitlines()[-1])

    ack = {"type": "ack", "delivered": 1}
    assert outcome["primed"] == [[200, {"status": "connected"}], [200, ack]]
    # Live before the hooks: the database and @connections sockets, the fan-out's loop thread.
    assert outcome["before"]["sockets"] and "ws-connections" in outcome["before"]["threads"]
    # Nothing of it goes into the snapshot.
    assert outcome["after"] == {"sockets": [], "threads": ["MainThread"]}
    # The example project rehearses its connect and disconnect before the snapshot (three of
    # each), answered and rolled back: no warning, no row.
    assert outcome["rehearsed"] == 6
    assert "SnapStart rehearsal" not in run.stdout + run.stderr

    first, second = outcome["children"]
    for restored in (first, second):
        connected, chatted = restored["answers"]
        assert connected == [200, {"status": "connected"}]
        assert chatted[0] == 200 and chatted[1]["type"] == "ack" and chatted[1]["delivered"] >= 1
    assert first["backend"] != second["backend"]
    assert first["rehearsal_rows"] == second["rehearsal_rows"] == 0
    assert not set(first["sockets"]) & set(second["sockets"])
    assert first["jitter"] != second["jitter"]
    for n in range(2):
        posted = connections_api.to(f"SnApCoPy{n}00000A=")
        assert any(f"from copy {n}" in json.dumps(payload) for payload in posted), posted


# ---------------------------------------------------------------- schedules


def zappa_rule_event(rule_name: str) -> dict[str, Any]:
    """What a zappa schedule delivers: EventBridge's scheduled event through zappa's input
    transformer, which adds ``kwargs``."""
    return {
        "time": "2026-12-01T09:00:00Z",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "region": REGION,
        "detail": {},
        "version": "0",
        "resources": [f"arn:aws:events:{REGION}:123456789012:rule/{rule_name}"],
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "kwargs": {},
    }


def scheduled_rules() -> list[str]:
    from zappa.core import Zappa

    events = [*SETTINGS["events"]]
    if SETTINGS.get("keep_warm", True):  # as zappa's cli adds it
        events.append({"name": "zappa-keep-warm", "function": "handler.keep_warm_callback"})
    return [
        Zappa.get_scheduled_event_name(Zappa, event, event["function"], FUNCTION_NAME, 0)
        for event in events
    ]


@pytest.mark.parametrize("rule", scheduled_rules())
def test_zappa_schedule_runs_its_function(sandbox, migrated, rule):
    result = answer(sandbox, zappa_rule_event(rule))
    if rule.endswith("keep_warm_callback"):
        assert result == {"status": "warm"}
    else:
        assert isinstance(result, str) and result.startswith("Deleted"), (rule, result)


# ---------------------------------------------------------------- the site


def rest_v1(path: str, stage_prefix: bool) -> dict[str, Any]:
    """A REST API (v1) request: on the execute-api URL the stage is in the path AWS saw."""
    event = load(EVENTS_DIR / "http_rest_v1.json")
    host = SITE_DOMAIN if stage_prefix else CUSTOM_DOMAIN
    event["path"] = path
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["headers"]["Host"] = host
    event["multiValueHeaders"]["Host"] = [host]
    context = event["requestContext"]
    context.update(stage=STAGE, domainName=host, apiId=SITE_ID)
    context["path"] = f"/{STAGE}{path}" if stage_prefix else path
    return event


def http_v2(path: str, stage_prefix: bool) -> dict[str, Any]:
    """An HTTP API (v2) request: a named stage is in rawPath, ``$default`` is not."""
    event = load(EVENTS_DIR / "http_api_v2.json")
    raw = f"/{STAGE}{path}" if stage_prefix else path
    event["rawPath"] = raw
    event["headers"]["host"] = SITE_DOMAIN
    context = event["requestContext"]
    context.update(
        domainName=SITE_DOMAIN, apiId=SITE_ID, stage=STAGE if stage_prefix else "$default"
    )
    context["http"]["path"] = raw
    return event


SITE_ROUTES = [
    pytest.param(rest_v1, True, id="rest-v1-stage-prefix"),
    pytest.param(rest_v1, False, id="rest-v1-custom-domain"),
    pytest.param(http_v2, True, id="http-v2-named-stage"),
    pytest.param(http_v2, False, id="http-v2-default-stage"),
]


@pytest.mark.parametrize(("shape", "stage_prefix"), SITE_ROUTES)
def test_site_pages_links_and_redirects_keep_the_prefix_the_request_came_by(
    sandbox, migrated, shape, stage_prefix
):
    prefix = f"/{STAGE}" if stage_prefix else ""
    home = answer(sandbox, shape("/", stage_prefix))
    assert home["statusCode"] == 200, home
    assert f'href="{prefix}/login/' in home["body"]
    login = answer(sandbox, shape("/login/", stage_prefix))
    assert login["statusCode"] == 200, login
    assert 'name="csrfmiddlewaretoken"' in login["body"]
    admin = answer(sandbox, shape("/admin/", stage_prefix))
    assert admin["statusCode"] == 302, admin
    assert header(admin, "Location") == f"{prefix}/admin/login/?next={prefix}/admin/"


def test_a_fresh_container_links_and_serves_static_files(package, function_variables, migrated):
    """Its own environment: Django fixes STATIC_URL's prefix at the first request it sees."""
    with new_sandbox(package, function_variables) as fresh:
        home = answer(fresh, http_v2("/", stage_prefix=False))
        static = answer(fresh, http_v2("/static/websocket_app/chat.css", stage_prefix=False))
    assert 'href="/static/websocket_app/chat.css"' in home["body"]
    assert static["statusCode"] == 200, static
    assert "font-family" in static["body"]


def test_static_files_are_served_under_the_stage_prefix(sandbox, migrated):
    static = answer(sandbox, rest_v1("/static/websocket_app/chat.css", stage_prefix=True))
    assert static["statusCode"] == 200, static


def test_one_container_links_static_files_under_each_requests_own_prefix(sandbox, migrated):
    for stage_prefix in (True, False, True):
        prefix = f"/{STAGE}" if stage_prefix else ""
        home = answer(sandbox, rest_v1("/", stage_prefix))
        assert f'href="{prefix}/static/websocket_app/chat.css"' in home["body"]


# zappa adds an empty __init__.py to every folder of the zip without one, __pycache__ folders
# included; Django's template-library scan then imports ``<app>.templatetags.__pycache__`` and
# Python tries to cache its bytecode. The attempt fails on the read-only disk and costs nothing.
ZAPPA_PYCACHE_PACKAGE = re.compile(r"os\.mkdir /.*/__pycache__/__pycache__")


def test_nothing_was_written_outside_tmp(sandbox, migrated):
    """Runs last in this module: after every event above, the task root is as unzipped."""
    assert [w for w in sandbox.writes if not ZAPPA_PYCACHE_PACKAGE.fullmatch(w)] == []
    assert sandbox.task_root_unchanged()
    for error in ("Read-only file system", "PermissionError", "Permission denied"):
        assert error not in sandbox.stderr + sandbox.stdout


# ---------------------------------------------------------------- distributions


def _distributions(venv: Path) -> dict[str, Any]:
    from tests.lambda_package import site_packages

    script = r"""
import json, re, sys
from importlib import metadata
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
out = {}
for d in metadata.distributions(path=[sys.argv[1]]):
    out[norm(d.metadata["Name"])] = {
        "requires": d.requires or [],
        "files": [str(f) for f in d.files or [] if not str(f).startswith("..")],
    }
print(json.dumps(out))
"""
    python = str(venv / "bin" / "python")
    done = subprocess.run(
        [python, "-c", script, str(site_packages(venv))],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(done.stdout)


RUNTIME_PROVIDED = {
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "python-dateutil",
    "urllib3",
    "six",
}


def _closure(distributions: dict[str, Any]) -> set[str]:
    """Distributions requirements.txt needs on Lambda (markers for Linux, python3.12)."""
    from packaging.requirements import Requirement

    environment = {
        "python_version": "3.12",
        "python_full_version": "3.12.1",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "platform_machine": "x86_64",
        "extra": "",
    }

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pending = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pending.append(Requirement(line))
    needed: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = norm(requirement.name)
        if name in needed or name not in distributions:
            continue
        needed.add(name)
        for text in distributions[name]["requires"]:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker and not any(
                dependency.marker.evaluate({**environment, "extra": extra}) for extra in extras
            ):
                continue
            pending.append(dependency)
    return needed


def runtime_distribution_files(venv: Path) -> dict[str, list[str]]:
    distributions = _distributions(venv)
    needed = _closure(distributions) - RUNTIME_PROVIDED
    return {name: distributions[name]["files"] for name in sorted(needed)}


def build_only_distribution_files(venv: Path) -> dict[str, list[str]]:
    distributions = _distributions(venv)
    extra = set(distributions) - _closure(distributions)
    return {name: distributions[name]["files"] for name in sorted(extra)}
