"""The run report: JSON for machines, text for people, same content."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def stamp(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def paths(base: Path) -> tuple[Path, Path]:
    """``--report FILE``: FILE.json and FILE.txt (a .json suffix of FILE is dropped)."""
    if base.suffix == ".json":
        base = base.with_suffix("")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".txt")


def _hypothesis(lines: list[str], label: str, record: dict[str, Any] | None) -> None:
    if record is None:
        lines.append(f"  steady state {label}: not run")
        return
    met = {True: "met", False: "NOT MET", None: "not checked (dry run)"}[record["met"]]
    lines.append(f"  steady state {label}: {met}")
    for probe in record["probes"]:
        mark = "ok " if probe["ok"] else "BAD"
        lines.append(f"    [{mark}] {probe['name']}: {probe['why']}")


def text(run: dict[str, Any]) -> str:
    lines = [f"chaos run {run['started_at']} project={run['project']} mode={run['mode']}"]
    for exp in run["experiments"]:
        lines += ["", f"== {exp['name']}: {exp['title']}", f"  verdict: {exp['verdict']['result']}"]
        lines += [f"    - {reason}" for reason in exp["verdict"]["reasons"]]
        _hypothesis(lines, "before", exp["hypothesis_before"])
        for section in ("method", "rollbacks"):
            lines.append(f"  {section}:")
            for act in exp[section]:
                status = "ok " if act["ok"] else "BAD"
                lines.append(
                    f"    {act['started_at']} [{status}] {act['type']} {act['name']}: {act['why']}"
                )
                lines += [f"        $ {command}" for command in act.get("commands", [])]
        _hypothesis(lines, "after", exp["hypothesis_after"])
        for name, seconds in exp["measures"].items():
            lines.append(f"  {name}: {seconds:.2f} s")
        for alert in exp["alerts_seen"]:
            lines.append(f"  alert seen: {alert['alert']} {alert['state']} at {alert['at']}")
        for alert in exp["alerts_due"]:
            lines.append(f"  alert already due at {alert['held_at']}: {alert['alert']}")
    return "\n".join(lines) + "\n"


def write(run: dict[str, Any], base: Path) -> tuple[Path, Path]:
    json_path, text_path = paths(base)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(run, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    text_path.write_text(text(run), encoding="utf-8")
    return json_path, text_path
