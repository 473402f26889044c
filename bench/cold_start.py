"""Cold start: a fresh Python process until the first CONNECT is answered, against a bare
``django.setup()`` of the same project (issue 5, target 4: ratio <= 1.25, peak RSS < 70 MB).

Both processes run with the hash-checked bytecode that zappa's ``prebuild_script``
(``serverless.packaging.compile_bytecode``) puts into the package; this machine sets
PYTHONDONTWRITEBYTECODE, so without it the project's modules would be compiled in every run.

Usage: .venv/bin/python bench/cold_start.py [--runs 5] [--database-url postgres://...]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

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

TARGET_RATIO = 1.25
TARGET_RSS_MIB = 70.0
CHILD_TIMEOUT = 120
# Modules the first CONNECT does not need; each is reported as imported or not.
HEAVY_MODULES = (
    "boto3",
    "botocore",
    "urllib3",
    "jmespath",
    "aws_lambda_powertools.metrics",
    "aws_lambda_powertools.logging",
    "aws_lambda_powertools.utilities.parser",
    "pydantic",
    "psycopg",
    "django.contrib.admin",
    "django.template",
    "whitenoise",
    "websockets",
    "zappa",
)

# Runs in the fresh process. "setup": bare django.setup(); "connect": import the Lambda entry
# point and answer the CONNECT event stored in argv[2]. Times are epoch seconds, so the parent
# can also count interpreter start-up from the moment it spawned the process.
CHILD = """
import time
started = time.time()
import json, resource, sys
mode, status = sys.argv[1], None
if mode == "setup":
    import django
    django.setup()
    imported = answered = time.time()
else:
    import lambda_handler
    imported = time.time()
    with open(sys.argv[2]) as source:
        event = json.load(source)
    status = lambda_handler.handler(event, None)["statusCode"]
    answered = time.time()
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "started": started,
    "imported": imported,
    "answered": answered,
    "status": status,
    "cpu": usage.ru_utime + usage.ru_stime,
    "peak_rss_kib": usage.ru_maxrss,
    "modules": len(sys.modules),
    "heavy": {name: name in sys.modules for name in json.loads(sys.argv[-1])},
}))
"""
IMPORTTIME_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def run_child(
    mode: str, database_url: str, event_file: Path | None, importtime: bool = False
) -> dict[str, Any]:
    """One fresh process; its summary, with times measured from the moment it was spawned."""
    command = [PYTHON, *(["-X", "importtime"] if importtime else []), "-c", CHILD, mode]
    command += [str(event_file or ""), json.dumps(HEAVY_MODULES)]
    spawned = time.time()
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=django_env(database_url, POWERTOOLS_LOG_LEVEL="INFO"),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{mode} child failed:\n{result.stderr[-3000:]}")
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    summary["from_spawn"] = summary["answered"] - spawned
    summary["interpreter_startup"] = summary["started"] - spawned
    summary["stderr"] = result.stderr
    return summary


def importtime_analysis(stderr: str) -> tuple[list[str], list[str]]:
    """Top 10 modules by cumulative import time, and top 10 packages by summed self time."""
    entries: list[tuple[str, int, int]] = []
    for line in stderr.splitlines():
        match = IMPORTTIME_LINE.match(line)
        if match:
            entries.append((match.group(4), int(match.group(1)), int(match.group(2))))
    by_cumulative = sorted(entries, key=lambda entry: entry[2], reverse=True)[:10]
    top = [
        f"{name}: {cum / 1000:.1f} ms cumulative ({own / 1000:.1f} self)"
        for name, own, cum in by_cumulative
    ]
    packages: dict[str, int] = defaultdict(int)
    for name, own, _ in entries:
        packages[name.split(".")[0]] += own
    ranked = sorted(packages.items(), key=lambda item: item[1], reverse=True)[:10]
    return top, [f"{name}: {own / 1000:.1f} ms self" for name, own in ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default=None, help="postgres://user@host:port/db")
    args = parser.parse_args()
    runs = max(1, min(args.runs, 50))

    # As deployed: the package carries the bytecode zappa's prebuild_script writes.
    compile_bytecode(ROOT)
    with (
        throwaway_database(args.database_url) as database_url,
        tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp,
    ):
        setup_django(database_url)
        create_gateway()
        # One authenticated CONNECT per child (tokens are single-use), plus warm-up and importtime.
        event_files = []
        for index in range(runs + 2):
            event = connect_event(f"cold{index}", f"Cold{index:04d}AAAA=", f"203.0.113.{index + 1}")
            path = Path(tmp) / f"connect{index}.json"
            path.write_text(json.dumps(event))
            event_files.append(path)
        close_django_connections()

        # Warm-up (bytecode caches, page cache), not counted.
        run_child("setup", database_url, None)
        run_child("connect", database_url, event_files[0])
        setups, connects = [], []
        for index in range(runs):  # alternate, so drift hits both alike
            setups.append(run_child("setup", database_url, None))
            connects.append(run_child("connect", database_url, event_files[index + 1]))
        traced = run_child("connect", database_url, event_files[-1], importtime=True)

    statuses = sorted({run["status"] for run in connects})
    if statuses != [200]:
        raise SystemExit(f"CONNECT was not accepted: {statuses}\n{connects[-1]['stderr'][-2000:]}")
    for run in connects:
        run["import"] = run["imported"] - run["started"]
        run["first_event"] = run["answered"] - run["imported"]
    ratio = median_of(connects, "from_spawn") / median_of(setups, "from_spawn")
    rss_mib = median_of(connects, "peak_rss_kib") / 1024
    top_cumulative, top_packages = importtime_analysis(traced["stderr"])
    last = connects[-1]
    emit(
        {
            "bench": "cold_start",
            "database": database_url.split(":", 1)[0],
            "runs": runs,
            # Wall time from spawning the process until django.setup() returned / the CONNECT
            # was answered (interpreter start-up included), medians.
            "setup_ms": ms(setups, "from_spawn"),
            "connect_ms": ms(connects, "from_spawn"),
            "ratio": round(ratio, 3),
            # Best of N of each: the least disturbed by other load on the machine.
            "ratio_best": round(
                min(run["from_spawn"] for run in connects)
                / min(run["from_spawn"] for run in setups),
                3,
            ),
            "interpreter_startup_ms": ms(setups + connects, "interpreter_startup"),
            "connect_import_ms": ms(connects, "import"),
            "connect_first_event_ms": ms(connects, "first_event"),
            # CPU time (user + sys) of the process at that point: less sensitive to other load.
            "setup_cpu_ms": ms(setups, "cpu"),
            "connect_cpu_ms": ms(connects, "cpu"),
            "ratio_cpu": round(median_of(connects, "cpu") / median_of(setups, "cpu"), 3),
            "peak_rss_mib": round(rss_mib, 1),
            "setup_peak_rss_mib": round(median_of(setups, "peak_rss_kib") / 1024, 1),
            "modules_loaded": last["modules"],
            "setup_modules_loaded": setups[-1]["modules"],
            "heavy_imported": [name for name, loaded in last["heavy"].items() if loaded],
            "heavy_not_imported": [name for name, loaded in last["heavy"].items() if not loaded],
            "importtime_top_cumulative": top_cumulative,
            "importtime_self_by_package": top_packages,
            "samples_setup_ms": [round(run["from_spawn"] * 1000, 1) for run in setups],
            "samples_connect_ms": [round(run["from_spawn"] * 1000, 1) for run in connects],
            "target_ratio": TARGET_RATIO,
            "ratio_met": ratio <= TARGET_RATIO,
            "target_peak_rss_mib": TARGET_RSS_MIB,
            "rss_met": rss_mib < TARGET_RSS_MIB,
        }
    )


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return median([run[key] for run in runs])


def ms(runs: list[dict[str, Any]], key: str) -> float:
    return round(median_of(runs, key) * 1000, 1)


if __name__ == "__main__":
    main()
