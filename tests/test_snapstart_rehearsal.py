"""SnapStart rehearsal: the example chat's connect and disconnect played before the snapshot,
through the real handler and database, leaving nothing behind that a user or AWS could see."""

from __future__ import annotations

import json
import weakref

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.signals import request_started
from django.urls import path

from django_aws_api_gateway_websockets.models import (
    ApiGateway,
    ConnectionRateLimit,
    WebSocketSession,
    WebSocketToken,
)
from django_aws_api_gateway_websockets.serverless import make_lambda_handler, snapstart
from django_aws_api_gateway_websockets.serverless import snapstart_rehearsal as rehearsal
from django_aws_api_gateway_websockets.views import WebSocketView
from tests.wire_servers import WireServer
from websocket_app.models import Room

pytestmark = pytest.mark.django_db(transaction=True)

KEEP_WARM = {"source": "serverless-plugin-warmup"}
MODELS = (
    get_user_model(),
    Session,
    WebSocketSession,
    WebSocketToken,
    ConnectionRateLimit,
    ApiGateway,
    Room,
)


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def test_every_event_is_answered_and_nothing_is_left_written_logged_or_measured(capfd, caplog):
    handler = make_lambda_handler()
    ApiGateway.objects.create(api_name="Live", api_id="live01", stage_name="production")
    before = row_counts()
    capfd.readouterr()

    assert rehearsal.rehearse(handler).statuses == [200, 200] * rehearsal.ROUNDS

    assert row_counts() == before
    printed = capfd.readouterr()
    assert printed.out == "" and printed.err == ""  # no log line, no EMF metric
    assert caplog.records == []


def test_no_post_reaches_the_connections_api(monkeypatch):
    """Presence announces each join and leave once the connect commits: the rehearsal never
    commits, so its gateway's endpoint (here a live local one) hears nothing."""
    server = WireServer(stage="rehearsal")
    monkeypatch.setattr(rehearsal, "ENDPOINT", server.url)
    try:
        assert rehearsal.rehearse(make_lambda_handler()).statuses == [200, 200] * rehearsal.ROUNDS
    finally:
        server.close()
    assert server.requests == {}


def receiver_functions(signal) -> list:
    functions = []
    for entry in signal.receivers:
        receiver = entry[1]
        functions.append(receiver() if isinstance(receiver, weakref.ReferenceType) else receiver)
    return functions


def test_the_request_signals_keep_their_receivers_in_their_order():
    """The handler's database probe runs after Django's clean-up of old connections: in the
    other order, every request of a restored copy would open its connection twice."""
    from django.core.signals import request_finished
    from django.db import close_old_connections

    from django_aws_api_gateway_websockets.serverless.misconfiguration import (
        probe_database_on_request,
    )

    handler = make_lambda_handler()
    # As on Lambda (Django's test client reconnects close_old_connections last, after itself).
    request_started.disconnect(dispatch_uid="websockets-probe-database")
    request_started.disconnect(close_old_connections)
    request_started.connect(close_old_connections)
    request_started.connect(probe_database_on_request, dispatch_uid="websockets-probe-database")
    before = [receiver_functions(signal) for signal in (request_started, request_finished)]

    rehearsal.rehearse(handler)

    assert [receiver_functions(signal) for signal in (request_started, request_finished)] == before
    started = receiver_functions(request_started)
    assert started.index(close_old_connections) < started.index(probe_database_on_request)


def test_a_rehearsal_that_raises_half_way_leaves_no_row_and_restores_logging(monkeypatch):
    import logging

    from django.core.signals import request_finished

    def unreachable() -> str:
        raise RuntimeError("no host")  # after the gateway and the user are written

    handler = make_lambda_handler()
    monkeypatch.setattr(rehearsal, "rehearsal_host", unreachable)
    before = row_counts()
    receivers = [list(signal.receivers) for signal in (request_started, request_finished)]
    logging.disable(logging.DEBUG)  # a project's own level, to be given back
    try:
        with pytest.raises(RuntimeError, match="no host"):
            rehearsal.rehearse(handler)
        assert logging.root.manager.disable == logging.DEBUG
    finally:
        logging.disable(logging.NOTSET)
    assert row_counts() == before
    assert [list(signal.receivers) for signal in (request_started, request_finished)] == receivers


class FailingConnectView(WebSocketView):
    def connect(self, request, *args, **kwargs):
        raise RuntimeError("the project's connect hook failed")


urlpatterns = [path("ws/<slug:route>", FailingConnectView.as_view())]


def test_a_failing_view_mails_no_admin_and_leaves_no_mail_time_behind(settings, mailoutbox):
    from django_aws_api_gateway_websockets import views

    settings.ROOT_URLCONF = __name__
    settings.ADMINS = [("Admin", "admin@example.com")]
    views._LAST_MAIL.clear()

    outcome = rehearsal.rehearse(make_lambda_handler())

    assert outcome.statuses[0] == 500
    assert outcome.first_refusal == '{"error": "Internal error"}'
    assert mailoutbox == []
    assert views._LAST_MAIL == {}  # a real failure after a restore is mailed at once


def test_before_snapshot_rehearses_only_when_the_setting_asks(settings):
    make_lambda_handler()
    requests = []

    def count(**kwargs):
        requests.append(kwargs)

    request_started.connect(count)
    try:
        settings.WEBSOCKETS = {"snapstart_rehearsal": False}
        snapstart.before_snapshot()
        assert requests == []

        settings.WEBSOCKETS = {"snapstart_rehearsal": True}
        snapstart.before_snapshot()
        assert len(requests) == 2 * rehearsal.ROUNDS
    finally:
        request_started.disconnect(count)


def test_refused_rehearsal_events_are_one_warning_with_the_views_reason(
    settings, caplog, monkeypatch
):
    """A host ALLOWED_HOSTS does not admit: the view refuses every connect."""
    make_lambda_handler()
    settings.WEBSOCKETS = {"snapstart_rehearsal": True}
    monkeypatch.setattr(rehearsal, "rehearsal_host", lambda: "elsewhere.example.net")
    before = row_counts()
    snapstart.before_snapshot()

    assert row_counts() == before
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "The SnapStart rehearsal's events were answered [400, 400, 400, 400, 400, 400], the "
        'first refusal with {"error": "Host not allowed"}'
    ]


def test_no_rehearsal_with_sessions_kept_in_a_cache(settings, caplog):
    """A cache's session entry, and its client's socket, would outlive the rollback."""
    make_lambda_handler()
    settings.WEBSOCKETS = {"snapstart_rehearsal": True}
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    requests = []

    def count(**kwargs):
        requests.append(kwargs)

    request_started.connect(count)
    try:
        snapstart.before_snapshot()
    finally:
        request_started.disconnect(count)

    assert requests == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "No SnapStart rehearsal: SESSION_ENGINE 'django.contrib.sessions.backends.cache' keeps "
        "sessions outside the database"
    ]


def test_a_misconfigured_handler_is_not_rehearsed():
    from django_aws_api_gateway_websockets.serverless.misconfiguration import (
        misconfigured_handler,
    )

    assert rehearsal.why_not(misconfigured_handler(RuntimeError("bad settings")))
    assert rehearsal.why_not(make_lambda_handler()) == ""


def test_a_restored_copys_first_event_is_logged_as_its_cold_start(capfd):
    handler = make_lambda_handler()
    handler(KEEP_WARM, None)
    handler(KEEP_WARM, None)  # what the rehearsal's events did to the flag
    snapstart.after_restore()
    handler(KEEP_WARM, None)

    lines = [
        json.loads(line) for line in capfd.readouterr().out.splitlines() if '"cold_start"' in line
    ]
    assert [line["cold_start"] for line in lines] == [True, False, True]


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        ([".amazonaws.com", "localhost"], "snapstart-rehearsal.amazonaws.com"),
        (["*"], "snapstart-rehearsal.invalid"),
        (["ws.example.com"], "ws.example.com"),
        ([], "localhost"),
    ],
)
def test_the_rehearsal_uses_a_host_the_project_admits(settings, allowed, host):
    settings.ALLOWED_HOSTS = allowed
    assert rehearsal.rehearsal_host() == host
