"""Deployment size: the zappa package built from a runtime-only venv (issue 5, target 5:
under 30 MB zipped), and what dominates it.

Builds a venv of the Lambda runtime's Python (pyenv 3.12 when present) with only
requirements.txt, then runs the dev venv's ``zappa package production`` against it offline
(dummy AWS credentials, TMPDIR inside the build directory). Takes a minute or two.

Usage: .venv/bin/python bench/package_size.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections import Counter
from pathlib import Path

from common import ROOT, emit

TARGET_MB = 30.0
ZAPPA = ROOT / ".venv" / "bin" / "zappa"
STAGE = "production"
INSTALL_TIMEOUT = 900
PACKAGE_TIMEOUT = 900
MB, MIB = 1_000_000, 1024 * 1024


def runtime_python() -> str:
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.12.*/bin/python3.12"))
    found = candidates[-1] if candidates else shutil.which("python3")
    if not found:
        raise SystemExit("No python3.12 or python3 found")
    return found


def python_version(python: str | Path) -> str:
    command = [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def build_venv(python: str, venv: Path) -> None:
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ]
        + ["-r", str(ROOT / "requirements.txt")],
        check=True,
        timeout=INSTALL_TIMEOUT,
    )
    # zappa looks for lib/python<its own version>/site-packages in VIRTUAL_ENV: when the dev
    # venv's Python differs from the runtime's, point that name at the runtime's packages.
    zappa_version, runtime_version = (
        python_version(ZAPPA.with_name("python")),
        python_version(python),
    )
    alias = venv / "lib" / f"python{zappa_version}"
    if zappa_version != runtime_version and not alias.exists():
        alias.symlink_to(f"python{runtime_version}")


def package(venv: Path, tmp: Path) -> Path:
    output = tmp / "pkg.zip"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "TMPDIR": str(tmp),
    }
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    result = subprocess.run(
        [str(ZAPPA), "package", STAGE, "-o", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PACKAGE_TIMEOUT,
    )
    if result.returncode != 0 or not output.exists():
        raise SystemExit(f"zappa package failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return output


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
        "zip_mb": round(size / MB, 2),
        "zip_mib": round(size / MIB, 2),
        "unzipped_mb": round(sum(info.file_size for info in infos) / MB, 2),
        "files": len(infos),
        "top_entries": [
            {
                "name": name,
                "zipped_mb": round(size / MB, 2),
                "unzipped_mb": round(uncompressed[name] / MB, 2),
                "files": files[name],
            }
            for name, size in compressed.most_common(15)
        ],
        "pyc_mb": round(sum(i.compress_size for i in infos if i.filename.endswith(".pyc")) / MB, 2),
        "locale_mb": round(sum(i.compress_size for i in infos if "/locale/" in i.filename) / MB, 2),
        # Lambda's python runtime already ships these (boto3 and its dependencies).
        "in_lambda_runtime_mb": round(
            sum(
                compressed[name]
                for name in ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3")
            )
            / MB,
            2,
        ),
        "sanity": {
            "has_handler": "lambda_handler.py" in names,
            "has_django": "django/__init__.py" in names,
            "runtime_bytecode": any(tag in name for name in names),
            "project_bytecode": any(
                name.startswith("django_aws_api_gateway_websockets/") and name.endswith(".pyc")
                for name in names
            ),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keep", default=None, help="build here and keep venv and zip")
    args = parser.parse_args()
    python = runtime_python()
    runtime_version = python_version(python)
    with tempfile.TemporaryDirectory(prefix="bench-pkg-") as scratch:
        tmp = Path(args.keep or scratch).resolve()
        tmp.mkdir(parents=True, exist_ok=True)
        venv = tmp / "venv"
        if not (venv / "bin" / "python").exists():
            build_venv(python, venv)
        result = analyse(package(venv, tmp), runtime_version)
    emit(
        {
            "bench": "package_size",
            "stage": STAGE,
            "runtime_python": runtime_version,
            "zappa_python": python_version(ZAPPA.with_name("python")),
            **result,
            "target_mb": TARGET_MB,
            "met": result["zip_mb"] < TARGET_MB,
        }
    )


if __name__ == "__main__":
    main()
