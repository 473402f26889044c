"""Run ``lambda_handler.handler`` in a fresh interpreter, as a Lambda container would: settings
are imported at init, under the environment given, and each event's result comes back."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.lambda_support import log_lines

ROOT = Path(__file__).resolve().parent.parent

INVOKE_EVENTS = """
import json, sys
import lambda_handler
results = [lambda_handler.handler(event, None) for event in json.load(open(sys.argv[1]))]
with open(sys.argv[2], "w") as out:
    json.dump(results, out)
"""


def lambda_environment(**overrides: str) -> dict[str, str]:
    """This interpreter's environment as a deployed function sees it: Lambda's variables and
    a real-looking secret key; ``overrides`` (an empty value removes a variable) win."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "PYTEST", "AWS_"))
    }
    env.update(
        AWS_LAMBDA_FUNCTION_NAME="serverless-websockets-dev",
        AWS_REGION="eu-west-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS=".execute-api.eu-west-1.amazonaws.com,example.com",
        POWERTOOLS_LOG_LEVEL="INFO",
    )
    env.update(overrides)
    return {key: value for key, value in env.items() if value}


def invoke_in_process(
    events: list[Any], env: dict[str, str], tmp_path: Path
) -> tuple[list[Any], list[dict[str, Any]], subprocess.CompletedProcess]:
    """Results of ``events`` handled one after another by one fresh container, its JSON log
    lines, and the process (for its stderr)."""
    events_file, results_file = tmp_path / "events.json", tmp_path / "results.json"
    events_file.write_text(json.dumps(events))
    process = subprocess.run(
        [sys.executable, "-c", INVOKE_EVENTS, str(events_file), str(results_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(results_file.read_text()), log_lines(process.stdout), process
