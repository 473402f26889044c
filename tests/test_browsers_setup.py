"""What ``make test`` does for its browser on each kind of machine (tests/browsers.py).

The machine is the boundary here: which OS, whether root or sudo is available, and whether the
commands succeed are given; the commands it would run are recorded, not run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests import browsers


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """No browser yet; ``machine.os``/``root``/``succeeds`` set the rest, ``ran`` records."""

    class Machine:
        os = "debian"
        root: list[str] | None = []
        succeeds = True
        installed = False
        ran: list[list[str]] = []

    state = Machine()
    state.ran = []
    monkeypatch.setattr(browsers, "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setattr(
        browsers, "playwright_chromium", lambda: Path("/x/chrome") if state.installed else None
    )
    monkeypatch.setattr(browsers, "_os_release", lambda: {"ID": state.os})
    monkeypatch.setattr(browsers, "_as_root", lambda: state.root)
    monkeypatch.setattr(browsers.shutil, "which", lambda name: f"/usr/bin/{name}")

    def run(command):
        state.ran.append(command)
        state.installed = state.succeeds
        return state.succeeds

    monkeypatch.setattr(browsers, "_run", run)
    return state


def test_debian_as_root_installs_debians_chromium(machine):
    assert browsers.main() == 0
    assert machine.ran[-1][-4:] == ["install", "-y", "-qq", "chromium"]
    assert machine.ran[0][0] == "apt-get"


def test_debian_with_sudo_uses_it_without_a_prompt(machine):
    machine.root = ["/usr/bin/sudo", "-n"]
    assert browsers.main() == 0
    assert all(command[:3] == ["/usr/bin/sudo", "-n", "apt-get"] for command in machine.ran)


def test_ubuntu_takes_playwrights_browser_with_its_system_packages(machine):
    machine.os = "ubuntu"
    assert browsers.main() == 0
    assert machine.ran == [
        [sys.executable, "-m", "playwright", "install", "--with-deps", "chromium"]
    ]


def test_without_root_playwright_downloads_its_own(machine):
    machine.root = None
    assert browsers.main() == 0
    assert machine.ran == [[sys.executable, "-m", "playwright", "install", "chromium"]]


def test_when_nothing_works_it_says_what_to_run(machine, capsys):
    machine.succeeds = False
    assert browsers.main() == 1
    error = capsys.readouterr().err
    assert "sudo apt-get install chromium" in error
    assert "playwright install --with-deps chromium" in error


def test_a_browser_already_there_is_used_as_it_is(machine, capsys):
    machine.installed = True
    assert browsers.main() == 0
    assert machine.ran == []
    assert "Browser tests use /x/chrome" in capsys.readouterr().out


def test_a_test_without_debians_chromium_launches_playwrights(monkeypatch, tmp_path):
    """Inside the test's own Playwright (a second one cannot start there)."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setattr(browsers, "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    with sync_playwright() as playwright:
        bundled = Path(playwright.chromium.executable_path)
        if bundled.exists():
            browsers.launch_chromium(playwright).close()
        else:
            with pytest.raises(pytest.fail.Exception, match="playwright install"):
                browsers.launch_chromium(playwright)
