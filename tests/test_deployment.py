"""Deployment: zappa accepts zappa_settings.json, packs the right files, schedules functions
that exist, and the Lambda cold start answers its first event without importing boto3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest

from tests.lambda_support import EVENTS_DIR

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())
STAGES = sorted(SETTINGS)
ZAPPA = Path(sys.executable).with_name("zappa")


def zappa(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    empty_venv = tmp_path / "venv"
    if not empty_venv.exists():
        # An empty virtualenv: zappa then packs only the project, in about a second.
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(empty_venv)], check=True)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "VIRTUAL_ENV": str(empty_venv),
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(
        [str(ZAPPA), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def stage_settings(stage: str) -> dict:
    settings = dict(SETTINGS[stage])
    if "extends" in settings:
        settings = {**stage_settings(settings.pop("extends")), **settings}
    return settings


@pytest.mark.parametrize("stage", STAGES)
def test_zappa_loads_each_stage(stage, tmp_path):
    result = zappa(
        "save-python-settings-file",
        stage,
        "-o",
        str(tmp_path / "zappa_settings.py"),
        tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    generated = (tmp_path / "zappa_settings.py").read_text()
    assert "DJANGO_SETTINGS='project.settings'" in generated


@pytest.mark.parametrize("stage", STAGES)
def test_stage_uses_our_handler_a_current_runtime_and_least_privilege(stage):
    settings = stage_settings(stage)
    assert settings["lambda_handler"] == "lambda_handler.handler"
    assert settings["runtime"] in {"python3.12", "python3.13"}
    assert {"tests", "docs", ".venv"} <= set(settings["exclude"])
    actions = {a for p in settings["extra_permissions"] for a in p["Action"]}
    assert actions == {"execute-api:ManageConnections"}
    assert all("@connections" in p["Resource"] for p in settings["extra_permissions"])
    # Our handler sets no variables itself: they must be Lambda's own environment.
    assert "environment_variables" not in settings
    assert settings["aws_environment_variables"]["DJANGO_SETTINGS_MODULE"] == "project.settings"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    tmp_path = tmp_path_factory.mktemp("package")
    package = tmp_path / "package.zip"
    result = zappa("package", "production", "-o", str(package), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    return package


def test_package_holds_the_app_and_not_the_tests(package):
    names = zipfile.ZipFile(package).namelist()
    assert "lambda_handler.py" in names
    assert "django_aws_api_gateway_websockets/serverless/handler.py" in names
    assert "django_aws_api_gateway_websockets/migrations/0001_initial.py" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "events/", ".venv/"))]


def test_package_bytecode_is_used_although_zappa_dates_every_file_1980(package, tmp_path):
    """zappa's prebuild_script writes hash-checked bytecode: on Lambda's read-only disk,
    timestamp-checked bytecode would be stale (zip dates) and recompiled in every cold start."""
    archive = zipfile.ZipFile(package)
    module = "django_aws_api_gateway_websockets/serverless/events"
    bytecode = f"{Path(module).parent}/__pycache__/events.{sys.implementation.cache_tag}.pyc"
    assert bytecode in archive.namelist()
    assert int.from_bytes(archive.read(bytecode)[4:8], "little") == 0b11  # checked hash

    task = tmp_path / "task"
    archive.extractall(task)
    for member in archive.infolist():
        dated = datetime(*member.date_time).timestamp()
        os.utime(task / member.filename, (dated, dated))
    result = subprocess.run(
        [sys.executable, "-v", "-c", f"import {module.replace('/', '.')}"],
        cwd=task,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(task)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{task / bytecode} matches {task / module}.py" in result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize("stage", STAGES)
def test_scheduled_functions_run_under_zappa_rule_names(stage, keep_test_connection):
    from zappa.core import Zappa

    import lambda_handler

    settings = stage_settings(stage)
    lambda_name = f"{settings['project_name']}-{stage}"
    for index, event in enumerate(settings["events"]):
        rule = Zappa.get_scheduled_event_name(Zappa, event, event["function"], lambda_name, index)
        scheduled = json.loads((EVENTS_DIR / "scheduled_clear_sessions.json").read_text())
        scheduled["resources"] = [f"arn:aws:events:eu-west-1:123456789012:rule/{rule}"]
        result = lambda_handler.handler(scheduled, None)
        assert isinstance(result, str) and result.startswith("Deleted"), (rule, result)


COLD_START = """
import json, sys, time
started = time.perf_counter()
import lambda_handler
event = json.load(open(sys.argv[1]))
response = lambda_handler.handler(event, None)
print(json.dumps({
    "status": response["statusCode"],
    "seconds": time.perf_counter() - started,
    "boto3_imported": "boto3" in sys.modules,
}))
"""


def test_cold_start_answers_the_first_connect_without_boto3(tmp_path):
    database = f"sqlite:///{tmp_path / 'cold.sqlite3'}"
    env = {**os.environ, "DATABASE_URL": database, "DJANGO_SETTINGS_MODULE": "project.settings"}
    env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    result = subprocess.run(
        [sys.executable, "-c", COLD_START, str(EVENTS_DIR / "connect.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    # The sample connect carries no token: answered, and refused.
    assert summary["status"] == 401
    assert summary["boto3_imported"] is False
