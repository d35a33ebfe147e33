"""uv.lock: the one set of versions that the agent image and scripts/test.sh install.

The lock matches pyproject.toml (``uv lock --check``), both installers use it frozen,
the lint and type tools and uv itself are pinned exactly, and this venv holds the
locked versions of them (docs/development.md, "Dependencies and the lock").
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.dockerfile import Stage, dockerfile
from tests.support.tooling import in_ci

PYPROJECT = REPO_ROOT / paths.PYPROJECT
LOCK = REPO_ROOT / paths.LOCK_FILE
TEST_SCRIPT = REPO_ROOT / paths.TEST_SCRIPT

# Pinned with == in the dev extra: a lint or type finding never comes from an upgrade,
# and the scripts install that uv release.
PINNED_TOOLS = ("ruff", "mypy", "types-PyYAML", "uv")
SHELL_OPERATORS = {"&&", "||", ";", "|", "&"}


@cache
def pyproject() -> dict[str, Any]:
    with PYPROJECT.open("rb") as file:
        return tomllib.load(file)


@cache
def lock() -> dict[str, Any]:
    with LOCK.open("rb") as file:
        return tomllib.load(file)


def locked_version(name: str) -> str:
    """The one version of ``name`` in uv.lock."""
    versions = {
        str(package["version"])
        for package in lock()["package"]
        if package["name"] == canonicalize_name(name)
    }
    assert len(versions) == 1, f"uv.lock has {sorted(versions)} for {name}"
    return versions.pop()


def pinned_version(name: str) -> str:
    """The exact version pyproject.toml's dev extra pins ``name`` to."""
    found = [
        Requirement(line)
        for line in pyproject()["project"]["optional-dependencies"]["dev"]
        if canonicalize_name(Requirement(line).name) == canonicalize_name(name)
    ]
    assert len(found) == 1, f"the dev extra names {name} {len(found)} times"
    specifiers = list(found[0].specifier)
    assert len(specifiers) == 1, f"{found[0]}: one == pin, nothing else"
    assert specifiers[0].operator == "==", f"{found[0]}: not pinned with =="
    assert "*" not in specifiers[0].version, f"{found[0]}: a wildcard is a range"
    return specifiers[0].version


def uv_binary() -> str:
    """The venv's uv (the dev extra installs it), next to this interpreter."""
    candidate = Path(sys.executable).parent / "uv"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    message = f"no uv next to {sys.executable}: scripts/test.sh installs it (dev extra)"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_uv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    return subprocess.run(
        [uv_binary(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell command line, split at &&, ||, ;, | and &."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    command: list[str] = []
    for token in lexer:
        if token in SHELL_OPERATORS:
            if command:
                yield command
            command = []
        else:
            command.append(token)
    if command:
        yield command


def option_value(argv: list[str], option: str) -> str | None:
    """The value of ``--option value`` or ``--option=value`` in ``argv``."""
    for index, word in enumerate(argv):
        if word == option and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(option + "="):
            return word.partition("=")[2]
    return None


def is_program(word: str, name: str) -> bool:
    return word == name or word.endswith("/" + name)


def is_pip_install(argv: list[str]) -> bool:
    if len(argv) >= 2 and is_program(argv[0], "pip") and argv[1] == "install":
        return True
    return len(argv) >= 4 and argv[1:4] == ["-m", "pip", "install"]


# --- the lock and pyproject.toml -----------------------------------------------------


def test_shell_commands_splits_at_operators() -> None:
    assert list(shell_commands("a -x 'b c' && d | e; f")) == [
        ["a", "-x", "b c"],
        ["d"],
        ["e"],
        ["f"],
    ]


def test_lock_is_in_sync_with_pyproject() -> None:
    result = run_uv("lock", "--check", cwd=REPO_ROOT)

    assert result.returncode == 0, (
        f"uv.lock does not match pyproject.toml: run `uv lock` "
        f"(docs/development.md)\n{result.stderr}"
    )


def test_lock_check_catches_a_stale_lock(tmp_path: Path) -> None:
    """The check above can fail: drop one dependency from a copy of pyproject.toml."""
    text = PYPROJECT.read_text(encoding="utf-8")
    dropped = '    "psycopg-pool>=3.2,<4",\n'
    assert dropped in text
    (tmp_path / "pyproject.toml").write_text(text.replace(dropped, ""), encoding="utf-8")
    shutil.copy(LOCK, tmp_path / "uv.lock")

    result = run_uv("lock", "--check", cwd=tmp_path)

    assert result.returncode != 0
    assert "needs to be updated" in result.stderr, result.stderr


def test_lock_covers_every_extra() -> None:
    project = pyproject()["project"]
    (package,) = [p for p in lock()["package"] if p["name"] == project["name"]]

    assert package["source"] == {"editable": "."}
    assert set(package.get("optional-dependencies", {})) == set(project["optional-dependencies"])


@pytest.mark.parametrize("name", PINNED_TOOLS)
def test_tool_is_pinned_exactly_and_locked_at_the_pin(name: str) -> None:
    assert locked_version(name) == pinned_version(name)


@pytest.mark.parametrize("name", PINNED_TOOLS)
def test_venv_has_the_locked_version_of(name: str) -> None:
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None

    assert installed == locked_version(name), (
        f"{name} {installed} in {sys.prefix}, {locked_version(name)} in uv.lock: "
        "scripts/test.sh reinstalls from the lock"
    )


# --- neuros/Dockerfile -----------------------------------------------------------------


def builder_stage() -> Stage:
    """The stage that installs the package (COPY neuros)."""
    for stage in dockerfile().stages:
        for copy in stage.all("COPY"):
            if "--from=" not in copy.args and "neuros" in copy.args.split()[:-1]:
                return stage
    raise AssertionError("no stage copies neuros/")


def run_commands(stage: Stage) -> list[tuple[int, list[str]]]:
    """(index of the RUN in the stage, argv) of every command the stage runs."""
    return [
        (index, argv)
        for index, instruction in enumerate(stage.instructions)
        if instruction.keyword == "RUN"
        for argv in shell_commands(instruction.args)
    ]


def test_image_installs_the_runtime_dependencies_from_the_lock_frozen() -> None:
    stage = builder_stage()
    copies = {
        index: instruction.args.split()[:-1]
        for index, instruction in enumerate(stage.instructions)
        if instruction.keyword == "COPY"
    }
    lock_copied = min(i for i, sources in copies.items() if "uv.lock" in sources)
    package_copied = min(i for i, sources in copies.items() if "neuros" in sources)
    assert "pyproject.toml" in copies[lock_copied], "COPY pyproject.toml with uv.lock"
    commands = run_commands(stage)

    exports = [(i, argv) for i, argv in commands if is_program(argv[0], "uv")]
    assert [argv[1] for _, argv in exports] == ["export"], "one `uv export`"
    ((export_at, export),) = exports
    assert "--frozen" in export, "uv export without --frozen re-resolves"
    assert not {"--extra", "--all-extras", "--all-groups", "--group"} & {
        word.partition("=")[0] for word in export
    }, "the image takes the runtime dependencies only"
    assert "--no-emit-project" in export, "the package goes in after its dependencies"
    requirements = option_value(export, "--output-file") or option_value(export, "-o")
    assert requirements, "uv export --output-file FILE"

    hashed = [
        (i, argv)
        for i, argv in commands
        if is_pip_install(argv) and option_value(argv, "--requirement") == requirements
    ]
    assert hashed, f"no pip install --requirement {requirements}"
    for i, argv in hashed:
        assert "--require-hashes" in argv
        # Cached before the code: editing neuros/ does not reinstall the dependencies.
        assert lock_copied < export_at <= i < package_copied


def test_image_installs_nothing_outside_the_lock_but_the_pinned_uv() -> None:
    uv_pins = []
    for _, argv in run_commands(builder_stage()):
        if not is_pip_install(argv):
            continue
        if "--require-hashes" in argv or "--no-deps" in argv:
            continue
        targets = [word for word in argv[2:] if not word.startswith("-")]
        outside = f"`{shlex.join(argv)}` resolves outside uv.lock"
        assert len(targets) == 1, outside
        assert targets[0].startswith("uv=="), outside
        uv_pins.append(targets[0].removeprefix("uv=="))

    assert uv_pins == [pinned_version("uv")]


# --- scripts/test.sh -------------------------------------------------------------------


STUB = """#!{python}
import json, os, sys
from pathlib import Path

argv = sys.argv[1:]
env = {{k: v for k, v in os.environ.items() if k.startswith("UV_")}}
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps({{"program": "{name}", "argv": argv, "env": env}}) + "\\n")
if "{name}" == "uv" and argv == ["--version"]:
    print("uv " + os.environ["STUB_UV_VERSION"])
elif "{name}" == "uv":
    sys.exit(int(os.environ.get("STUB_UV_STATUS", "0")))
if argv[:3] == ["-m", "pip", "install"] and os.environ.get("STUB_PIP_INSTALLS_UV"):
    uv = Path(sys.argv[0]).parent / "uv"
    uv.write_text(os.environ["STUB_UV_SOURCE"])
    uv.chmod(0o755)
"""


class ScriptSandbox:
    """scripts/test.sh's functions in a scratch repository whose .venv has stub python
    and uv executables that log how they are called."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "calls.jsonl"
        text = TEST_SCRIPT.read_text(encoding="utf-8")
        body, _, last = text.rstrip("\n").rpartition("\n")
        assert last == 'main "$@"', "scripts/test.sh no longer ends with main"
        (root / "scripts").mkdir()
        self.functions = root / "scripts" / "test-functions.sh"
        self.functions.write_text(body + "\n", encoding="utf-8")
        for name in ("pyproject.toml", "uv.lock"):
            shutil.copy(REPO_ROOT / name, root / name)
        self.bin = root / ".venv" / "bin"
        self.bin.mkdir(parents=True)
        python = self.bin / "python"
        python.write_text(STUB.format(python=sys.executable, name="python"))
        python.chmod(0o755)
        (self.bin / "python3").symlink_to("python")

    def install_venv(self, **env: str) -> tuple[subprocess.CompletedProcess[str], list[Any]]:
        """Runs install_venv; returns its result and the stub calls it made."""
        self.log.write_text("")
        result = subprocess.run(
            ["bash", "-c", 'source "$1" && install_venv', "bash", str(self.functions)],
            env={
                **os.environ,
                "STUB_LOG": str(self.log),
                "STUB_UV_VERSION": pinned_version("uv"),
                "STUB_PIP_INSTALLS_UV": "1",
                "STUB_UV_SOURCE": STUB.format(python=sys.executable, name="uv"),
                **env,
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return result, calls


def syncs(calls: list[Any]) -> list[Any]:
    return [c for c in calls if c["program"] == "uv" and c["argv"][:1] == ["sync"]]


def test_test_script_installs_from_the_lock_frozen(tmp_path: Path) -> None:
    sandbox = ScriptSandbox(tmp_path)

    result, calls = sandbox.install_venv()

    assert result.returncode == 0, result.stderr
    pip_installs = [c["argv"] for c in calls if c["argv"][:3] == ["-m", "pip", "install"]]
    assert len(pip_installs) == 1, "uv is bootstrapped with pip"
    assert pip_installs[0][-1] == f"uv=={pinned_version('uv')}"
    (sync,) = syncs(calls)
    argv = sync["argv"]
    assert "--frozen" in argv, "uv sync without --frozen may rewrite the lock"
    extras = {argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--extra"}
    assert extras == {"test", "dev"}
    assert not {"--upgrade", "--no-install-project", "--inexact", "--all-extras"} & set(argv)
    assert sync["env"].get("UV_PROJECT_ENVIRONMENT") == str(tmp_path / ".venv")
    assert sync["env"].get("UV_PYTHON_DOWNLOADS") == "never"
    assert option_value(argv, "--python"), "the venv's python3, never a downloaded one"


def test_test_script_reinstalls_when_pyproject_or_lock_changes(tmp_path: Path) -> None:
    sandbox = ScriptSandbox(tmp_path)
    assert sandbox.install_venv()[0].returncode == 0

    result, calls = sandbox.install_venv()
    assert result.returncode == 0
    assert not syncs(calls), "nothing changed: no reinstall"
    assert not [c for c in calls if "pip" in c["argv"]], "uv is there: no pip"

    for name in ("uv.lock", "pyproject.toml"):
        with (tmp_path / name).open("a") as file:
            file.write("\n# changed\n")
        result, calls = sandbox.install_venv()
        assert result.returncode == 0
        assert len(syncs(calls)) == 1, f"{name} changed: reinstall"


def test_test_script_fails_when_the_sync_fails(tmp_path: Path) -> None:
    sandbox = ScriptSandbox(tmp_path)

    result, calls = sandbox.install_venv(STUB_UV_STATUS="1")

    assert result.returncode != 0
    assert len(syncs(calls)) == 1
    assert "uv sync --frozen failed" in result.stderr
    assert not (tmp_path / ".venv" / ".neuros-install-stamp").exists()
    assert len(syncs(sandbox.install_venv()[1])) == 1, "no stamp: the next run retries"
