"""Shared helpers of the benchmarks: a throw-away database, Django set up on it, statistics.

SQLite in a temporary file by default; with ``--database-url postgres://user@host:port/db`` a
database ``bench_<pid>`` is created on that server (``db`` is only used to connect for
CREATE/DROP DATABASE) and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "events"
PYTHON = sys.executable
API_ID = "a1b2c3d4e5"
ENDPOINT = f"https://{API_ID}.execute-api.eu-west-1.amazonaws.com/production"
COMMAND_TIMEOUT = 300

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def django_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a process running the example project against ``database_url``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DJANGO_ALLOWED_HOSTS": ".amazonaws.com",
        # Never reach a real AWS account from a benchmark.
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",  # Lambda sets it; the project's region defaults to it
        **extra,
    }
    for name in ("AWS_LAMBDA_FUNCTION_NAME", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    return env


@contextmanager
def throwaway_database(server_url: str | None, sqlite_dir: str | None = None) -> Iterator[str]:
    """Yield the DATABASE_URL of a new, migrated database; remove it afterwards.

    SQLite goes to ``sqlite_dir`` (default: the system's temporary directory).
    """
    if not server_url:
        with tempfile.TemporaryDirectory(prefix="bench-", dir=sqlite_dir) as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.sqlite3'}"
            migrate(url)
            yield url
        return
    import psycopg

    name = f"bench_{os.getpid()}"
    parts = urlsplit(server_url)
    admin_url = urlunsplit(parts._replace(path=parts.path if parts.path != "/" else "/postgres"))
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlunsplit(parts._replace(path=f"/{name}"))
        migrate(url)
        yield url
    finally:
        close_django_connections()
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def migrate(database_url: str) -> None:
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=django_env(database_url),
        check=True,
        timeout=COMMAND_TIMEOUT,
    )


def setup_django(database_url: str) -> None:
    """Set the example project up in this process, on ``database_url``."""
    os.environ.update(django_env(database_url))
    import django

    django.setup(set_prefix=False)


def close_django_connections() -> None:
    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()


def create_gateway() -> Any:
    """The ApiGateway record the sample events (``apiId`` a1b2c3d4e5) belong to."""
    from django_aws_api_gateway_websockets.models import ApiGateway

    return ApiGateway.objects.create(
        api_name="Bench",
        api_id=API_ID,
        stage_name="production",
        management_endpoint_url=ENDPOINT,
    )


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / f"{name}.json").read_text())


def connect_event(username: str, connection_id: str, source_ip: str) -> dict[str, Any]:
    """``events/connect.json`` for a new user, with a session cookie and a fresh token.

    Each caller gets its own user, IP, connection id and channel (named after the user): the
    rate limit never refuses it, and the example app's presence announcement finds nobody
    else in the channel, so no event of a benchmark posts to (unreachable) AWS endpoints.
    """
    from django.contrib.auth import get_user_model

    from django_aws_api_gateway_websockets.serverless.local import authenticate_connect_event

    user = get_user_model().objects.create_user(username=username)
    event = load_event("connect")
    event["requestContext"].update(connectionId=connection_id, requestId=f"req-{connection_id}")
    event["requestContext"]["identity"]["sourceIp"] = source_ip
    event["queryStringParameters"] = {"channel": username}
    event["multiValueQueryStringParameters"] = {"channel": [username]}
    return authenticate_connect_event(event, user)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one machine-readable line: always the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=False), flush=True)


def free_port() -> int:
    """A TCP port nothing listens on now, for a bench's own server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stats(base: str) -> dict:
    """What ``connections_server.py`` at ``base`` has counted."""
    return json.loads(urllib.request.urlopen(base + "/stats").read())


def reset(base: str) -> None:
    """Zero ``connections_server.py``'s counts."""
    urllib.request.urlopen(urllib.request.Request(base + "/stats", method="DELETE"))


def make_room(gateway: Any, channel: str, count: int) -> None:
    """``count`` connected sessions of ``gateway`` in ``channel``, in bulk."""
    from django_aws_api_gateway_websockets.models import WebSocketSession

    WebSocketSession.objects.bulk_create(
        [
            WebSocketSession(
                connection_id=f"{channel}-{n}", channel_name=channel, api_gateway=gateway
            )
            for n in range(1, count + 1)
        ],
        batch_size=2000,
    )
