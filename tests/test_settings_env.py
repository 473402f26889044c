"""The example project's knobs: every one an environment variable, all in README's table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_aws_api_gateway_websockets.conf import DEFAULTS
from project.websockets_env import variable_name, websockets_from_environment
from tests.e2e_support import ROOT

# A value unlike the default for every key of the library's settings.
CHOSEN = {
    "token_rate_limit_per_minute": ("7", 7),
    "token_expiry_seconds": ("30", 30),
    "token_bound_to_session": ("false", False),
    "rate_limit_max_attempts": ("5", 5),
    "rate_limit_window_minutes": ("3", 3),
    "send_concurrency": ("4", 4),
    "fanout_transport": ("boto3", "boto3"),
    "http_concurrency": ("8", 8),
    "fanout_invocation_batch": ("500", 500),
    "fanout_function_name": ("fanout-fn", "fanout-fn"),
    "send_max_retries": ("2", 2),
    "send_retry_base_delay": ("0.5", 0.5),
    "max_message_bytes": ("4194304", 4194304),
    "send_rate_limit": ("500", 500),
    "send_throttle_deadline_seconds": ("8", 8.0),
    "allowed_origins": (
        "https://www.example.com, https://*.example.org",
        ["https://www.example.com", "https://*.example.org"],
    ),
    "require_origin": ("yes", True),
    "websocket_path": ("/ws/", "/ws/"),
    "integration_secret": ("s3cret", "s3cret"),
    "local_gateway_verify_signature": ("off", False),
    "local_gateway_idle_timeout": ("2.5", 2.5),
    "message_rate_limit": ("30/10", (30, 10.0)),
    "local_gateway_max_duration": ("3.5", 3.5),
    "replay_max_messages": ("50", 50),
    "replay_max_age_seconds": ("3600", 3600),
    "replay_connect_wait_seconds": ("1.5", 1.5),
    "snapstart_rehearsal": ("false", False),
}


def readme_configuration() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Configuration") :]


def test_every_library_key_has_a_variable():
    assert set(CHOSEN) == set(DEFAULTS)
    environ = {variable_name(key): raw for key, (raw, _) in CHOSEN.items()}
    assert websockets_from_environment(environ) == {
        key: value for key, (_, value) in CHOSEN.items()
    }


def test_unset_or_empty_variables_keep_the_librarys_defaults():
    assert websockets_from_environment({}) == {}
    assert websockets_from_environment({"WEBSOCKETS_TOKEN_EXPIRY_SECONDS": " "}) == {}


@pytest.mark.parametrize("raw", ["auto", "AUTO", "true", "0"])
def test_token_binding_words(raw):
    value = websockets_from_environment({"WEBSOCKETS_TOKEN_BOUND_TO_SESSION": raw})
    assert value["token_bound_to_session"] == {"auto": "auto", "true": True, "0": False}.get(
        raw.lower()
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("WEBSOCKETS_TOKEN_EXPIRY_SECONDS", "sixty"),
        ("WEBSOCKETS_SEND_RETRY_BASE_DELAY", "fast"),
        ("WEBSOCKETS_REQUIRE_ORIGIN", "maybe"),
        ("WEBSOCKETS_TOKEN_BOUND_TO_SESSION", "sometimes"),
    ],
)
def test_a_value_that_does_not_parse_names_the_variable(name, raw):
    with pytest.raises(ImproperlyConfigured, match=name):
        websockets_from_environment({name: raw})


def test_every_variable_the_settings_read_is_in_the_readme_table():
    source = (ROOT / "project" / "settings.py").read_text()
    read = set(re.findall(r'(?:environ\.get|env_bool|env_list)\("([A-Z0-9_]+)"', source))
    read |= {variable_name(key) for key in DEFAULTS} | {"DATABASE_URL"}
    read -= {"AWS_LAMBDA_FUNCTION_NAME", "AWS_REGION"}  # set by Lambda, not by you
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)`", readme_configuration(), re.MULTILINE))
    assert read - documented == set()


def test_the_project_reads_its_websockets_setting_from_the_environment():
    environ = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "WEBSOCKETS_TOKEN_EXPIRY_SECONDS": "30",
        "WEBSOCKETS_ALLOWED_ORIGINS": "https://www.example.com",
    }
    environ.pop("WEBSOCKETS_TOKEN_BOUND_TO_SESSION", None)
    script = "from django.conf import settings; import json; print(json.dumps(settings.WEBSOCKETS))"
    output = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {script}"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    configured = json.loads(output.strip().splitlines()[-1])
    assert configured["token_expiry_seconds"] == 30
    assert configured["allowed_origins"] == ["https://www.example.com"]
    assert "token_bound_to_session" not in configured  # the library's "auto"
