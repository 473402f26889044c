"""Deployment settings: zappa accepts zappa_settings.json and schedules functions that exist.

The package itself (built from a real python3.12 venv and run as Lambda runs it) is tested in
test_lambda_package.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    # Project folders are left out by root-anchored globs; `exclude` names match anywhere.
    assert {"tests", "docs", "bench", "events"} <= set(settings["exclude_glob"])
    assert not {"tests", "docs", "events", "staticfiles"} & set(settings["exclude"])
    actions = {a for p in settings["extra_permissions"] for a in p["Action"]}
    assert actions == {"execute-api:ManageConnections"}
    assert all("@connections" in p["Resource"] for p in settings["extra_permissions"])
    # Our handler sets no variables itself: they must be Lambda's own environment.
    assert "environment_variables" not in settings
    assert settings["aws_environment_variables"]["DJANGO_SETTINGS_MODULE"] == "project.settings"


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


def test_production_runs_on_snapstart_through_zappas_alias(monkeypatch):
    """SnapStart (Python 3.12+) snapshots published versions only: zappa then points the site
    at its ``snapstart`` alias; keep-warm pings would reach $LATEST, so they are off."""
    from zappa.cli import ZappaCLI

    for name, value in (("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    cli = ZappaCLI()
    cli.api_stage = "production"
    cli.load_settings(settings_file=str(ROOT / "zappa_settings.json"))

    assert cli.snap_start == "PublishedVersions"
    assert cli.apigateway_lambda_qualifier == "snapstart"
    assert cli.stage_config["keep_warm"] is False
    assert cli.runtime in {"python3.12", "python3.13"}
    assert cli.provisioned_concurrency is None  # SnapStart cannot be combined with it
    assert cli.num_retained_versions is None or cli.num_retained_versions >= 2

    cli.api_stage = "dev"  # quick deploys: no version to publish and snapshot each time
    cli.load_settings(settings_file=str(ROOT / "zappa_settings.json"))
    assert cli.snap_start in (None, "None")
