"""docs/quickstart.md, followed literally in a project of its own.

The wheel is built from this checkout, installed into a new virtualenv, ``django-admin
startproject`` makes the project, and every code block of the page that names a file (its first
line: ``# mysite/urls.py``, ``{# chat/templates/chat/lobby.html #}``; ``: add at the end``
appends) is written there as it stands. Then ``migrate``, a user, ``runapigateway``, and
Chromium logs in, sees the socket open and gets its message back. The dependencies' wheels are
downloaded once into ``~/.cache/serverless-django-websockets/`` (keyed by pyproject's
dependencies and the Python version), so a run takes well under a minute after the first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browsers import launch_chromium
from tests.lambda_package import _key, _locked, _pip, cache_root

pytestmark = pytest.mark.quickstart

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "quickstart.md"
ARTIFACTS = ROOT / "test-artifacts"
PROJECT = "mysite"
USERNAME, PASSWORD = "ada", "a long password for the quickstart"
# The page's commands, run here in this order (createsuperuser without its prompts).
COMMANDS = [
    "django-admin startproject mysite",
    "python manage.py startapp chat",
    "python manage.py migrate",
    "python manage.py createsuperuser",
    "python manage.py runapigateway",
]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.MULTILINE | re.DOTALL)
FILE_LINE = re.compile(
    r"^(?:#|\{#)\s*(?P<path>[\w/.]+\.\w+)(?P<append>: add at the end)?\s*(?:#\})?$"
)


def page_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced block of the quickstart."""
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(PAGE.read_text())]


def page_files() -> list[tuple[str, bool, str]]:
    """(path, append?, text) of the blocks that name a file on their first line."""
    files = []
    for _, text in page_blocks():
        first, _, rest = text.partition("\n")
        match = FILE_LINE.match(first)
        if match:
            files.append((match["path"], bool(match["append"]), text))
    return files


def test_the_page_names_the_files_and_commands_this_test_applies():
    assert [path for path, _, _ in page_files()] == [
        "mysite/settings.py",
        "chat/views.py",
        "chat/templates/chat/lobby.html",
        "mysite/urls.py",
    ]
    console = "\n".join(text for language, text in page_blocks() if language == "console")
    for command in COMMANDS:
        assert re.search(rf"^{re.escape(command)}$", console, re.MULTILINE), command


def clean_env(**extra: str) -> dict[str, str]:
    """This suite's environment without what would make the new project not a new project."""
    dropped = ("DJANGO", "COVERAGE", "AWS_", "WEBSOCKETS_", "DATABASE_URL", "VIRTUAL_ENV")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.pop("PYTHONPATH", None)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def run(command: list[str], cwd: Path, **extra: str) -> str:
    result = subprocess.run(
        command, cwd=cwd, env=clean_env(**extra), capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    return result.stdout


def dependency_wheels(wheel: Path) -> Path:
    """A directory of wheels for the library's dependencies (cached; downloaded once)."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheelhouse = cache_root() / f"quickstart-wheels-{_key(*dependencies, python)}"
    done = wheelhouse / ".complete"
    if not done.exists():
        with _locked(wheelhouse):
            if not done.exists():
                _pip(sys.executable, "wheel", "--wheel-dir", str(wheelhouse), str(wheel))
                for built in wheelhouse.glob("serverless_django_websockets-*.whl"):
                    built.unlink()
                done.write_text("\n".join(dependencies) + "\n")
    return wheelhouse


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "-o", str(out)], cwd=ROOT)
    (built,) = out.glob("serverless_django_websockets-*.whl")
    return built


@pytest.fixture(scope="module")
def project(tmp_path_factory, wheel) -> Path:
    """The quickstart's project, in a virtualenv of its own holding the wheel and its deps."""
    base = tmp_path_factory.mktemp("quickstart")
    venv = base / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    python = venv / "bin" / "python"
    # Offline after the first run: the dependencies come from the cached wheels only.
    wheels = dependency_wheels(wheel)
    # In the new project's environment: a PYTHONPATH reaching this checkout (and the build's
    # egg-info there) would make pip think the library is installed already.
    run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels)]
        + [str(wheel)],
        cwd=base,
    )
    run([str(venv / "bin" / "django-admin"), "startproject", PROJECT], cwd=base)
    project = base / PROJECT
    run([str(python), "manage.py", "startapp", "chat"], cwd=project)
    for relative, append, text in page_files():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if append:
            path.write_text(path.read_text() + "\n" + text)
        else:
            path.write_text(text)
    run([str(python), "manage.py", "check", "--fail-level", "WARNING"], cwd=project)
    run([str(python), "manage.py", "migrate", "-v0"], cwd=project)
    run(
        [str(python), "manage.py", "createsuperuser", "--noinput", "--email", "ada@example.com"],
        cwd=project,
        DJANGO_SUPERUSER_USERNAME=USERNAME,
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
    )
    return project


@pytest.fixture(scope="module")
def site(project):
    """``python manage.py runapigateway`` in the project (on a free port); its site's URL."""
    process = subprocess.Popen(
        [str(project.parent / "venv" / "bin" / "python"), "manage.py", "runapigateway"]
        + ["--port", "0"],
        cwd=project,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    url = None
    deadline = time.monotonic() + 60
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        output.append(line)
        match = re.match(r"\s+Site:\s+(\S+)", line)
        url = match.group(1) if match else None
    assert url, "runapigateway did not start:\n" + "".join(output)
    yield url
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_browser_logs_in_and_chats_on_the_quickstart_page(site, host):
    """The printed URL, or the same with ``localhost``: the socket stays on 127.0.0.1."""
    site = site.replace("127.0.0.1", host)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            failed: list[str] = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
            page.goto(site)
            page.wait_for_url(re.compile(r"/admin/login/\?next=/$"))
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(site)
            page.wait_for_load_state("networkidle")
            # The page's own files (the JS client above all) load from runapigateway.
            assert [url for url in failed if not url.endswith("/favicon.ico")] == []
            expect(page.locator("#state")).to_have_text("open", timeout=20000)
            page.fill("#text", "Hello from the quickstart")
            page.click("#say button")
            expect(page.locator("#log li")).to_have_text(
                [f"{USERNAME}: Hello from the quickstart"], timeout=10000
            )
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"quickstart-{host}.png"), full_page=True)
        finally:
            browser.close()
