"""Run ``manage.py runapigateway`` as a real process and talk to it like a browser would."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dj_database_url

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def e2e_database(tmp_dir: Path, server_url: str | None = None):
    """A throw-away database of the kind the suite runs on (SQLite file or PostgreSQL).

    ``server_url`` (default: ``DATABASE_URL``) names the PostgreSQL server to create it on.
    """
    configured = os.environ.get("DATABASE_URL", "") if server_url is None else server_url
    if not configured.startswith("postgres"):
        yield f"sqlite:///{tmp_dir / 'e2e.sqlite3'}"
        return
    import psycopg

    parsed = urllib.parse.urlsplit(configured)
    name = f"websockets_e2e_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield parsed._replace(path=f"/{name}").geturl()
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class GatewayProcess:
    """``runapigateway`` on a free port, with migrations and demo users in its own database.

    ``port``: a given port instead, e.g. the one of a gateway stopped before, so that a test can
    restart "the same" gateway (same database, same URLs) under clients that reconnect to it."""

    def __init__(
        self,
        database_url: str,
        *extra_args: str,
        env: dict[str, str] | None = None,
        port: int = 0,
        read_output: bool = True,
    ) -> None:
        """``read_output=False``: the caller reads ``process.stdout`` itself, and must keep
        reading it (a full pipe blocks the gateway's next log line, and with it the gateway)."""
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
            self.env.pop(name, None)
        self.database_url = database_url
        manage = [sys.executable, "manage.py"]
        for command in (["migrate", "-v0"], ["createdemo"]):
            subprocess.run(
                manage + command,
                cwd=ROOT,
                env=self.env,
                check=True,
                capture_output=True,
                timeout=180,
            )
        self.process = subprocess.Popen(
            [*manage, "runapigateway", "--port", str(port), *extra_args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        urls = self._wait_for_urls()
        self.base_url, self.ws_url = urls["Site"], urls["WebSocket"]
        self.port = urllib.parse.urlsplit(self.base_url).port
        self.connections_url = urls["@connections"].removesuffix("/@connections/{id}")
        # The gateway logs a few lines per event: unread, they fill the 64 KiB pipe after
        # about a hundred events and its next write blocks, stalling every socket.
        self.reader: threading.Thread | None = None
        if read_output:
            self.reader = threading.Thread(target=self._read_output, daemon=True)
            self.reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    def _wait_for_urls(self) -> dict[str, str]:
        """The URLs runapigateway prints: the site, the WebSocket and @connections."""
        deadline = time.monotonic() + 60
        urls: dict[str, str] = {}
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("runapigateway exited:\n" + "".join(self.output))
            self.output.append(line)
            match = re.match(r"\s+(Site|WebSocket|@connections):?\s+(\S+)", line)
            if match:
                urls[match.group(1)] = match.group(2)
            if len(urls) == 3:
                return urls
        raise RuntimeError("runapigateway did not start:\n" + "".join(self.output))

    def rest_of_output(self) -> str:
        """Everything the gateway printed; once it has stopped, to its last line."""
        if self.reader is None:
            assert self.process.stdout is not None
            return "".join(self.output) + self.process.stdout.read()
        if self.process.poll() is not None:
            self.reader.join(timeout=30)
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def query(self, sql: str, *params: Any) -> list[tuple]:
        """Read (or change, committed) the gateway's database directly: the test asserts on
        stored state, or sets some up behind the site's back."""
        if self.database_url.startswith("sqlite"):
            import sqlite3

            with sqlite3.connect(dj_database_url.parse(self.database_url)["NAME"]) as db:
                return db.execute(sql.replace("%s", "?"), params).fetchall()
        import psycopg

        with psycopg.connect(self.database_url) as db:
            cursor = db.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


class Browser:
    """A cookie-keeping HTTP client that logs in and asks for WebSocket tokens."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    @property
    def cookies(self) -> dict[str, str]:
        return {cookie.name: cookie.value for cookie in self.jar}

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{name}={value}" for name, value in self.cookies.items())

    def login(self, username: str, password: str | None = None) -> Browser:
        page = self.opener.open(self.base_url + "login/").read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {"username": username, "password": password or username, "csrfmiddlewaretoken": csrf}
        request = urllib.request.Request(
            self.base_url + "login/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Origin": self.base_url.rstrip("/")},
        )
        self.opener.open(request)
        assert "sessionid" in self.cookies, "login failed"
        return self

    def token(self) -> str:
        request = urllib.request.Request(
            self.base_url + "api/ws-token/",
            data=b"",
            method="POST",
            headers={"X-CSRFToken": self.cookies["csrftoken"], "Origin": self.base_url.rstrip("/")},
        )
        return json.loads(self.opener.open(request).read())["token"]

    def socket_headers(self) -> dict[str, str]:
        return {"Cookie": self.cookie_header, "Origin": self.base_url.rstrip("/")}
