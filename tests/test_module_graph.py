"""The library's modules import one way: the graph of module-level imports has no cycle, the
send and provisioning code reaches ``models`` only through ``aws``'s call-time lookup, and
importing ``models`` (every cold start) does not bring in the send machinery."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "django_aws_api_gateway_websockets"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
# The modules the import cycle used to tie together, and the edge they now share.
CORE = ("models", "sending", "provisioning", "fanout_dispatch", "sync", "aws", "send_policy")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names of the modules an ``import from`` statement may load."""
    if node.level:
        base = current.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # "from . import aws" imports the submodule aws; "from .aws import x" imports aws.
    return [prefix] + [f"{prefix}.{alias.name}" for alias in node.names]


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def module_level_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements that run when the module is imported (not in functions, not under
    ``if TYPE_CHECKING``)."""
    found: list[ast.stmt] = []
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If) and not is_type_checking(node):
            pending.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            pending.extend(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return found


def runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """Every node that can run, at import or at call time (``if TYPE_CHECKING`` left out)."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, ast.If) and is_type_checking(node):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        for node in module_level_imports(tree):
            if isinstance(node, ast.ImportFrom):
                targets = resolve(name, path.name == "__init__.py", node)
            else:
                targets = [alias.name for alias in node.names]
            # A submodule's "from . import x" names its own package, which is always
            # initialised before the submodule: not an edge that can close a cycle.
            edges[name] |= {
                target
                for target in targets
                if target in modules and not name.startswith(target + ".") and target != name
            }
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph, or [] if it has none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_module_level_imports_have_no_cycle():
    edges = graph()
    # The graph is real: the edges this test exists for are seen.
    assert f"{PACKAGE}.aws" in edges[f"{PACKAGE}.models"]
    assert f"{PACKAGE}.fanout_dispatch" in edges[f"{PACKAGE}.sending"]
    assert find_cycle(edges) == []


@pytest.mark.parametrize("name", [m for m in CORE if m not in ("models", "aws")])
def test_core_modules_never_import_models(name):
    """Not even inside a function: AWS goes through ``aws.client``/``aws.region``, records
    through the querysets, sessions and gateways they are given."""
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    for node in runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            targets = resolve(f"{PACKAGE}.{name}", False, node)
            assert f"{PACKAGE}.models" not in targets, f"{name}.py line {node.lineno}"


def test_models_is_reached_from_aws_only_at_call_time():
    edges = graph()
    assert f"{PACKAGE}.models" not in edges[f"{PACKAGE}.aws"]


def test_importing_models_does_not_load_the_send_machinery():
    """Every cold start imports models; the send code, the HTTP fan-out and boto3 wait for
    the first send."""
    script = (
        "import sys, django; django.setup(); "
        f"import {PACKAGE}.models, {PACKAGE}.provisioning; "
        f"print(sorted(m for m in ('{PACKAGE}.sending', '{PACKAGE}.connections_http', "
        "'boto3', 'botocore') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT.parent,
        env={"DJANGO_SETTINGS_MODULE": "tests.settings", "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "[]"
