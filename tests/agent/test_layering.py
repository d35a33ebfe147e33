"""Architecture rules that code review alone would let slip."""

import ast
import sys
from pathlib import Path

import pytest

from stacktools.paths import NEUROS_DIR, REPO_ROOT

NEUROS = REPO_ROOT / NEUROS_DIR


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", ["kpi.py", "recommend.py"])
def test_domain_logic_imports_only_the_standard_library_and_itself(module: str) -> None:
    foreign = {
        root
        for root in _imported_roots(NEUROS / module)
        if root not in sys.stdlib_module_names and root != "neuros"
    }
    assert foreign == set()
    own = {
        node.module
        for node in ast.walk(ast.parse((NEUROS / module).read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("neuros")
    }
    assert own <= {"neuros.kpi"}


def test_middleware_is_pure_asgi() -> None:
    for path in (NEUROS / "middleware").glob("*.py"):
        assert "BaseHTTPMiddleware" not in path.read_text(), path.name
