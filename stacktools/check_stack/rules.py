"""Prometheus alerting and recording rules, and their expressions as queries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import RULES_DIR
from .files import as_dict, as_list, load_folder
from .promql import Query
from .report import Report


@dataclass(frozen=True)
class Rule:
    file: str
    name: str
    kind: str  # "alert" or "record"
    expr: str
    annotations: dict[str, Any]


def load_rules(repo: Path, report: Report) -> list[Rule]:
    rules: list[Rule] = []
    for rel, document in load_folder(repo, RULES_DIR, "*.yml", "rule file", report):
        for group in as_list(document.get("groups")):
            for rule in as_list(as_dict(group).get("rules")):
                rule = as_dict(rule)
                kind = "alert" if "alert" in rule else "record"
                rules.append(
                    Rule(
                        file=rel,
                        name=str(rule.get(kind, "")),
                        kind=kind,
                        expr=str(rule.get("expr", "")),
                        annotations=as_dict(rule.get("annotations")),
                    )
                )
    return rules


def rule_queries(rules: Iterable[Rule]) -> list[Query]:
    return [Query(r.file, f"{r.kind} {r.name!r}", r.expr, r.expr) for r in rules]
