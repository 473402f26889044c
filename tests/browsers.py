"""The Chromium the browser tests drive, and how `make test` gets one on a fresh machine.

Debian's ``chromium`` package is preferred: CI installs it, and it follows the system's security
updates. Where it cannot be installed (no root and no password-less sudo, or not Debian), the
browser Playwright downloads for itself is used instead. Ubuntu's ``chromium`` package only
installs a snap, which does not run in containers, so Ubuntu takes Playwright's browser too.

``python -m tests.browsers`` (run by ``make test`` before pytest) finds a browser or installs
one, and when it cannot, exits 1 with a message saying what to run; the tests themselves never
install anything and fail with the same message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WHAT_TO_DO = (
    "The browser tests need Chromium and none is installed. Either install Debian's "
    "(`sudo apt-get install chromium`) or let Playwright download its own "
    "(`.venv/bin/python -m playwright install --with-deps chromium`), then run `make test` again."
)
INSTALL_TIMEOUT = 900


def playwright_chromium() -> Path | None:
    """Playwright's own Chromium, if ``playwright install chromium`` has put it in place."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        path = Path(playwright.chromium.executable_path)
    return path if path.exists() else None


def chromium_executable() -> Path | None:
    """Debian's Chromium, else Playwright's, else None."""
    if DEBIAN_CHROMIUM.exists():
        return DEBIAN_CHROMIUM
    return playwright_chromium()


def launch_chromium(playwright):
    """A headless Chromium for a test: fails the test, with what to do, when there is none."""
    import pytest

    # Inside a running Playwright another one cannot start: ask this one for its browser.
    executable = DEBIAN_CHROMIUM
    if not executable.exists():
        executable = Path(playwright.chromium.executable_path)
    if not executable.exists():
        pytest.fail(WHAT_TO_DO)
    return playwright.chromium.launch(
        executable_path=str(executable), headless=True, args=CHROMIUM_ARGS
    )


def _os_release() -> dict[str, str]:
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line)
    return {key: value.strip().strip('"') for key, value in pairs}


def _as_root() -> list[str] | None:
    """The prefix that runs a command as root without a prompt: none, ``sudo -n``, or None."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True).returncode == 0:
        return [sudo, "-n"]
    return None


def _run(command: list[str]) -> bool:
    print("+", " ".join(command), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(command, env=env, timeout=INSTALL_TIMEOUT).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as error:
        print(f"  {error}", flush=True)
        return False


def install() -> bool:
    """Try, in order, what this machine allows; True when a browser is then found."""
    release = _os_release()
    root = _as_root()
    if release.get("ID") == "debian" and shutil.which("apt-get") and root is not None:
        apt = [*root, "apt-get", "-o", "DPkg::Lock::Timeout=300"]
        if _run([*apt, "update", "-qq"]) and _run([*apt, "install", "-y", "-qq", "chromium"]):
            return chromium_executable() is not None
    with_deps = ["--with-deps"] if root is not None and shutil.which("apt-get") else []
    _run([sys.executable, "-m", "playwright", "install", *with_deps, "chromium"])
    return chromium_executable() is not None


def main() -> int:
    found = chromium_executable()
    if found is None:
        print("No Chromium for the browser tests: installing one.", flush=True)
        if not install():
            print(WHAT_TO_DO, file=sys.stderr)
            return 1
        found = chromium_executable()
    print(f"Browser tests use {found}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
