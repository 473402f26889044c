"""Load through the local gateway: C WebSocket clients with tokens, M chat messages fanned
out to R rooms, every delivery checked (exactly once, nothing to the wrong room, no 5xx).

``manage.py runapigateway`` runs as its own process on a throw-away database; the clients run
here on one asyncio loop. The harness is ``tests/load_support.py`` (``tests/test_load_small.py``
runs it at a reduced size). The issue's full size:

    .venv/bin/python bench/load.py --clients 1000 --messages 50000 --rooms 20

Prints one JSON line; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import emit  # noqa: E402
from tests.e2e_support import e2e_database  # noqa: E402
from tests.load_support import LoadConfig, run_load  # noqa: E402


def main() -> int:
    defaults = LoadConfig()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=defaults.clients)
    parser.add_argument("--messages", type=int, default=defaults.messages)
    parser.add_argument("--rooms", type=int, default=defaults.rooms)
    parser.add_argument("--users", type=int, default=0, help="Default: one user per client.")
    parser.add_argument("--window", type=int, default=defaults.window, help="Unanswered sends.")
    parser.add_argument("--connect-concurrency", type=int, default=defaults.connect_concurrency)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="Seconds.")
    parser.add_argument("--database-url", default="", help="postgres://user@host:port/db")
    parser.add_argument("--sqlite-dir", default=None, help="Where the SQLite file goes.")
    arguments = parser.parse_args()
    config = LoadConfig(
        clients=arguments.clients,
        messages=arguments.messages,
        rooms=arguments.rooms,
        users=arguments.users,
        window=arguments.window,
        connect_concurrency=arguments.connect_concurrency,
        workers=arguments.workers,
        timeout=arguments.timeout,
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-load-", dir=arguments.sqlite_dir) as tmp,
        e2e_database(Path(tmp), arguments.database_url) as database_url,
    ):
        result = run_load(config, database_url)
    emit(result)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
