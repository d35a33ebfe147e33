"""The tool installer and the tools it installs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.tooling import tool

INSTALL_TOOLS = REPO_ROOT / paths.SCRIPTS_DIR / "install-tools.sh"


def _is_shell_script(path: Path) -> bool:
    if path.suffix == ".sh":
        return True
    if path.suffix or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.readline().startswith((b"#!/usr/bin/env bash", b"#!/bin/bash"))


# Every shell script of the repo, by suffix or shebang (scripts/check-stack, .ci/run:
# pathlib's glob includes hidden folders), so a new one cannot slip past shellcheck.
_SKIPPED_TOP_LEVEL = {".venv", ".tools", ".git"}
SHELL_SCRIPTS = sorted(
    {
        path
        for pattern in ("*/*", "*/*/*")
        for path in REPO_ROOT.glob(pattern)
        if path.relative_to(REPO_ROOT).parts[0] not in _SKIPPED_TOP_LEVEL and _is_shell_script(path)
    }
)
# Sourced by other scripts, never run: no need to be executable.
SHELL_LIBRARIES = {path for path in SHELL_SCRIPTS if path.parent.name == "lib"}


def run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False, env=env)


def isolated_env(tmp_path: Path, tools_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DOCKER_CONFIG", None)
    env["NEUROS_TOOLS_DIR"] = str(tools_dir)
    env["HOME"] = str(tmp_path / "home")
    return env


@pytest.mark.parametrize("precreate", [False, True], ids=["absent", "empty"])
def test_install_tools_dry_run_changes_nothing(tmp_path: Path, precreate: bool) -> None:
    tools_dir = tmp_path / "tools"
    home = tmp_path / "home"
    home.mkdir()
    if precreate:
        tools_dir.mkdir()

    result = run(["bash", str(INSTALL_TOOLS), "--dry-run"], env=isolated_env(tmp_path, tools_dir))

    assert result.returncode == 0, result.stderr
    assert "would run: apt-get" in result.stdout
    assert "dry run: nothing was changed" in result.stdout
    if precreate:
        assert list(tools_dir.iterdir()) == []
    else:
        assert not tools_dir.exists()
    assert list(home.iterdir()) == [], "--dry-run wrote into HOME (~/.docker)"


def test_install_tools_help_and_bad_argument() -> None:
    help_result = run(["bash", str(INSTALL_TOOLS), "--help"])
    assert help_result.returncode == 0
    assert help_result.stdout.startswith("Usage:")

    bad = run(["bash", str(INSTALL_TOOLS), "--no-such-option"])
    assert bad.returncode != 0
    assert "unknown argument" in bad.stderr


VERSION_CASES = [
    # name, arguments, version pattern, expected major, minimum minor
    ("prometheus", ["--version"], r"prometheus, version (\d+)\.(\d+)\.\d+", 3, 0),
    ("promtool", ["--version"], r"promtool, version (\d+)\.(\d+)\.\d+", 3, 0),
    ("alertmanager", ["--version"], r"alertmanager, version (\d+)\.(\d+)\.\d+", 0, 27),
    ("amtool", ["--version"], r"amtool, version (\d+)\.(\d+)\.\d+", 0, 27),
    ("node_exporter", ["--version"], r"node_exporter, version (\d+)\.(\d+)\.\d+", 1, 0),
    ("docker-compose", ["version"], r"Docker Compose version v?(\d+)\.(\d+)\.\d+", 2, 0),
]


@pytest.mark.parametrize(
    ("name", "args", "pattern", "major", "min_minor"),
    [pytest.param(*case, id=case[0]) for case in VERSION_CASES],
)
def test_tool_version(name: str, args: list[str], pattern: str, major: int, min_minor: int) -> None:
    path = tool(name)
    assert Path(path).is_absolute()

    result = run([path, *args])

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    match = re.search(pattern, output)
    assert match is not None, f"no version in {name} {' '.join(args)}: {output!r}"
    assert int(match.group(1)) == major, output
    assert int(match.group(2)) >= min_minor, output


def test_shell_scripts_pass_shellcheck() -> None:
    # -x follows `source` into scripts/lib, resolved from the repository root.
    result = subprocess.run(
        [
            tool("shellcheck"),
            "-x",
            *(str(script.relative_to(REPO_ROOT)) for script in SHELL_SCRIPTS),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_are_executable() -> None:
    assert REPO_ROOT / paths.CHECK_STACK in SHELL_SCRIPTS
    assert REPO_ROOT / ".ci" / "run" in SHELL_SCRIPTS
    for script in set(SHELL_SCRIPTS) - SHELL_LIBRARIES:
        assert os.access(script, os.X_OK), f"{script} is not executable (chmod +x)"
