"""docs/testing.md's first WebSocket test, and the README's, run as written: the tests, and the
view they test (the quickstart's ``chat/views.py``, the README's ``ChatView``), go into a fresh
project, which pytest runs with the shipped plugin."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "testing.md"
README = ROOT / "README.md"
QUICKSTART = ROOT / "docs" / "quickstart.md"
URLS = """
from django.urls import path

from .views import ChatView

urlpatterns = [path("ws/<slug:route>", ChatView.as_view())]
"""
BLOCK = re.compile(r"```python\n# (?P<path>[\w/]+\.py)\n(?P<code>.*?)```", re.DOTALL)
SETTINGS = """
SECRET_KEY = "docs-project"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_aws_api_gateway_websockets",
    "chat",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "chat.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""


def page_files(page: Path = PAGE) -> dict[str, str]:
    found = {match["path"]: match["code"] for match in BLOCK.finditer(page.read_text())}
    return {path: code for path, code in found.items() if path.startswith("chat/")}


def quickstart_view() -> dict[str, str]:
    return {"chat/views.py": page_files(QUICKSTART)["chat/views.py"], "chat/urls.py": URLS}


def test_the_pages_files_are_found():
    files = page_files()
    assert set(files) == {"chat/test_websockets.py", "chat/tests.py"}
    assert "class ChatTests(WebSocketTestCase)" in files["chat/tests.py"]
    assert "class ChatView(WebSocketView)" in quickstart_view()["chat/views.py"]


def readme_files() -> dict[str, str]:
    """The README's view (its first block) and its test (the second)."""
    view, test = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)[:2]
    return {"chat/views.py": view, "chat/urls.py": URLS, "chat/test_readme.py": test}


def test_the_first_websocket_test_passes_as_written(tmp_path):
    run_project(tmp_path, {**quickstart_view(), **page_files()}, expected=4)


def test_the_readmes_test_passes_as_written(tmp_path):
    run_project(tmp_path, readme_files(), expected=1)


def run_project(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    files = {**files, "chat/__init__.py": ""}
    files["docs_settings.py"] = SETTINGS
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "AWS_"))}
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    # The source tree is not installed (a build's egg-info may say otherwise): name the plugins.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "pytest_django.plugin",
            "-p",
            "django_aws_api_gateway_websockets.testing.pytest_plugin",
            "--ds",
            "docs_settings",
            "--rootdir",
            str(tmp_path),
            # Named, since pytest's default patterns skip startapp's tests.py.
            *sorted(name for name in files if name.startswith("chat/test")),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{expected} passed" in result.stdout, result.stdout[-2000:]
