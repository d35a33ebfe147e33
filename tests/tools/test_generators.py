"""The generators and the task runner: every committed generated file is up to date,
and the Makefile runs them all, in the order of stacktools/generate/__init__.py.

One parametrized test over stacktools.generate.GENERATORS, the list the Makefile's
``generate`` and ``check`` targets read too, replaces one drift test per generator.
"""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys

import pytest

from stacktools.generate import GENERATORS
from stacktools.paths import REPO_ROOT
from tests.support.tooling import in_ci

MAKEFILE = REPO_ROOT / "Makefile"
# The targets issue 15 asks for; `make help` documents each (and maybe more).
REQUIRED_TARGETS = ("help", "up", "down", "test", "generate", "check", "load", "chaos", "bench")
HELP_LINE = re.compile(r"^  ([a-z][a-z-]*)\s+\S", re.MULTILINE)


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    if make is None:
        message = "make is not installed (apt-get install make)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return subprocess.run(
        [make, "--no-print-directory", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
        timeout=60,
    )


def _documented_targets() -> list[str]:
    return [match[1] for match in re.finditer(r"^([a-z][a-z-]*):.*## ", MAKEFILE.read_text(), re.M)]


@pytest.mark.parametrize("name", GENERATORS)
def test_committed_files_match_the_generator(name: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", f"stacktools.generate.{name}", "--check"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, (
        f"stale: run `python -m stacktools.generate.{name}`\n{result.stderr}"
    )


def test_every_generator_is_listed_once() -> None:
    """Every generator module with a ``--check`` that writes committed files is listed."""
    assert len(set(GENERATORS)) == len(GENERATORS)
    for name in GENERATORS:
        assert callable(importlib.import_module(f"stacktools.generate.{name}").main)
    writers = {
        path.stem
        for path in (REPO_ROOT / "stacktools" / "generate").glob("*.py")
        if re.search(r"add_argument\(\s*\"--check\"", path.read_text(encoding="utf-8"))
    }
    assert writers == set(GENERATORS)


def test_make_without_a_target_prints_help() -> None:
    result = _make()
    assert result.returncode == 0, result.stderr
    assert result.stdout == _make("help").stdout
    listed = HELP_LINE.findall(result.stdout)
    assert listed == _documented_targets()
    assert set(REQUIRED_TARGETS) <= set(listed)


def test_make_documents_every_required_target() -> None:
    assert set(REQUIRED_TARGETS) <= set(_documented_targets())


@pytest.mark.parametrize("target", _documented_targets())
def test_make_dry_runs_every_documented_target(target: str) -> None:
    result = _make("-n", target, "EXPERIMENT=latency")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("target", "flag"), [("generate", ""), ("check", " --check")])
def test_make_runs_every_generator_in_order(target: str, flag: str) -> None:
    result = _make("-n", target)
    assert result.returncode == 0, result.stderr
    # The recipe loops over the list that stacktools.generate prints, in that order.
    printed = subprocess.run(
        [sys.executable, "-m", "stacktools.generate"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=True,
    ).stdout.split()
    assert printed == list(GENERATORS)
    assert f"for g in {' '.join(GENERATORS)}; do" in result.stdout
    assert f"-m stacktools.generate.$g{flag};" in result.stdout


def test_make_load_and_chaos_take_their_variables() -> None:
    assert "k6/run-load-tests.sh smoke" in _make("-n", "load").stdout
    assert "k6/run-load-tests.sh spike" in _make("-n", "load", "SCENARIO=spike").stdout
    assert "chaos/run-chaos-test.sh latency" in _make("-n", "chaos", "EXPERIMENT=latency").stdout
    missing = _make("chaos")  # refuses before running anything
    assert missing.returncode != 0
    assert "EXPERIMENT=name" in missing.stderr
