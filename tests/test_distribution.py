"""The library as a distribution: the wheel and sdist hold the library (migrations, static
files) and not the example project; the installed wheel, in another project, runs the testing
guide's examples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDE_TESTS = [
    "test_guide_example_view.py",
    "test_guide_handler_selection.py",
    "test_guide_permissions.py",
    "test_guide_tokens.py",
    "test_guide_rate_limit.py",
    "test_guide_sending.py",
    "test_guide_commands.py",
]

OTHER_PROJECT = {
    "pytest.ini": "[pytest]\nDJANGO_SETTINGS_MODULE = tests.settings\n",
    "demo/__init__.py": "",
    "demo/models.py": """
from django.db import models


class Room(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        permissions = [("can_use_chat", "Can use chat")]
""",
    "demo/views.py": """
from django.http import JsonResponse

from django_aws_api_gateway_websockets.views import WebSocketView


class DemoView(WebSocketView):
    def restricted(self, request, *args, **kwargs):
        if not request.user.has_perm("demo.can_use_chat"):
            return self.permission_denied(request)
        return JsonResponse({"ok": True})
""",
    "demo/urls.py": """
from django.urls import path

from django_aws_api_gateway_websockets.views import WebSocketTokenView

from .views import DemoView

urlpatterns = [
    path("api/ws-token/", WebSocketTokenView.as_view()),
    path("ws/<slug:route>", DemoView.as_view()),
]
""",
    "tests/__init__.py": "",
    "tests/settings.py": """
SECRET_KEY = "another-project"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_aws_api_gateway_websockets",
    "demo",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "demo.urls"
USE_TZ = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
AWS_GATEWAY_REGION_NAME = "us-east-1"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
""",
    "tests/test_installed_copy.py": """
from pathlib import Path

import django_aws_api_gateway_websockets


def test_the_installed_wheel_is_under_test():
    assert "site-packages-under-test" in Path(django_aws_api_gateway_websockets.__file__).parts
""",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The wheel and sdist, and what ``python -m build`` printed while making them."""
    out = tmp_path_factory.mktemp("dist")
    # Byte-compiling off (a developer's PYTHONDONTWRITEBYTECODE) is a warning of its own.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "-o", str(out)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out, result.stdout + result.stderr


@pytest.fixture(scope="module")
def dist(built):
    return built[0]


def test_the_build_prints_no_warning(built):
    _, log = built
    warnings = [line for line in log.splitlines() if "warn" in line.lower() or "!!" in line]
    assert warnings == []


def test_wheel_holds_the_library_only(dist):
    names = zipfile.ZipFile(next(dist.glob("*.whl"))).namelist()
    assert "django_aws_api_gateway_websockets/migrations/0001_initial.py" in names
    assert (
        "django_aws_api_gateway_websockets/static/django_aws_api_gateway_websockets/"
        "websocket-client.js" in names
    )
    assert "django_aws_api_gateway_websockets/serverless/handler.py" in names
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {
        "django_aws_api_gateway_websockets",
        "serverless_django_websockets-0.1.0.dist-info",
    }


def test_sdist_excludes_the_example_project(dist):
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = [name.split("/", 1)[-1] for name in sdist.getnames()]
    assert "django_aws_api_gateway_websockets/migrations/0001_initial.py" in names
    assert "CHANGELOG.md" in names
    for excluded in ("tests/", "websocket_app/", "project/", "lambda_handler.py", "events/"):
        assert not [name for name in names if name.startswith(excluded)], excluded


def test_guide_examples_pass_against_the_installed_wheel(dist, tmp_path):
    site = tmp_path / "site-packages-under-test"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(site),
            str(next(dist.glob("*.whl"))),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    project = tmp_path / "another_project"
    for relative, text in OTHER_PROJECT.items():
        path = project / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    shutil.copytree(ROOT / "tests" / "seed", project / "tests" / "seed")
    shutil.copy(ROOT / "tests" / "conftest.py", project / "tests" / "conftest.py")
    for name in GUIDE_TESTS:
        shutil.copy(ROOT / "tests" / name, project / "tests" / name)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COVERAGE", "DJANGO"))
    }
    env["PYTHONPATH"] = f"{site}{os.pathsep}{project}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_one_install_story_names_the_wheel_that_is_built(dist):
    """README, the quickstart and operations give the same two ways to install: the wheel the
    build writes, by its real file name, and the git URL, under the distribution's name."""
    (wheel,) = dist.glob("*.whl")
    for page in ("README.md", "docs/quickstart.md", "docs/operations.md"):
        text = (ROOT / page).read_text()
        assert f"dist/{wheel.name}" in text, page
        assert 'pip install "serverless-django-websockets @ git+https://' in text, page
        assert "`django_aws_api_gateway_websockets`" in text, page
