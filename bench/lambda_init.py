"""Lambda init time of the zappa package, in the Lambda-like sandbox the package test uses.

Each run is a fresh execution environment (tests/lambda_sandbox.py): the package unzipped
read-only, ``python3.12 -I -S`` as an unprivileged user with Lambda's environment, AWS's
runtime interface client loading ``lambda_handler.handler``. Init is the time from starting the
interpreter to its first ``GET /invocation/next`` (what Lambda reports as Init Duration); the
first event is zappa's keep-warm ping, which touches no database. The package is built once
(cached like the test's, rebuilt when a packed file changes).

Usage: .venv/bin/python bench/lambda_init.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from common import EVENTS_DIR, ROOT, emit

sys.path.insert(0, str(ROOT))
from tests.lambda_package import build_runtime_dir, cached_package, runtime_python  # noqa: E402
from tests.lambda_sandbox import LambdaSandbox, lambda_environment  # noqa: E402

SETTINGS = json.loads((ROOT / "zappa_settings.json").read_text())["dev"]
FUNCTION_NAME = f"{SETTINGS['project_name']}-dev"


def one_run(package, runtime_dir, python) -> dict[str, object]:
    variables = {
        **SETTINGS["aws_environment_variables"],
        "DJANGO_SECRET_KEY": "bench-" + "k" * 50,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/not-used-by-init",
    }
    env = lambda_environment(
        FUNCTION_NAME, SETTINGS["lambda_handler"], SETTINGS["aws_region"], variables
    )
    with LambdaSandbox(package, runtime_dir, python, env) as sandbox:
        warm = sandbox.invoke(json.loads((EVENTS_DIR / "keep_warm.json").read_text()))
        return {
            "init_s": sandbox.init_seconds,
            "first_event_ms": warm.seconds * 1000,
            "answered": warm.result == {"status": "warm"},
            "boto3_at_init": "boto3" in sandbox.imports_at_init,
            "botocore_at_init": "botocore" in sandbox.imports_at_init,
            "writes": len(sandbox.writes),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    package, runtime_dir, python = cached_package("dev"), build_runtime_dir(), runtime_python()
    runs = [one_run(package, runtime_dir, python) for _ in range(args.runs)]
    inits = [float(run["init_s"]) for run in runs]
    emit(
        {
            "bench": "lambda_init",
            "runs": args.runs,
            "init_ms_median": round(statistics.median(inits) * 1000, 1),
            "init_ms_min": round(min(inits) * 1000, 1),
            "init_ms_max": round(max(inits) * 1000, 1),
            "first_event_ms_median": round(
                statistics.median(float(run["first_event_ms"]) for run in runs), 2
            ),
            "all_answered": all(run["answered"] for run in runs),
            "boto3_at_init": any(run["boto3_at_init"] for run in runs),
            "botocore_at_init": any(run["botocore_at_init"] for run in runs),
            "write_attempts_outside_tmp": max(int(run["writes"]) for run in runs),
            "package_mib": round(package.stat().st_size / 1024 / 1024, 2),
        }
    )


if __name__ == "__main__":
    main()
