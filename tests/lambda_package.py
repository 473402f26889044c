"""Build the Lambda package the way the docs tell users, with the slow parts cached.

serverless-notes.md says: a clean virtualenv of the runtime's Python (python3.12) holding
``requirements.txt`` and zappa, then ``zappa package`` run from that venv. Installing that venv
takes about a minute, so it is cached outside the repository (``~/.cache/...``, or
``$SERVERLESS_WEBSOCKETS_CACHE``) under a hash of requirements.txt, the zappa version and the
runtime Python: a fresh clone on the same machine (CI) reuses it, a changed requirement builds a
new one. The directory standing in for the runtime's own packages (what AWS's python3.12 image
provides beside the function's code) is cached the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
RUNTIME_VERSION = "3.12"
INSTALL_TIMEOUT = 1200
PACKAGE_TIMEOUT = 900
STALE_PACKAGE_SECONDS = 6 * 3600

# What AWS's python3.12 runtime provides outside the function's package (its SDK, at the
# version AWS documents for that runtime in 2025), and AWS's runtime interface client, which
# is the runtime's own bootstrap. Nothing else is importable there but the standard library.
RUNTIME_PROVIDED = ("boto3==1.40.4", "botocore==1.40.4")
RUNTIME_BOOTSTRAP = "awslambdaric==4.2.2"


def cache_root() -> Path:
    configured = os.environ.get("SERVERLESS_WEBSOCKETS_CACHE")
    base = Path(configured) if configured else Path.home() / ".cache"
    return base / "serverless-django-websockets" if not configured else base


def runtime_python() -> str:
    """The Lambda runtime's interpreter: ``$LAMBDA_RUNTIME_PYTHON`` or pyenv's 3.12."""
    configured = os.environ.get("LAMBDA_RUNTIME_PYTHON")
    if configured:
        return configured
    pyenv = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{pyenv}/versions/{RUNTIME_VERSION}.*/bin/python{RUNTIME_VERSION}"))
    if found:
        return found[-1]
    on_path = shutil.which(f"python{RUNTIME_VERSION}")
    if not on_path:
        raise RuntimeError(f"No python{RUNTIME_VERSION}: set LAMBDA_RUNTIME_PYTHON")
    return on_path


def zappa_version() -> str:
    """The zappa the suite's own venv has: the build venv installs the same release."""
    return metadata.version("zappa")


def _key(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def _full_version(python: str) -> str:
    command = [python, "-c", "import sys; print(sys.version.split()[0])"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One builder at a time per cache entry (two test runs may start together)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(directory.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _pip(python: str, *args: str) -> None:
    command = [python, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{result.stderr[-3000:]}")


def build_venv(python: str | None = None) -> Path:
    """The runtime-Python venv with requirements.txt and zappa (cached; built on first use)."""
    python = python or runtime_python()
    zappa = zappa_version()
    key = _key(REQUIREMENTS.read_text(), zappa, _full_version(python))
    venv = cache_root() / f"build-venv-{key}"
    done = venv / ".complete"
    if done.exists():
        return venv
    with _locked(venv):
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=INSTALL_TIMEOUT)
        venv_python = str(venv / "bin" / "python")
        _pip(venv_python, "install", "--upgrade", "pip>=24")  # zappa 0.63 wants pip >= 24
        _pip(venv_python, "install", "-r", str(REQUIREMENTS), f"zappa=={zappa}")
        done.write_text(f"requirements.txt + zappa=={zappa} on Python {_full_version(python)}\n")
    return venv


def build_runtime_dir(python: str | None = None) -> Path:
    """A directory holding only what AWS's python3.12 runtime provides (cached)."""
    python = python or runtime_python()
    key = _key(*RUNTIME_PROVIDED, RUNTIME_BOOTSTRAP, _full_version(python))
    target = cache_root() / f"lambda-runtime-{key}"
    done = target / ".complete"
    if done.exists():
        return target
    with _locked(target):
        if done.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        # Compiled (pip's default), as the runtime's own packages are: its disk is read-only.
        _pip(python, "install", "--target", str(target), *RUNTIME_PROVIDED, RUNTIME_BOOTSTRAP)
        shutil.rmtree(target / "bin", ignore_errors=True)
        done.write_text(" ".join((*RUNTIME_PROVIDED, RUNTIME_BOOTSTRAP)) + "\n")
    return target


def site_packages(venv: Path) -> Path:
    return venv / "lib" / f"python{RUNTIME_VERSION}" / "site-packages"


def build_package(output: Path, stage: str = "dev", venv: Path | None = None) -> Path:
    """``zappa package <stage>`` run from the build venv, offline, with dummy credentials.

    zappa only reads the credentials to name things; nothing is sent to AWS. Its caches go to
    ``TMPDIR`` (beside ``output``), never the repository.
    """
    venv = venv or build_venv()
    scratch = output.parent / "zappa-tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", str(Path.home())),
        "VIRTUAL_ENV": str(venv),
        "TMPDIR": str(scratch),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "LANG": "C.UTF-8",
    }
    result = subprocess.run(
        [str(venv / "bin" / "zappa"), "package", stage, "-o", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PACKAGE_TIMEOUT,
    )
    if result.returncode != 0 or not output.exists():
        raise RuntimeError(
            f"zappa package failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        )
    shutil.rmtree(scratch, ignore_errors=True)
    return output


# What never reaches the package, so a change there does not call for a new one.
NOT_PACKAGED = {".git", ".venv", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache"}
NOT_PACKAGED |= {"tests", "docs", "bench", "test-artifacts", "htmlcov"}


def project_digest() -> str:
    """A digest of every project file zappa may pack (names and contents)."""
    digest = hashlib.sha256()
    for directory, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(name for name in dirs if name not in NOT_PACKAGED)
        for name in sorted(files):
            # Build and test by-products (coverage data files appear during a test run).
            if name.endswith((".pyc", ".zip", ".sqlite3", ".log", ".md")) or name.startswith(
                ".coverage"
            ):
                continue
            path = Path(directory, name)
            digest.update(f"{path.relative_to(ROOT)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached_package(stage: str = "dev") -> Path:
    """``zappa package <stage>``, rebuilt only when the project or the build venv changed.

    A fresh clone with the same files reuses the zip of a previous run (about 30 s saved);
    any edit to a packed file, zappa_settings.json or requirements.txt builds a new one.
    """
    venv = build_venv()
    target = cache_root() / f"package-{stage}-{venv.name.rsplit('-', 1)[-1]}-{project_digest()}.zip"
    if target.exists():
        return target
    with _locked(target):
        if not target.exists():
            # Drop packages of earlier trees, but not one a concurrent run may be unzipping.
            for old in cache_root().glob(f"package-{stage}-*.zip"):
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - old.stat().st_mtime > STALE_PACKAGE_SECONDS:
                        old.unlink()
            scratch = cache_root() / f"building-{os.getpid()}"
            scratch.mkdir(parents=True, exist_ok=True)
            try:
                build_package(scratch / "package.zip", stage, venv).replace(target)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    return target


if __name__ == "__main__":  # python tests/lambda_package.py: build (or find) both caches
    print(build_venv(), build_runtime_dir(), file=sys.stderr)
