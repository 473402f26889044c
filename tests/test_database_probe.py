"""The handler's database probe (an unreachable database is one 503 line naming DATABASE_URL)
costs the warm path nothing: it runs inside the request, after Django's own connection
housekeeping, so the connection it opens is the one the view uses."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e_support import e2e_database
from tests.lambda_process import ROOT, lambda_environment

COUNT_CONNECTIONS = """
import json, sys
from django.core.management import call_command
import lambda_handler
from django.db import connection
from django.db.backends.signals import connection_created

call_command("migrate", verbosity=0)
connection.close()
connects = []
connection_created.connect(lambda **kwargs: connects.append(1), weak=False)
counts = {}
for name, event in json.load(open(sys.argv[1])):
    connects.clear()
    result = lambda_handler.handler(event, None)
    counts.setdefault(name, []).append((result.get("statusCode", 200), len(connects)))
print(json.dumps(counts))
"""


@pytest.fixture
def database_url(tmp_path):
    with e2e_database(tmp_path) as url:
        yield url


def events() -> list[tuple[str, dict]]:
    def load(name: str) -> dict:
        return json.loads((ROOT / "events" / f"{name}.json").read_text())

    static = load("http_rest_v1")
    static["path"] = "/static/websocket_app/chat.css"
    static["requestContext"]["path"] = "/dev/static/websocket_app/chat.css"
    return [
        ("keep_warm", load("keep_warm")),
        ("page", load("http_rest_v1")),
        ("page", load("http_rest_v1")),
        ("disconnect", load("disconnect")),
        ("disconnect", load("disconnect")),
        ("static", static),
    ]


def connections_per_event(tmp_path, database_url: str, conn_max_age: str) -> dict:
    events_file = tmp_path / "events.json"
    events_file.write_text(json.dumps(events()))
    env = lambda_environment(
        DATABASE_URL=database_url,
        DJANGO_CONN_MAX_AGE=conn_max_age,
        DJANGO_ALLOWED_HOSTS=".amazonaws.com,example.com",
    )
    process = subprocess.run(
        [sys.executable, "-c", COUNT_CONNECTIONS, str(events_file)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return json.loads(process.stdout.strip().splitlines()[-1])


def test_without_persistent_connections_each_event_connects_once(tmp_path, database_url):
    counts = connections_per_event(tmp_path, database_url, "0")
    assert counts["keep_warm"] == [[200, 0]]
    assert counts["page"] == [[200, 1], [200, 1]]
    assert counts["disconnect"] == [[200, 1], [200, 1]]
    assert counts["static"] == [[200, 0]]  # static files need no database


def test_a_kept_connection_is_reused_by_the_next_events(tmp_path, database_url):
    counts = connections_per_event(tmp_path, database_url, "60")
    assert counts["page"] == [[200, 1], [200, 0]]
    assert counts["disconnect"] == [[200, 0], [200, 0]]
    assert counts["static"] == [[200, 0]]
