"""SnapStart: a restored copy's first CONNECT against a full cold start (issue 16, target 0.1x).

Cold: a fresh process imports ``lambda_handler`` (Lambda's init) and answers an authenticated
CONNECT, timed from the moment it is spawned (``cold_start.py``'s child). Restore: one process
runs the init once, then the SnapStart hooks as Lambda's runtime runs them before a snapshot
(``awslambdaric.lambda_runtime_hooks_runner`` when installed, else the hooks themselves); each
run forks a copy (standing in for the restore), which runs the after-restore hooks and answers
its own CONNECT, timed from just before the fork. Medians of ``--runs`` (10); both with the
package's hash-checked bytecode, like ``cold_start.py``. The example project rehearses its
connect before the snapshot (``WEBSOCKETS_SNAPSTART_REHEARSAL``; set it to false to compare).

SnapStart runs Python 3.12 and later only: measure with that interpreter, as deployed (a venv
of ``python3.12`` with requirements-dev.txt); the line names the Python it ran on.

Usage: .venv/bin/python bench/snapstart_restore.py [--runs 10] [--database-url postgres://...]
       [--sqlite-dir /dev/shm]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
from pathlib import Path

from cold_start import run_child
from common import (
    PYTHON,
    ROOT,
    close_django_connections,
    connect_event,
    create_gateway,
    django_env,
    emit,
    median,
    setup_django,
    throwaway_database,
)

from django_aws_api_gateway_websockets.serverless.packaging import compile_bytecode

TARGET_RATIO = 0.1

# The snapshotted process: init, the before-snapshot hooks, then one forked copy per event.
RESTORER = """
import json, os, sys, time
import lambda_handler
from django_aws_api_gateway_websockets.serverless import snapstart
try:
    from awslambdaric import lambda_runtime_hooks_runner as runtime_hooks
except ImportError:
    runtime_hooks = None
hooks_started = time.perf_counter()
if runtime_hooks is not None:
    runtime_hooks.run_before_snapshot()
else:
    snapstart.before_snapshot()
before_snapshot = time.perf_counter() - hooks_started
results = []
for path in sys.argv[1:]:
    with open(path) as source:
        event = json.load(source)
    reader, writer = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            if runtime_hooks is not None:
                runtime_hooks.run_after_restore()
            else:
                snapstart.after_restore()
            status = lambda_handler.handler(event, None)["statusCode"]
            os.write(writer, json.dumps([status, time.perf_counter() - started]).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        results.append(json.loads(pipe.read()))
    os.waitpid(pid, 0)
print(json.dumps({"before_snapshot": before_snapshot, "restored": results}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--database-url", default=None, help="postgres://user@host:port/db")
    parser.add_argument("--sqlite-dir", default=None, help="e.g. /dev/shm: no fsync on commit")
    args = parser.parse_args()
    runs = max(1, min(args.runs, 50))

    compile_bytecode(ROOT)
    with (
        throwaway_database(args.database_url, args.sqlite_dir) as database_url,
        tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp,
    ):
        setup_django(database_url)
        create_gateway()
        files = []
        for index in range(2 * runs + 2):
            event = connect_event(
                f"snap{index}", f"Snap{index:04d}AAAA=", f"198.51.100.{index + 1}"
            )
            path = Path(tmp) / f"connect{index}.json"
            path.write_text(json.dumps(event))
            files.append(path)
        close_django_connections()

        run_child("connect", database_url, files[0])  # warm-up: page cache, bytecode
        cold = [run_child("connect", database_url, files[1 + n]) for n in range(runs)]
        result = subprocess.run(
            [PYTHON, "-c", RESTORER, *map(str, files[runs + 1 : 2 * runs + 1])],
            cwd=ROOT,
            env=django_env(database_url, POWERTOOLS_LOG_LEVEL="INFO"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise SystemExit(f"restorer failed:\n{result.stderr[-3000:]}")
        snapshotted = json.loads(result.stdout.strip().splitlines()[-1])
        restored = snapshotted["restored"]

    statuses = sorted({run["status"] for run in cold} | {status for status, _ in restored})
    if statuses != [200]:
        raise SystemExit(f"CONNECT was not accepted: {statuses}")
    cold_median = median([run["from_spawn"] for run in cold])
    restore_median = median([seconds for _, seconds in restored])
    ratio = restore_median / cold_median
    emit(
        {
            "bench": "snapstart_restore",
            "python": platform.python_version(),
            "database": database_url.split(":", 1)[0],
            "runs": runs,
            "cold_start_connect_ms": round(cold_median * 1000, 1),
            "restore_connect_ms": round(restore_median * 1000, 1),
            "ratio": round(ratio, 3),
            # Paid once per published version, at publish time (the rehearsal is most of it).
            "before_snapshot_ms": round(snapshotted["before_snapshot"] * 1000, 1),
            "samples_cold_ms": [round(run["from_spawn"] * 1000, 1) for run in cold],
            "samples_restore_ms": [round(seconds * 1000, 1) for _, seconds in restored],
            "target_ratio": TARGET_RATIO,
            "met": ratio <= TARGET_RATIO,
        }
    )


if __name__ == "__main__":
    main()
