"""docs/testing.md in the quickstart's own project: after docs/quickstart.md is followed literally
(``tests/test_quickstart.py`` builds that project, with the wheel installed in a virtualenv),
the page's set-up and test files are written where it says, and pass under pytest and under
``manage.py test``: the first WebSocket test a new user writes, with the shipped client."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

from tests.lambda_package import _key, _locked, _pip, cache_root
from tests.test_quickstart import project, run, wheel  # noqa: F401  (the project's fixtures)
from tests.test_testing_docs import PAGE, page_files

pytestmark = pytest.mark.quickstart


def pytest_wheels() -> Path:
    """Wheels of the pytest and pytest-django this suite runs (cached; downloaded once)."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("pytest", "pytest-django")]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    wheelhouse = cache_root() / f"testing-wheels-{_key(*pins, python)}"
    done = wheelhouse / ".complete"
    if not done.exists():
        with _locked(wheelhouse):
            if not done.exists():
                _pip(sys.executable, "wheel", "--wheel-dir", str(wheelhouse), *pins)
                done.write_text("\n".join(pins) + "\n")
    return wheelhouse


@pytest.fixture(scope="module")
def tested_project(project):  # noqa: F811
    """The quickstart project with what docs/testing.md's "Set up" and first tests add."""
    python = project.parent / "venv" / "bin" / "python"
    run(
        [str(python), "-m", "pip", "install", "-q", "--no-index"]
        + ["--find-links", str(pytest_wheels()), "pytest", "pytest-django"],
        cwd=project,
    )
    setup = re.search(r"```toml\n(# pyproject\.toml\n.*?)```", PAGE.read_text(), re.DOTALL)
    assert setup, "docs/testing.md lost its pyproject.toml block"
    (project / "pyproject.toml").write_text(setup[1])
    for relative, text in page_files().items():
        (project / relative).write_text(text)
    return project, python


def test_the_first_websocket_test_passes_under_pytest(tested_project):
    directory, python = tested_project
    output = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=directory)
    assert re.search(r"^3 passed", output, re.MULTILINE), output[-2000:]


def test_the_unittest_case_passes_under_manage_py_test(tested_project):
    directory, python = tested_project
    # run() asserts the exit status: 0 only when every test found passed.
    output = run([str(python), "manage.py", "test", "chat.tests"], cwd=directory)
    assert "Found 1 test(s)." in output
