"""scripts/mutation-test.sh: its interface (the run itself takes a minute of both cores:
docs/mutation-testing.md)."""

from __future__ import annotations

import subprocess

import pytest

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.tooling import tool

SCRIPT = REPO_ROOT / paths.SCRIPTS_DIR / "mutation-test.sh"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=30, check=False
    )


def test_help_names_the_modules_and_the_tests() -> None:
    result = _run("--help")
    assert result.returncode == 0, result.stderr
    for name in ("neuros/kpi.py", "neuros/recommend.py", "neuros/store.py"):
        assert name in result.stdout
    assert "tests/agent/test_store_aggregate.py" in result.stdout


@pytest.mark.parametrize(
    "args", [("--min-score",), ("--min-score", "high"), ("--jobs", "0"), ("--bogus",)]
)
def test_bad_arguments_exit_2_before_any_work(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert "mutation-test: ERROR:" in result.stderr
    assert "mutating in" not in result.stderr


def test_every_test_file_it_names_exists() -> None:
    text = SCRIPT.read_text()
    start = text.index("readonly -a TESTS=(")
    names = text[start : text.index(")", start)].split()[3:]
    assert names
    assert all((REPO_ROOT / name).is_file() for name in names), names


def test_script_is_shellcheck_clean() -> None:
    result = subprocess.run(
        [tool("shellcheck"), "-x", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
