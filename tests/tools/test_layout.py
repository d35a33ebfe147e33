"""The repository's layout rules (docs/development.md, "Layout"), each checked on the
repository and on a broken sample, so that every rule is shown to catch what it names.

- tests/ by subject: test modules live in tests/<subject>/, helpers in tests/support/;
  tests/conftest.py holds fixtures only; no test module imports another (or conftest).
- One source of repository paths: ``REPO_ROOT`` is assigned only in stacktools/paths.py.
- One way to read the compose file: only stacktools/compose.py loads it.
- scripts/ holds entry points only: no Python module there.
- Agent modules named for their job: one ``metrics.py`` and one ``tracing.py`` at most
  in neuros/, the ASGI middleware in neuros/middleware/.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from stacktools import paths
from stacktools.paths import COMPOSE_FILE, REPO_ROOT, SCALE_COMPOSE_FILE

TESTS = REPO_ROOT / "tests"
# This module: its broken samples are strings the compose check must not take for code.
THIS = Path(__file__).resolve().relative_to(REPO_ROOT)
SUBJECTS = ("agent", "stack", "tools")
SUPPORT = "support"
PATHS_MODULE = Path("stacktools/paths.py")
COMPOSE_MODULE = Path("stacktools/compose.py")
# What names the compose file in code: the path constants, the file names, and Compose's
# own rendering of a stack (`stack.compose("config", ...)`).
COMPOSE_CONSTANTS = {"COMPOSE_FILE", "SCALE_FILE", "SCALE_COMPOSE_FILE"}
COMPOSE_NAME = re.compile(
    rf"^({re.escape(str(COMPOSE_FILE))}|{re.escape(str(SCALE_COMPOSE_FILE))})$"
)
# Names that meant three different modules before (the registry, the request
# middleware, the exposition endpoint; the SDK set-up and the server spans).
SINGLE_NAMES = ("metrics.py", "tracing.py")
PARSERS = {("yaml", "safe_load"), ("yaml", "load"), ("json", "loads")}


def tracked_python() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [Path(name) for name in listed if (REPO_ROOT / name).is_file()]


def misplaced_tests(tests: Path) -> list[str]:
    """Python files of ``tests`` outside the layout."""
    problems = []
    for path in sorted(tests.rglob("*.py")):
        rel = path.relative_to(tests)
        if len(rel.parts) == 1:
            if rel.name not in ("__init__.py", "conftest.py"):
                problems.append(f"{rel}: a module at the top of tests/ (use a subject folder)")
        elif rel.parts[0] == SUPPORT:
            if rel.name.startswith("test_"):
                problems.append(f"{rel}: a test module among the helpers")
        elif rel.parts[0] not in SUBJECTS:
            problems.append(f"{rel}: not in a subject folder {SUBJECTS}")
        elif not rel.name.startswith("test_") and rel.name != "__init__.py":
            problems.append(f"{rel}: a helper beside the tests (move it to tests/support/)")
    return problems


def non_fixtures(conftest: Path) -> list[str]:
    """Top-level definitions of ``conftest`` that are not pytest fixtures."""
    problems = []
    for node in ast.parse(conftest.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if not any(d.startswith("pytest.fixture") for d in decorators):
                problems.append(f"{node.name}: not a fixture")
        elif isinstance(node, ast.ClassDef | ast.Assign | ast.AnnAssign):
            problems.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    return problems


def imported_modules(source: str) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def imported_tests(source: str) -> list[str]:
    """The test modules (or conftest) that ``source`` imports."""
    return sorted(
        module
        for module in imported_modules(source)
        if module.split(".")[0] == "tests"
        and (module.split(".")[-1].startswith("test_") or module.endswith(".conftest"))
    )


def repo_root_assignments(files: dict[Path, str]) -> list[str]:
    found = []
    for path, source in files.items():
        for node in ast.walk(ast.parse(source)):
            targets = (
                node.targets
                if isinstance(node, ast.Assign)
                else [node.target]
                if isinstance(node, ast.AnnAssign)
                else []
            )
            if any(isinstance(t, ast.Name) and t.id == "REPO_ROOT" for t in targets):
                found.append(f"{path}:{getattr(node, 'lineno', 0)}")
    return found


def _names_compose(node: ast.AST, assigned: dict[str, ast.expr], depth: int = 0) -> bool:
    """Whether ``node`` is built from the compose file: one of its path constants or
    names, a call of a stack's ``compose("config", ...)``, or a local variable assigned
    from one of these."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name | ast.Attribute):
            name = child.id if isinstance(child, ast.Name) else child.attr
            if name in COMPOSE_CONSTANTS:
                return True
            if (
                isinstance(child, ast.Name)
                and name in assigned
                and depth < 3
                and _names_compose(assigned[name], assigned, depth + 1)
            ):
                return True
        elif isinstance(child, ast.Constant) and isinstance(child.value, str):
            if COMPOSE_NAME.match(child.value):
                return True
        elif (
            isinstance(child, ast.Call)
            and isinstance(child.func, ast.Attribute)
            and child.func.attr == "compose"
            and child.args
            and isinstance(child.args[0], ast.Constant)
            and child.args[0].value == "config"
        ):
            return True
    return False


def _own_nodes(scope: ast.AST) -> list[ast.AST]:
    """The nodes of a module or function, not those of the functions inside it."""
    nodes: list[ast.AST] = []
    pending = list(ast.iter_child_nodes(scope))
    while pending:
        node = pending.pop()
        nodes.append(node)
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            pending.extend(ast.iter_child_nodes(node))
    return nodes


def compose_reads(files: dict[Path, str]) -> list[str]:
    """Places that parse the compose file themselves (a YAML or JSON load of it, also
    through a local variable), outside stacktools/compose.py."""
    found = []
    for path, source in files.items():
        if path in (COMPOSE_MODULE, THIS):
            continue
        tree = ast.parse(source)
        scopes: list[ast.AST] = [tree]
        scopes += [
            n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        for scope in scopes:
            assigned = {
                target.id: node.value
                for node in _own_nodes(scope)
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            }
            for node in _own_nodes(scope):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and (node.func.value.id, node.func.attr) in PARSERS
                    and any(_names_compose(arg, assigned) for arg in node.args)
                ):
                    found.append(f"{path}:{node.lineno}")
    return sorted(set(found))


def sources() -> dict[Path, str]:
    return {path: (REPO_ROOT / path).read_text(encoding="utf-8") for path in tracked_python()}


def test_tests_are_by_subject_with_helpers_in_support() -> None:
    assert misplaced_tests(TESTS) == []
    for subject in SUBJECTS:
        assert list((TESTS / subject).glob("test_*.py")), f"tests/{subject}/ has no tests"


def test_the_layout_check_catches_a_misplaced_module(tmp_path: Path) -> None:
    for rel in (
        "test_flat.py",
        "helpers.py",
        "support/test_x.py",
        "agent/util.py",
        "misc/test_y.py",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    (tmp_path / "agent" / "test_ok.py").write_text("")
    assert len(misplaced_tests(tmp_path)) == 5


def test_conftest_holds_fixtures_only(tmp_path: Path) -> None:
    assert non_fixtures(TESTS / "conftest.py") == []
    sample = tmp_path / "conftest.py"
    sample.write_text(
        "import pytest\n\nX = 1\n\n@pytest.fixture\ndef ok() -> None: ...\n\n"
        "def helper() -> None: ...\n\nclass Thing: ...\n"
    )
    assert len(non_fixtures(sample)) == 3


def test_no_test_module_imports_another() -> None:
    offenders = {
        str(path): imports
        for path, source in sources().items()
        if path.parts[0] == "tests" and (imports := imported_tests(source))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "source",
    [
        "from tests.agent.test_contract import SCOPES",
        "from tests.conftest import reading",
        "import tests.stack.test_compose",
        "from tests.tools import test_slo",
    ],
)
def test_the_import_check_catches(source: str) -> None:
    assert imported_tests(source)


def test_repo_root_is_defined_once() -> None:
    assert {where.split(":")[0] for where in repo_root_assignments(sources())} == {
        str(PATHS_MODULE)
    }
    assert len(repo_root_assignments({PATHS_MODULE: (REPO_ROOT / PATHS_MODULE).read_text()})) == 1
    assert repo_root_assignments({Path("x.py"): "from pathlib import Path\nREPO_ROOT = Path()"})


def test_only_stacktools_compose_reads_the_compose_file() -> None:
    assert compose_reads(sources()) == []


@pytest.mark.parametrize(
    "source",
    [
        'doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())',
        "def f(repo):\n    path = repo / paths.COMPOSE_FILE\n"
        "    return yaml.safe_load(path.read_text())",
        'def f(stack):\n    return yaml.safe_load(stack.compose("config", "db").stdout)',
        "def f(out):\n    text = SCALE_FILE.read_text()\n    return json.loads(text)",
    ],
)
def test_the_compose_reader_check_catches(source: str) -> None:
    assert compose_reads({Path("x.py"): source})


def test_the_compose_reader_check_allows_reading_its_text() -> None:
    assert not compose_reads({Path("x.py"): 'assert "x" in COMPOSE_FILE.read_text()'})


def test_scripts_holds_no_python_module() -> None:
    assert [p.name for p in (REPO_ROOT / paths.SCRIPTS_DIR).rglob("*.py")] == []


def clashing_modules(package: Path) -> dict[str, list[str]]:
    """Each of SINGLE_NAMES that more than one module of ``package`` has."""
    clashes = {}
    for name in SINGLE_NAMES:
        found = sorted(str(p.relative_to(package)) for p in package.rglob(name))
        if len(found) > 1:
            clashes[name] = found
    return clashes


def test_agent_modules_are_named_for_their_job(tmp_path: Path) -> None:
    package = REPO_ROOT / "neuros"
    assert clashing_modules(package) == {}
    assert (package / "middleware" / "request_metrics.py").is_file()
    assert not (package / "http").exists()
    for rel in ("metrics.py", "http/metrics.py", "api/metrics.py", "tracing.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    assert clashing_modules(tmp_path) == {
        "metrics.py": ["api/metrics.py", "http/metrics.py", "metrics.py"]
    }


def fixtures_in(source: str) -> list[str]:
    """Functions of ``source`` decorated as pytest fixtures."""
    return [
        node.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(ast.unparse(d).startswith("pytest.fixture") for d in node.decorator_list)
    ]


def test_fixtures_live_in_conftest_not_in_support() -> None:
    support = {
        str(path): names
        for path in sorted((TESTS / SUPPORT).glob("*.py"))
        if (names := fixtures_in(path.read_text(encoding="utf-8")))
    }
    assert support == {}
    assert fixtures_in("import pytest\n\n@pytest.fixture(scope='module')\ndef f() -> None: ...")
