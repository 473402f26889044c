"""Load through the local gateway: many real WebSocket clients chatting in rooms.

One harness for ``bench/load.py`` (full size, figures) and ``tests/test_load_small.py``
(reduced size, in the suite). ``run_load``:

1. starts ``manage.py runapigateway`` as a process on its own database
   (``tests.e2e_support.GatewayProcess``), with the connection and token rate limits raised;
2. seeds K users (password = username) and R public rooms into that database, and logs each
   user in by creating a Django session for them directly (an HTTP login of 1 000 users would
   spend minutes in the password hasher);
3. per client: a token from ``POST /api/ws-token/`` over HTTP with that session, then a
   WebSocket connect through the emulator with ``ws_token``, ``channel``, Cookie and Origin;
4. sends M ``chat_message`` actions (client ``j % C`` sends message ``j``), at most ``window``
   of them unanswered at once, each with a unique text;
5. checks that every message reached every client of its room exactly once, and nobody else;
   that every send was acknowledged with the room's size; and that the gateway logged no
   error and answered no event with a 5xx.

Everything runs on 127.0.0.1; proxies from the environment are ignored.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import secrets
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import IO, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.e2e_support import ROOT, GatewayProcess

TEXT_PREFIX = "load-"
USER_PREFIX = "load"
ROOM_PREFIX = "load-room-"
# Seeded passwords are hashed with few PBKDF2 iterations: the hasher's default costs ~0.3 s a
# user. Django upgrades such a hash on the user's first login.
SEED_PASSWORD_ITERATIONS = 1000
SESSIONS_TABLE = "django_aws_api_gateway_websockets_websocketsession"


@dataclass(frozen=True)
class LoadConfig:
    clients: int = 100
    messages: int = 80
    rooms: int = 5
    users: int = 0  # 0: one user per client
    window: int = 2  # chat messages sent and not yet answered, at most
    # Connects in flight. SQLite: $connect holds the write lock through its presence fan-out,
    # and writers waiting over 5 s fail (bench/README.md, "What dominates").
    connect_concurrency: int = 2
    workers: int = 8  # runapigateway --workers: concurrent Lambda invocations
    timeout: float = 600.0  # the whole run, start-up included
    settle: float = 0.5  # seconds to keep listening for duplicates after the last delivery

    @property
    def user_count(self) -> int:
        return self.users or self.clients

    def gateway_env(self) -> dict[str, str]:
        """Rate limits high enough for every client to connect from 127.0.0.1 in a minute,
        and no per-connection message limit (a few clients may carry the whole load)."""
        limit = str(max(20, 2 * self.clients))
        return {
            "WEBSOCKETS_RATE_LIMIT_MAX_ATTEMPTS": limit,
            "WEBSOCKETS_TOKEN_RATE_LIMIT_PER_MINUTE": limit,
            "WEBSOCKETS_MESSAGE_RATE_LIMIT": "off",
        }


def raise_open_files_limit() -> int:
    """Raise this process's (and its children's) soft RLIMIT_NOFILE to the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


# ---------------------------------------------------------------------------- seeding


def seed_database(users: int, rooms: int) -> dict[str, list[str]]:
    """Users, one logged-in session each, and rooms; run inside the gateway's environment."""
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.auth.hashers import PBKDF2PasswordHasher
    from django.contrib.sessions.backends.base import VALID_KEY_CHARS
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from websocket_app.models import Room

    user_model = get_user_model()
    hasher = PBKDF2PasswordHasher()
    names = [f"{USER_PREFIX}{n:05d}" for n in range(users)]
    user_model.objects.bulk_create(
        [
            user_model(
                username=name,
                password=hasher.encode(name, hasher.salt(), SEED_PASSWORD_ITERATIONS),
            )
            for name in names
        ],
        batch_size=500,
    )
    slugs = [f"{ROOM_PREFIX}{n:03d}" for n in range(rooms)]
    Room.objects.bulk_create([Room(slug=slug, title=slug) for slug in slugs])
    store = SessionStore()
    expires = timezone.now() + timezone.timedelta(seconds=settings.SESSION_COOKIE_AGE)
    sessions = []
    for user in user_model.objects.filter(username__in=names).order_by("username"):
        data = {
            SESSION_KEY: str(user.pk),
            BACKEND_SESSION_KEY: settings.AUTHENTICATION_BACKENDS[0],
            HASH_SESSION_KEY: user.get_session_auth_hash(),
        }
        key = get_random_string(32, VALID_KEY_CHARS)
        sessions.append(
            Session(session_key=key, session_data=store.encode(data), expire_date=expires)
        )
    Session.objects.bulk_create(sessions, batch_size=500)
    return {"sessions": [session.session_key for session in sessions], "rooms": slugs}


def seed(gateway: GatewayProcess, config: LoadConfig, timeout: float) -> dict[str, list[str]]:
    command = (
        "import json, sys; from tests.load_support import seed_database; "
        "print(json.dumps(seed_database(int(sys.argv[1]), int(sys.argv[2]))))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", command, str(config.user_count), str(config.rooms)],
        cwd=ROOT,
        env=gateway.env,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- gateway log


class GatewayLog(threading.Thread):
    """Reads the gateway's output, so it never blocks on a full pipe, and counts trouble:
    events the handler answered with a 5xx, and errors or tracebacks logged."""

    STATUS = re.compile(r'"status":\s*(\d+)')
    TROUBLE = ('"level":"ERROR"', '"level":"CRITICAL"', "Traceback (most recent", "Handler failed")

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            if '"message":"Event handled"' in line:
                status = self.STATUS.search(line)
                self.statuses[int(status.group(1)) if status else 0] += 1
            if any(marker in line for marker in self.TROUBLE):
                self.errors.append(summarize(line))

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


def summarize(line: str) -> str:
    """A log line as its message and, for a JSON record, the last line of its exception."""
    try:
        record = json.loads(line)
    except ValueError:
        return line.strip()[:300]
    if not isinstance(record, dict):
        return line.strip()[:300]
    exception = str(record.get("exception") or "").strip().splitlines()
    return f"{record.get('message', '')} {exception[-1] if exception else ''}".strip()[:300]


# ---------------------------------------------------------------------------- clients


@dataclass
class Client:
    index: int
    session_key: str
    room: int
    socket: ClientConnection | None = None
    reader: asyncio.Task[None] | None = None
    # Messages this client sent that the gateway has not answered yet, oldest first.
    outstanding: deque[int] = field(default_factory=deque)


class LoadRun:
    """The clients of one run, what they sent and received, and the checks on it."""

    def __init__(
        self, config: LoadConfig, gateway: GatewayProcess, sessions: list[str], rooms: list[str]
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.rooms = rooms
        self.csrf = secrets.token_hex(16)
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.clients = [
            Client(n, sessions[n % len(sessions)], n % config.rooms) for n in range(config.clients)
        ]
        self.connect_seconds: list[float] = []
        self.connect_failures: Counter[str] = Counter()
        self.room_size = [0] * config.rooms
        messages = config.messages
        self.message_room = array("l", bytes(8 * messages))
        self.sent_at = array("d", bytes(8 * messages))
        self.received = {client.index: bytearray(messages) for client in self.clients}
        self.latencies = array("d")
        self.sent = self.answered = self.acked = 0
        self.expected = self.delivered = self.duplicated = self.misrouted = self.foreign = 0
        self.ack_mismatches = 0
        self.error_replies: list[str] = []
        self.dropped = 0
        self.closing = self.finished_sending = False
        self.traffic_started = self.last_delivery = 0.0
        self.window = asyncio.Semaphore(config.window)
        self.done = asyncio.Event()

    # ----------------------------------------------------------------- connect

    def fetch_token(self, session_key: str) -> str:
        origin = self.gateway.base_url.rstrip("/")
        request = urllib.request.Request(
            self.gateway.base_url + "api/ws-token/",
            data=b"",
            method="POST",
            headers={
                "Cookie": f"sessionid={session_key}; csrftoken={self.csrf}",
                "X-CSRFToken": self.csrf,
                "Origin": origin,
            },
        )
        with self.opener.open(request, timeout=60) as response:
            return json.loads(response.read())["token"]

    async def connect(self, client: Client, slots: asyncio.Semaphore) -> None:
        async with slots:
            started = time.perf_counter()
            try:
                token = await asyncio.to_thread(self.fetch_token, client.session_key)
                url = f"{self.gateway.ws_url}?ws_token={token}&channel={self.rooms[client.room]}"
                client.socket = await connect(
                    url,
                    additional_headers={
                        "Cookie": f"sessionid={client.session_key}",
                        "Origin": self.gateway.base_url.rstrip("/"),
                    },
                    open_timeout=60,
                    ping_interval=None,
                    compression=None,
                    proxy=None,
                )
            except InvalidStatus as refused:
                self.connect_failures[f"HTTP {refused.response.status_code}"] += 1
            except urllib.error.HTTPError as refused:
                self.connect_failures[f"token HTTP {refused.code}"] += 1
            except (OSError, TimeoutError, InvalidHandshake) as error:
                self.connect_failures[type(error).__name__] += 1
            else:
                self.connect_seconds.append(time.perf_counter() - started)
                self.room_size[client.room] += 1
                client.reader = asyncio.create_task(self.receive(client))

    async def connect_all(self) -> float:
        slots = asyncio.Semaphore(self.config.connect_concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(self.connect(client, slots) for client in self.clients))
        return time.perf_counter() - started

    # ----------------------------------------------------------------- traffic

    async def send_all(self) -> None:
        senders = [client for client in self.clients if client.socket is not None]
        for number in range(self.config.messages if senders else 0):
            client = senders[number % len(senders)]
            assert client.socket is not None
            await self.window.acquire()
            self.message_room[number] = client.room
            self.expected += self.room_size[client.room]
            client.outstanding.append(number)
            self.sent_at[number] = time.perf_counter()
            body = {"action": "chat_message", "message": f"{TEXT_PREFIX}{number}"}
            try:
                await client.socket.send(json.dumps(body))
            except ConnectionClosed:
                client.outstanding.pop()
                self.expected -= self.room_size[client.room]
                self.window.release()
                continue
            self.sent += 1
        self.finished_sending = True
        self.check_done()

    async def receive(self, client: Client) -> None:
        assert client.socket is not None
        try:
            async for raw in client.socket:
                now = time.perf_counter()
                event = json.loads(raw)
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == "chat_message":
                    self.on_chat(client, event, now)
                elif kind != "presence":
                    self.on_reply(client, event, str(raw))
        except ConnectionClosed:
            pass
        if not self.closing:
            self.dropped += 1

    def on_chat(self, client: Client, event: dict[str, Any], now: float) -> None:
        text = event.get("message")
        number = message_number(text) if isinstance(text, str) else None
        if number is None or number >= self.config.messages:
            self.foreign += 1
            return
        seen = self.received[client.index]
        if self.message_room[number] != client.room or event.get("room") != self.rooms[client.room]:
            self.misrouted += 1
        elif seen[number]:
            self.duplicated += 1
        else:
            seen[number] = 1
            self.delivered += 1
            self.latencies.append(now - self.sent_at[number])
            self.last_delivery = now
            self.check_done()

    def on_reply(self, client: Client, event: Any, raw: str) -> None:
        """The route response to the oldest message this client has not had answered."""
        if not client.outstanding:
            self.error_replies.append(raw[:300])
            return
        client.outstanding.popleft()
        self.answered += 1
        if isinstance(event, dict) and event.get("type") == "ack":
            self.acked += 1
            if event.get("delivered") != self.room_size[client.room]:
                self.ack_mismatches += 1
        else:
            self.error_replies.append(raw[:300])
        self.window.release()
        self.check_done()

    def check_done(self) -> None:
        if self.finished_sending and self.answered == self.sent and self.delivered >= self.expected:
            self.done.set()

    async def close_all(self) -> None:
        self.closing = True
        sockets = [client.socket for client in self.clients if client.socket is not None]
        await asyncio.gather(*(socket.close() for socket in sockets), return_exceptions=True)
        readers = [client.reader for client in self.clients if client.reader is not None]
        await asyncio.gather(*readers, return_exceptions=True)

    # ----------------------------------------------------------------- run

    async def drive(self, seconds: float) -> dict[str, Any]:
        """Connect, chat, wait for every delivery, close; give up after ``seconds``."""
        phases: dict[str, Any] = {"timed_out": False}
        try:
            async with asyncio.timeout(seconds):
                phases["connect_seconds"] = await self.connect_all()
                phases["sessions_connected"] = await asyncio.to_thread(
                    self.gateway.query, f"SELECT COUNT(*) FROM {SESSIONS_TABLE} WHERE connected"
                )
                self.traffic_started = time.perf_counter()
                await self.send_all()
                await self.done.wait()
                await asyncio.sleep(self.config.settle)
        except TimeoutError:
            phases["timed_out"] = True
        try:
            async with asyncio.timeout(60):
                await self.close_all()
        except TimeoutError:
            phases["close_timed_out"] = True
        return phases


def message_number(text: str) -> int | None:
    """``j`` of the unique text ``load-<j>`` of message ``j``, else None."""
    digits = text.removeprefix(TEXT_PREFIX)
    return int(digits) if text.startswith(TEXT_PREFIX) and digits.isdigit() else None


def percentile(values: array | list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def milliseconds(seconds: float) -> float:
    return round(seconds * 1000, 2)


def run_load(config: LoadConfig, database_url: str) -> dict[str, Any]:
    """Run the load against a fresh gateway on ``database_url``; the figures and checks."""
    started = time.monotonic()
    open_files = raise_open_files_limit()
    gateway = GatewayProcess(
        database_url,
        "--workers",
        str(config.workers),
        env=config.gateway_env(),
        read_output=False,
    )
    assert gateway.process.stdout is not None
    log = GatewayLog(gateway.process.stdout)
    log.start()
    try:
        seeded = seed(
            gateway, config, timeout=max(1.0, config.timeout - (time.monotonic() - started))
        )
        run = LoadRun(config, gateway, seeded["sessions"], seeded["rooms"])
        remaining = config.timeout - (time.monotonic() - started)
        phases = asyncio.run(run.drive(remaining))
    finally:
        exit_code = gateway.stop()
        log.join(timeout=30)
    return report(config, run, phases, log, exit_code, database_url, open_files, started)


def report(
    config: LoadConfig,
    run: LoadRun,
    phases: dict[str, Any],
    log: GatewayLog,
    exit_code: int,
    database_url: str,
    open_files: int,
    started: float,
) -> dict[str, Any]:
    accepted = len(run.connect_seconds)
    connected_rows = phases.get("sessions_connected", [(0,)])[0][0]
    # From the first send to the last delivery (to the deadline's last one if it timed out).
    traffic = max(0.0, run.last_delivery - run.traffic_started)
    result: dict[str, Any] = {
        "bench": "load",
        "database": "postgresql" if database_url.startswith("postgres") else "sqlite",
        "clients": config.clients,
        "users": config.user_count,
        "rooms": config.rooms,
        "messages": config.messages,
        "window": config.window,
        "workers": config.workers,
        "open_files_limit": open_files,
        "connects": {
            "accepted": accepted,
            "refused": dict(run.connect_failures),
            "sessions_connected": connected_rows,
            "seconds": round(phases.get("connect_seconds", 0.0), 2),
            "per_second": round(accepted / phases["connect_seconds"], 1)
            if phases.get("connect_seconds")
            else 0.0,
            "p50_ms": milliseconds(percentile(run.connect_seconds, 0.5)),
            "p99_ms": milliseconds(percentile(run.connect_seconds, 0.99)),
        },
        "sent": run.sent,
        "acked": run.acked,
        "expected_deliveries": run.expected,
        "delivered": run.delivered,
        "lost": run.expected - run.delivered,
        "duplicated": run.duplicated,
        "misrouted": run.misrouted,
        "foreign_messages": run.foreign,
        "ack_mismatches": run.ack_mismatches,
        "error_replies": len(run.error_replies),
        "dropped_sockets": run.dropped,
        "handler_5xx": log.server_errors,
        "handler_statuses": {str(status): count for status, count in sorted(log.statuses.items())},
        "gateway_errors": len(log.errors),
        "gateway_exit_code": exit_code,
        "traffic_seconds": round(traffic, 2),
        "messages_per_second": round(run.acked / traffic, 1) if traffic else 0.0,
        "deliveries_per_second": round(run.delivered / traffic, 1) if traffic else 0.0,
        "latency_ms": {
            "p50": milliseconds(percentile(run.latencies, 0.5)),
            "p99": milliseconds(percentile(run.latencies, 0.99)),
            "max": milliseconds(max(run.latencies, default=0.0)),
        },
        "timed_out": phases["timed_out"],
        "total_seconds": round(time.monotonic() - started, 1),
        "samples": {"errors": log.errors[:5], "error_replies": run.error_replies[:5]},
    }
    result["ok"] = (
        not result["timed_out"]
        and accepted == config.clients
        and connected_rows == config.clients
        and run.sent == run.acked == config.messages
        and result["lost"] == result["duplicated"] == result["misrouted"] == 0
        and result["ack_mismatches"] == result["error_replies"] == result["dropped_sockets"] == 0
        and result["handler_5xx"] == result["gateway_errors"] == 0
        and exit_code == 0
    )
    return result
