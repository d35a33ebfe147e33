"""PromQL as Prometheus gets it: Grafana variables substituted, parsed by promtool and
promql-parser, and the metric names an expression reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import promql_parser
import yaml

from ..paths import REPO_ROOT, TOOLS_DIR
from .files import one_line
from .report import Report

PROMTOOL_MISSING = "promtool not found: PromQL not parsed by promtool"


@dataclass(frozen=True)
class Windows:
    """What Grafana's time variables stand for when a query leaves Grafana."""

    rate_interval: str = "1m"
    range: str = "1h"


@dataclass(frozen=True)
class Query:
    """A PromQL expression found in a file, and what to call it in a finding."""

    file: str
    where: str
    expr: str
    promql: str
    kind: str = "rule"  # "panel", "variable" or "rule"
    dashboard: str = ""
    panel: str = ""


_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\[\[(?P<bracketed>\w+)(?::[^\]]*)?\]\]|\$(?P<plain>\w+)"
)
_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(text: str) -> float:
    if not _DURATION.match(text):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _literal_spans(expr: str) -> list[tuple[int, int, str]]:
    """(start, end, quote) of every PromQL string literal, and ``#`` for comments."""
    spans: list[tuple[int, int, str]] = []
    index = 0
    while index < len(expr):
        char = expr[index]
        if char == "#":
            newline = expr.find("\n", index)
            end = len(expr) if newline < 0 else newline
            spans.append((index, end, char))
            index = end
        elif char in "\"'`":
            end = index + 1
            while end < len(expr) and expr[end] != char:
                end += 2 if expr[end] == "\\" and char != "`" else 1
            spans.append((index, end, char))
            index = end
        index += 1
    return spans


def builtin_variables(windows: Windows, now: float | None = None) -> dict[str, str]:
    """Grafana's global time variables, as Grafana would interpolate them."""
    rate_s = duration_seconds(windows.rate_interval)
    range_s = duration_seconds(windows.range)
    to_ms = int((time.time() if now is None else now) * 1000)
    return {
        "__rate_interval": windows.rate_interval,
        "__interval": windows.rate_interval,
        "__range": windows.range,
        "__rate_interval_ms": str(int(rate_s * 1000)),
        "__interval_ms": str(int(rate_s * 1000)),
        "__range_s": str(int(range_s)),
        "__range_ms": str(int(range_s * 1000)),
        "__from": str(to_ms - int(range_s * 1000)),
        "__to": str(to_ms),
    }


def substitute_variables(
    expr: str,
    variables: Mapping[str, str | None],
    windows: Windows,
    now: float | None = None,
) -> str:
    """``expr`` with every Grafana variable replaced so Prometheus can run it.

    Time variables become ``windows``. In a regex matcher a variable matches anything
    (``.*``); in an equality matcher, and outside strings, it takes the dashboard's
    current value when that is a single one. Otherwise a range (``[$x]``) becomes the
    rate interval, any other place ``1``.
    """
    builtins = builtin_variables(windows, now)
    spans = _literal_spans(expr)

    def replace(match: re.Match[str]) -> str:
        name = _name(match)
        if name in builtins:
            return builtins[name]
        current = variables.get(name)
        start = match.start()
        span = next((s for s in spans if s[0] < start < s[1]), None)
        if span is not None and span[2] == "#":
            return match.group(0)
        if span is not None:
            operator = expr[: span[0]].rstrip()
            if operator.endswith(("=~", "!~")) or current is None:
                return ".*"
            return current
        if current is not None:
            return current
        before, after = expr[:start].rstrip(), expr[match.end() :].lstrip()
        if before.endswith(("[", ":")) or after.startswith(("]", ":")):
            return windows.rate_interval
        return "1"

    return _VARIABLE.sub(replace, expr)


def variable_name(text: str) -> str | None:
    """The variable ``text`` refers to, when it is exactly one variable reference."""
    match = _VARIABLE.fullmatch(text)
    return _name(match) if match else None


def _name(match: re.Match[str]) -> str:
    return match.group("braced") or match.group("bracketed") or match.group("plain")


def find_promtool(explicit: str | None) -> str | None:
    if explicit:
        path = Path(explicit)
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    tools = Path(os.environ.get("NEUROS_TOOLS_DIR") or REPO_ROOT / TOOLS_DIR) / "bin" / "promtool"
    if tools.is_file() and os.access(tools, os.X_OK):
        return str(tools)
    return shutil.which("promtool")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


_PROMTOOL_ERROR = re.compile(r'rule \d+, "(?P<name>[^"]+)": (?P<message>.*)$')


def promtool_errors(promtool: str, queries: Sequence[Query]) -> dict[int, str]:
    """Index into ``queries`` -> promtool's error, from one ``promtool check rules``."""
    names = [f"check_stack:q{index}:expr" for index in range(len(queries))]
    if not queries:
        return {}
    result = _promtool_check(promtool, list(zip(names, (q.promql for q in queries), strict=True)))
    if result.returncode == 0:
        return {}
    errors: dict[int, str] = {}
    index_of = {name: index for index, name in enumerate(names)}
    for line in (result.stdout + result.stderr).splitlines():
        match = _PROMTOOL_ERROR.search(line)
        if match and match.group("name") in index_of:
            errors[index_of[match.group("name")]] = match.group("message").strip()
    if errors:
        return errors
    # Unattributed failure (e.g. an expression that breaks the YAML): one by one.
    for index, query in enumerate(queries):
        single = _promtool_check(promtool, [(names[index], query.promql)])
        if single.returncode != 0:
            errors[index] = one_line(single.stdout + single.stderr)
    return errors


def _promtool_check(
    promtool: str, rules: Sequence[tuple[str, str]]
) -> subprocess.CompletedProcess[str]:
    document = {
        "groups": [{"name": "check-stack", "rules": [{"record": n, "expr": e} for n, e in rules]}]
    }
    with tempfile.TemporaryDirectory(prefix="check-stack-") as tmp:
        path = Path(tmp) / "queries.yml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return subprocess.run(
            [promtool, "check", "rules", "--lint=none", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def parse_queries(
    queries: Sequence[Query], promtool: str | None, report: Report
) -> dict[int, promql_parser.Expr]:
    """Parse every query; report those that fail. Returns the ASTs by query index."""
    rejected = promtool_errors(promtool, queries) if promtool else {}
    asts: dict[int, promql_parser.Expr] = {}
    for index, query in enumerate(queries):
        if index in rejected:
            report.add(
                query.file,
                f"{query.where}: PromQL rejected by promtool:"
                f" {rejected[index]}: {one_line(query.expr)}",
            )
            continue
        try:
            asts[index] = promql_parser.parse(query.promql)
        except (ValueError, TypeError) as error:
            if promtool:
                message = (
                    f"promql-parser cannot parse it (promtool can), so its metrics are"
                    f" not checked: {error}"
                )
            else:
                message = f"PromQL does not parse: {error}"
            report.add(query.file, f"{query.where}: {message}: {one_line(query.expr)}")
    return asts


@dataclass
class MetricReads:
    """(metric name, the job it is selected from if ``job="..."``), and name regexes."""

    names: set[tuple[str, str | None]] = field(default_factory=set)
    patterns: set[str] = field(default_factory=set)


def metric_reads(expr: promql_parser.Expr) -> MetricReads:
    """The metric names (and ``__name__`` regexes) an expression reads."""
    reads = MetricReads()
    equal = promql_parser.MatchOp.Equal

    def visit(node: promql_parser.Expr) -> None:
        if not isinstance(node, promql_parser.VectorSelector):
            return
        matchers = node.matchers.matchers
        job = next((m.value for m in matchers if m.name == "job" and m.op == equal), None)
        if node.name:
            reads.names.add((node.name, job))
        for matcher in matchers:
            if matcher.name != "__name__":
                continue
            if matcher.op == equal:
                reads.names.add((matcher.value, job))
            elif matcher.op == promql_parser.MatchOp.Re:
                reads.patterns.add(matcher.value)

    promql_parser.walk(expr, visit)
    return reads
