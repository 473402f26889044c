"""The Lambda handler adds its JSON lines to a project's logging and takes nothing away.

A cold start with the project's own ``LOGGING``: handlers on ``django.request`` and
``django.security`` (as Sentry's or an audit trail's are configured), Django's default
``AdminEmailHandler`` on ``django``, a handler on the root. Each still receives its records, and
the same records are also the handler's JSON lines."""

from __future__ import annotations

import logging

import pytest
from django.core import mail

from django_aws_api_gateway_websockets.models import ApiGateway
from django_aws_api_gateway_websockets.serverless import make_lambda_handler, observability
from tests.lambda_support import SAMPLE_API_ID, load_event, log_lines

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support_urls")]

TOUCHED = ("", "django", "django.request", "django.security", *observability.STRUCTURED_LOGGERS)


class Recorder(logging.Handler):
    """Stands in for a project's handler (Sentry's, an audit log's): keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def recorders():
    return {name: Recorder() for name in ("request", "security", "root")}


@pytest.fixture
def project_handler(settings, keep_test_connection, recorders):
    """The Lambda handler, built as a cold start does, under a project's LOGGING."""
    saved = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in TOUCHED
    }
    saved_levels = {name: logging.getLogger(name).level for name in TOUCHED}
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.ALLOWED_HOSTS = [".amazonaws.com"]
    settings.LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "request": {"()": lambda: recorders["request"]},
            "security": {"()": lambda: recorders["security"]},
            "root": {"()": lambda: recorders["root"]},
        },
        "loggers": {
            "django.request": {"handlers": ["request"], "level": "WARNING"},
            "django.security": {"handlers": ["security"], "level": "WARNING"},
        },
        "root": {"handlers": ["root"], "level": "WARNING"},
    }
    observability.get_logger.cache_clear()
    ApiGateway.objects.create(api_name="Sample", api_id=SAMPLE_API_ID, stage_name="production")
    try:
        yield make_lambda_handler(websocket_path="/broken/{route}")
    finally:
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers = handlers
            logger.propagate = propagate
            logger.setLevel(saved_levels[name])
        observability.get_logger.cache_clear()


def json_lines(capsys, message: str) -> list[dict]:
    return [
        line
        for line in log_lines(capsys.readouterr().out)
        if line.get("message", "").startswith(message)
    ]


def page_event(path: str, host: str = "http123456.execute-api.eu-west-1.amazonaws.com") -> dict:
    event = load_event("http_api_v2")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["headers"]["host"] = host
    return event


def test_request_warnings_still_reach_the_projects_handlers(project_handler, recorders, capsys):
    capsys.readouterr()
    assert project_handler(page_event("/no-such-page/"), None)["statusCode"] == 404

    assert "Not Found: /no-such-page/" in recorders["request"].messages()
    assert "Not Found: /no-such-page/" in recorders["root"].messages()
    (line,) = json_lines(capsys, "Not Found: /no-such-page/")
    assert (line["level"], line["correlation_id"]) == ("WARNING", "Cq1EzFkRIAMEPBw=")


def test_security_errors_still_reach_the_projects_handler_and_the_admins(
    project_handler, recorders, capsys
):
    capsys.readouterr()
    assert project_handler(page_event("/", host="evil.example"), None)["statusCode"] == 400

    (record,) = recorders["security"].records
    assert record.name == "django.security.DisallowedHost"
    assert record in recorders["root"].records
    # Django's own AdminEmailHandler on "django" (DEFAULT_LOGGING) hears it by propagation.
    assert [message.to for message in mail.outbox] == [["ops@example.com"]]
    assert "Invalid HTTP_HOST header" in mail.outbox[0].subject
    (line,) = json_lines(capsys, "Invalid HTTP_HOST header")
    assert line["level"] == "ERROR"


def test_library_errors_reach_the_root_handler_too(project_handler, recorders, capsys):
    capsys.readouterr()
    assert project_handler(load_event("connect"), None)["statusCode"] == 500

    assert "WebSocket handler connect failed" in recorders["root"].messages()
    (line,) = json_lines(capsys, "WebSocket handler connect failed")
    assert line["connection_id"] == load_event("connect")["requestContext"]["connectionId"]


def test_levels_and_propagation_stay_as_the_project_set_them(project_handler):
    for name in ("django.request", "django.security"):
        logger = logging.getLogger(name)
        assert logger.propagate is True
        assert logger.level == logging.WARNING


def test_setting_up_again_adds_no_second_json_line(project_handler, capsys):
    observability.get_logger.cache_clear()
    observability.get_logger()
    capsys.readouterr()
    project_handler(page_event("/no-such-page/"), None)
    assert len(json_lines(capsys, "Not Found: /no-such-page/")) == 1
