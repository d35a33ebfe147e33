"""The compose file, read one of two ways, and only here.

As written: the YAML itself, no interpolation, no overrides (what a reviewer reads).
Rendered: what Compose v2 itself makes of the files and an env file (``config
--format json``): interpolated, overrides merged, defaults filled in.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .paths import COMPOSE_FILE, REPO_ROOT

Model = dict[str, Any]


class _ComposeLoader(yaml.SafeLoader):
    """YAML with Compose's merge tags (``!reset``, ``!override``), read as their value:
    an override file as written, not what it does to the file below."""


def _tagged_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


for _tag in ("!reset", "!override"):
    _ComposeLoader.add_constructor(_tag, _tagged_value)


class ComposeError(Exception):
    """The compose file does not read, or Compose refused to render it."""


def as_written(path: Path = REPO_ROOT / COMPOSE_FILE) -> Model:
    """The compose file's YAML as written."""
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_ComposeLoader)  # noqa: S506
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
    compose_binary: str,
    files: Sequence[Path],
    *args: str,
    env_file: Path,
    environ: Mapping[str, str],
    project_directory: Path = REPO_ROOT,
) -> subprocess.CompletedProcess[str]:
    """``docker compose --file F... config ARGS`` in exactly ``environ``.

    Relative paths in the files resolve against ``project_directory`` (the repository,
    even for a copy of a file elsewhere).
    """
    command = [compose_binary]
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
    compose_binary: str,
    files: Sequence[Path],
    *,
    env_file: Path,
    environ: Mapping[str, str],
    project_directory: Path = REPO_ROOT,
) -> Model:
    """The model Compose renders from ``files`` (``config --format json``)."""
    result = render(
        compose_binary,
        files,
        "--format",
        "json",
        env_file=env_file,
        environ=environ,
        project_directory=project_directory,
    )
    if result.returncode != 0:
        raise ComposeError(f"docker compose config failed: {result.stderr.strip()}")
    model: Model = json.loads(result.stdout)
    return model
