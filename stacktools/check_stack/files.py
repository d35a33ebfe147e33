"""Reading the checked files without trusting their shape (where they are:
stacktools.paths)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .report import Report


class LoadError(Exception):
    pass


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise LoadError("missing") from error
    except (OSError, yaml.YAMLError) as error:
        raise LoadError(f"cannot read YAML: {one_line(str(error))}") from error


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise LoadError("missing") from error
    except (OSError, ValueError) as error:
        raise LoadError(f"cannot read JSON: {one_line(str(error))}") from error


def one_line(text: str) -> str:
    return " ".join(text.split())


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def walk_json(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a JSON/YAML document, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_json(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_json(item)


def load_folder(
    repo: Path, folder: Path, pattern: str, what: str, report: Report
) -> list[tuple[str, dict[str, Any]]]:
    """(path relative to ``repo``, document) of every file in ``folder`` matching
    ``pattern`` (``*.json`` or ``*.yml``); no such file, or one that does not load, is a
    finding."""
    files = sorted((repo / folder).glob(pattern))
    if not files:
        report.add(folder, f"no {what} ({pattern})")
    load = load_json if pattern.endswith(".json") else load_yaml
    documents: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        rel = str(path.relative_to(repo))
        try:
            documents.append((rel, as_dict(load(path))))
        except LoadError as error:
            report.add(rel, str(error))
    return documents


def load_required(repo: Path, rel: Path, report: Report) -> dict[str, Any]:
    try:
        return as_dict(load_yaml(repo / rel))
    except LoadError as error:
        report.add(rel, str(error))
        return {}
