"""Experiment files: the Chaos Toolkit shape, read from JSON.

An experiment has ``title``, ``description``, ``configuration`` (values, or
``{"type": "env", "key": ..., "default": ...}``), ``steady-state-hypothesis``
(``title``, ``probes`` with ``tolerance``; a probe with ``"only_before": true`` is a
precondition, checked before the method and not after, for a state the fault changes
by design), ``method`` and ``rollbacks`` (activities), and our ``verdict`` (bounds on
the measured times). Strings ``"${name}"`` are replaced
by a configuration value or by a saved probe result (``${saved.dotted.path}``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENTS_DIR = Path(__file__).resolve().parent / "experiments"
_REF = re.compile(r"\$\{([A-Za-z0-9_.]+)\}")


class ExperimentError(Exception):
    """A malformed experiment file or an unresolvable reference."""


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    data: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.data["title"])

    @property
    def description(self) -> str:
        return str(self.data["description"])

    @property
    def hypothesis(self) -> dict[str, Any]:
        value: dict[str, Any] = self.data["steady-state-hypothesis"]
        return value

    def activities(self, section: str) -> list[dict[str, Any]]:
        value: list[dict[str, Any]] = self.data.get(section) or []
        return value

    def configuration(self, environ: dict[str, str] | None = None) -> dict[str, Any]:
        """Configuration values, ``env`` entries read from the environment and given
        the type of their default."""
        environ = dict(os.environ) if environ is None else environ
        resolved: dict[str, Any] = {}
        for key, spec in (self.data.get("configuration") or {}).items():
            if isinstance(spec, dict) and spec.get("type") == "env":
                default = spec.get("default")
                raw = environ.get(str(spec["key"]))
                resolved[key] = default if raw is None else _like(default, raw)
            else:
                resolved[key] = spec
        return resolved


def _like(default: Any, raw: str) -> Any:
    if isinstance(default, bool):
        return raw.strip().lower() in {"1", "true", "yes"}
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw


REQUIRED = ("title", "description", "steady-state-hypothesis", "method", "rollbacks", "verdict")


def load(path: Path) -> Experiment:
    data = json.loads(path.read_text(encoding="utf-8"))
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ExperimentError(f"{path.name}: missing {', '.join(missing)}")
    for probe in data["steady-state-hypothesis"].get("probes") or []:
        if "tolerance" not in probe:
            raise ExperimentError(
                f"{path.name}: steady-state probe {probe['name']!r} has no tolerance"
            )
    return Experiment(name=path.stem, path=path, data=data)


def available(directory: Path = EXPERIMENTS_DIR) -> dict[str, Experiment]:
    return {path.stem: load(path) for path in sorted(directory.glob("*.json"))}


def lookup(scope: dict[str, Any], dotted: str) -> Any:
    value: Any = scope
    for part in dotted.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise ExperimentError(f"unresolved reference ${{{dotted}}}")
    return value


def substitute(value: Any, scope: dict[str, Any], strict: bool = True) -> Any:
    """``value`` with every ``${ref}`` resolved; a string that is only a reference takes
    the referenced value's type. Not ``strict`` (dry runs, where no probe saved anything):
    an unresolvable reference stays as written."""

    def resolve(ref: str, text: str) -> Any:
        try:
            return lookup(scope, ref)
        except ExperimentError:
            if strict:
                raise
            return text

    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole:
            return resolve(whole.group(1), value)
        return _REF.sub(lambda m: str(resolve(m.group(1), m.group(0))), value)
    if isinstance(value, list):
        return [substitute(item, scope, strict) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, scope, strict) for key, item in value.items()}
    return value


def references(value: Any) -> set[str]:
    """Every ``${ref}`` in ``value`` (for checks of the experiment files)."""
    if isinstance(value, str):
        return set(_REF.findall(value))
    if isinstance(value, list):
        return set().union(*(references(item) for item in value)) if value else set()
    if isinstance(value, dict):
        return references(list(value.values()))
    return set()


def within(value: Any, tolerance: Any) -> tuple[bool, str]:
    """Chaos Toolkit tolerances: a literal (equal), a list (one of), ``range``; ours:
    ``fields`` (each named field within its own tolerance), ``min``/``max`` bounds
    (``{"max": 3}``), ``above`` (strictly), ``relative`` (at most ``to * ratio + slack``),
    ``subset`` (a list whose items all appear in ``of``)."""
    if isinstance(tolerance, dict):
        kind = tolerance.get("type")
        if kind == "range":
            low, high = tolerance["range"]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            ok = ok and (low is None or value >= low) and (high is None or value <= high)
            return ok, f"{value!r} in [{low}, {high}]"
        if kind == "fields":
            if not isinstance(value, dict):
                return False, f"{value!r} has no fields"
            failed = []
            for key, expected in tolerance["fields"].items():
                ok, why = within(value.get(key), expected)
                if not ok:
                    failed.append(f"{key}: {why}")
            return not failed, "; ".join(failed) or "all fields within tolerance"
        if kind == "subset":
            allowed = set(tolerance["of"])
            extra = sorted(set(value or []) - allowed)
            return (
                not extra,
                f"unexpected {extra}" if extra else f"{value!r} within {sorted(allowed)}",
            )
        if kind == "relative":
            bound = float(tolerance["to"]) * float(tolerance["ratio"]) + float(
                tolerance.get("slack", 0)
            )
            return within(value, {"type": "range", "range": [None, bound]})
        if "above" in tolerance:
            ok = isinstance(value, int | float) and value > tolerance["above"]
            return ok, f"{value!r} > {tolerance['above']!r}"
        if "min" in tolerance or "max" in tolerance:
            low, high = tolerance.get("min"), tolerance.get("max")
            return within(value, {"type": "range", "range": [low, high]})
        raise ExperimentError(f"unknown tolerance {tolerance!r}")
    if isinstance(tolerance, list):
        return value in tolerance, f"{value!r} one of {tolerance!r}"
    return value == tolerance, f"{value!r} == {tolerance!r}"
