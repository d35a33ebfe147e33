"""The compose file, read one of two ways, and only here.

As written: the YAML itself, no interpolation, no overrides (what a reviewer reads).
Rendered: what Compose v2 itself makes of the files and an env file (``config
--format json``): interpolated, overrides merged, defaults filled in.

Importable with the standard library alone: the chaos runner (any python3, no venv)
reads the project name through ``project_name``; PyYAML is imported only to read a
file as written.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import COMPOSE_FILE, REPO_ROOT

if TYPE_CHECKING:
    import yaml

Model = dict[str, Any]
# A top-level `name:` (the project name), as Compose reads it: lowercase letters,
# digits, dashes and underscores, optionally quoted, optionally followed by a comment.
_NAME_LINE = re.compile(r"^name:\s*['\"]?([a-z0-9][a-z0-9_-]*)['\"]?\s*(#.*)?$")


class ComposeError(Exception):
    """The compose file does not read, or Compose refused to render it."""


@cache
def _loader() -> type[yaml.SafeLoader]:
    """PyYAML's safe loader plus Compose's merge tags (``!reset``, ``!override``), read
    as their value: an override file as written, not what it does to the file below."""
    import yaml

    class ComposeLoader(yaml.SafeLoader):
        pass

    def tagged_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)  # type: ignore[arg-type]

    for tag in ("!reset", "!override"):
        ComposeLoader.add_constructor(tag, tagged_value)
    return ComposeLoader


def project_name(paths: Iterable[Path]) -> str | None:
    """The top-level ``name:`` of the last file that sets one (Compose's rule), read
    with the standard library alone."""
    found = None
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _NAME_LINE.match(line)
            if match:
                found = match.group(1)
    return found


def as_written(path: Path = REPO_ROOT / COMPOSE_FILE) -> Model:
    """The compose file's YAML as written."""
    import yaml

    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())  # noqa: S506
    except FileNotFoundError as error:
        raise ComposeError("missing") from error
    except (OSError, yaml.YAMLError) as error:
        raise ComposeError(f"cannot read YAML: {' '.join(str(error).split())}") from error
    if not isinstance(document, dict):
        raise ComposeError("not a mapping")
    return document


def services_as_written(path: Path = REPO_ROOT / COMPOSE_FILE) -> dict[str, Any]:
    """The ``services`` of the compose file as written."""
    services = as_written(path).get("services")
    if not isinstance(services, dict):
        raise ComposeError("no services")
    return services


def service_as_written(name: str, path: Path = REPO_ROOT / COMPOSE_FILE) -> dict[str, Any]:
    """One service of the compose file as written."""
    services = services_as_written(path)
    if name not in services:
        raise ComposeError(f"no service {name!r} in {path}")
    service: dict[str, Any] = services[name]
    return service


def render(
    compose_binary: str | Sequence[str],
    files: Sequence[Path],
    *args: str,
    env_file: Path,
    environ: Mapping[str, str],
    project_directory: Path = REPO_ROOT,
    project: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``docker compose --file F... config ARGS`` in exactly ``environ``.

    Relative paths in the files resolve against ``project_directory`` (the repository,
    even for a copy of a file elsewhere).
    """
    command = [compose_binary] if isinstance(compose_binary, str) else list(compose_binary)
    if project is not None:
        command += ["--project-name", project]
    for path in files:
        command += ["--file", str(path)]
    command += [
        "--project-directory",
        str(project_directory),
        "--env-file",
        str(env_file),
        "config",
        *args,
    ]
    return subprocess.run(
        command,
        cwd=project_directory,
        env=dict(environ),
        capture_output=True,
        text=True,
        check=False,
    )


def rendered(
    compose_binary: str | Sequence[str],
    files: Sequence[Path],
    *services: str,
    env_file: Path,
    environ: Mapping[str, str],
    project_directory: Path = REPO_ROOT,
    project: str | None = None,
) -> Model:
    """The model Compose renders from ``files`` (``config --format json``), of
    ``services`` only when any are named."""
    result = render(
        compose_binary,
        files,
        "--format",
        "json",
        *services,
        env_file=env_file,
        environ=environ,
        project_directory=project_directory,
        project=project,
    )
    if result.returncode != 0:
        raise ComposeError(f"docker compose config failed: {result.stderr.strip()}")
    model: Model = json.loads(result.stdout)
    return model
