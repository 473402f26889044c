"""Bytecode for the Lambda package that stays valid after zappa has zipped it.

Lambda's file system is read-only, so a module whose ``.pyc`` is missing or stale is compiled
from source in every cold start, and the result is thrown away. zappa ships ``__pycache__``
directories but writes every zip entry dated 1980-01-01, so the usual timestamp-checked
``.pyc`` files (what pip and Python write) never match their sources on Lambda. Hash-checked
``.pyc`` files (PEP 552) compare the source's hash instead: valid whatever the dates, and a
changed source is still recompiled.

Use as zappa's ``prebuild_script``::

    "prebuild_script": "django_aws_api_gateway_websockets.serverless.packaging.compile_bytecode"

zappa loads this file on its own (not as part of the package), so it imports only the
standard library.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

# Project directories that zappa_settings.json leaves out of the package: not worth compiling.
SKIPPED_DIRECTORIES = (
    ".venv",
    "venv",
    ".git",
    "node_modules",
    "tests",
    "docs",
    "bench",
    "test-artifacts",
    "build",
    "dist",
)
COMPILE_TIMEOUT = 900


def packaged_python() -> str:
    """The interpreter of the virtualenv zappa packs (``VIRTUAL_ENV``): its version must be
    the Lambda runtime's, and bytecode is only valid for the version that wrote it."""
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        for name in ("python", "python3"):
            candidate = Path(venv) / "bin" / name
            if candidate.exists():
                return str(candidate)
    return sys.executable


def site_packages(python: str) -> str:
    if python == sys.executable:
        return sysconfig.get_paths()["purelib"]
    command = [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def compile_commands(project: Path, python: str) -> list[list[str]]:
    """``compileall`` runs: the project (without what is not packaged), then site-packages."""
    # -f: pip has already written timestamp-checked bytecode for every installed module, and
    # compileall keeps a .pyc whose header matches its source's time instead of rewriting it.
    common = [python, "-m", "compileall", "-f", "-q", "-j", "0"]
    common += ["--invalidation-mode", "checked-hash"]
    skipped = "|".join(name.replace(".", r"\.") for name in SKIPPED_DIRECTORIES)
    return [
        [*common, "-x", rf"[/\\]({skipped})[/\\]", str(project)],
        [*common, site_packages(python)],
    ]


def compile_bytecode(project: str | os.PathLike[str] | None = None) -> None:
    """Write hash-checked ``.pyc`` files for the project and the packaged virtualenv."""
    root = Path(project or os.getcwd()).resolve()
    python = packaged_python()
    for command in compile_commands(root, python):
        result = subprocess.run(command, capture_output=True, text=True, timeout=COMPILE_TIMEOUT)
        if result.returncode != 0:
            # A file that does not compile would fail at import on Lambda as well: say which.
            raise RuntimeError(f"compileall failed:\n{(result.stdout + result.stderr)[-4000:]}")
