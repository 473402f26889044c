"""Deployment size: ``zappa package dev`` built as serverless-notes.md tells users (issue 11
target: under 25 MiB zipped), and what dominates it.

The build venv is the one the package test uses (tests/lambda_package.py): pyenv's Python 3.12
with requirements.txt and zappa, cached in ~/.cache/serverless-django-websockets/ under a hash of
requirements.txt and the zappa version; ``zappa package`` runs from that venv, offline (dummy AWS
credentials, TMPDIR beside the zip). The package itself is built afresh (about 30-60 s).

Usage: .venv/bin/python bench/package_size.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

from common import ROOT, emit

sys.path.insert(0, str(ROOT))
from tests.lambda_package import build_package, build_venv, runtime_python  # noqa: E402

TARGET_MIB = 25.0
STAGE = "dev"
MB, MIB = 1_000_000, 1024 * 1024
# Lambda's python3.12 runtime provides these; zappa needs those only to build: none is packed.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six.py")
BUILD_ONLY = ("zappa", "troposphere", "setuptools", "yaml", "werkzeug", "click", "tqdm", "pip")


def python_version(python: str | Path) -> str:
    command = [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def analyse(archive: Path, runtime_version: str) -> dict[str, object]:
    compressed: Counter[str] = Counter()
    uncompressed: Counter[str] = Counter()
    files: Counter[str] = Counter()
    with zipfile.ZipFile(archive) as zipped:
        infos = zipped.infolist()
    for info in infos:
        top = info.filename.split("/", 1)[0]
        compressed[top] += info.compress_size
        uncompressed[top] += info.file_size
        files[top] += 1
    names = {info.filename for info in infos}
    tag = f"cpython-{runtime_version.replace('.', '')}"
    size = archive.stat().st_size
    return {
        "zip_mib": round(size / MIB, 2),
        "zip_mb": round(size / MB, 2),
        "unzipped_mib": round(sum(info.file_size for info in infos) / MIB, 2),
        "files": len(infos),
        "top_entries": [
            {
                "name": name,
                "zipped_mib": round(size / MIB, 2),
                "unzipped_mib": round(uncompressed[name] / MIB, 2),
                "files": files[name],
            }
            for name, size in compressed.most_common(15)
        ],
        "pyc_mib": round(
            sum(i.compress_size for i in infos if i.filename.endswith(".pyc")) / MIB, 2
        ),
        "locale_mib": round(
            sum(i.compress_size for i in infos if "/locale/" in i.filename) / MIB, 2
        ),
        "runtime_stack_in_package": sorted(set(RUNTIME_PROVIDED) & set(compressed)),
        "build_tools_in_package": sorted(set(BUILD_ONLY) & set(compressed)),
        "sanity": {
            "has_handler": "lambda_handler.py" in names,
            "has_django_staticfiles": "django/contrib/staticfiles/apps.py" in names,
            "runtime_bytecode": any(tag in name for name in names),
            "project_bytecode": any(
                name.startswith("django_aws_api_gateway_websockets/") and name.endswith(".pyc")
                for name in names
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", default=None, help="build the zip here and keep it")
    args = parser.parse_args()
    python = runtime_python()
    runtime_version = python_version(python)
    started = time.perf_counter()
    venv = build_venv(python)
    venv_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="bench-pkg-") as scratch:
        directory = Path(args.keep or scratch).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        archive = build_package(directory / "package.zip", STAGE, venv)
        package_seconds = time.perf_counter() - started
        result = analyse(archive, runtime_version)
    emit(
        {
            "bench": "package_size",
            "stage": STAGE,
            "runtime_python": runtime_version,
            "build_venv_seconds": round(venv_seconds, 1),  # about 0 when cached
            "zappa_package_seconds": round(package_seconds, 1),
            **result,
            "target_mib": TARGET_MIB,
            "met": result["zip_mib"] < TARGET_MIB,
        }
    )


if __name__ == "__main__":
    main()
