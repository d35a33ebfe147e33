"""Every alert has a runbook section, its runbook_url points at it, and every metric
the runbook tells an operator to query exists."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import promql_parser

from stacktools.generate import runbook_links

from ..paths import RUNBOOK
from .producers import EXPORTER_PREFIXES, SYNTHETIC_METRICS, Producers
from .promql import metric_reads
from .report import Report
from .rules import Rule

# An inline code span (`...`, possibly wrapped over lines), or a fenced block's line.
_CODE_SPAN = re.compile(r"(?<!`)`(?!`)(?P<code>[^`]+)`(?!`)")
_FENCE = re.compile(r"^```.*?$(?P<body>.*?)^```", re.M | re.S)
# Names that are metrics of this stack when they appear in code: namespaces of the
# agent, the collector and the exporters, and recording rules (level:metric:operations).
METRIC_NAMESPACES = ("neuros_", "otelcol_", *EXPORTER_PREFIXES)
_RECORDING_RULE_NAME = re.compile(r"^[A-Za-z_]\w*:[A-Za-z_][\w:]*$")  # not host:port


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check_runbook(repo: Path, rules: Sequence[Rule], report: Report) -> None:
    path = repo / RUNBOOK
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        report.add(RUNBOOK, f"cannot read: {error.strerror}")
        return
    sections = {m.group(1).strip() for m in re.finditer(r"^## +(.+?)\s*#*\s*$", text, re.M)}
    try:
        base: str | None = runbook_links.load_base_url(repo)
    except runbook_links.ConfigError as error:
        report.add(runbook_links.CONFIG, str(error))
        base = None
    for rule in rules:
        if rule.kind != "alert":
            continue
        if rule.name not in sections:
            report.add(
                rule.file, f"alert {rule.name!r} has no '## {rule.name}' section in {RUNBOOK}"
            )
        url = rule.annotations.get("runbook_url")
        if not isinstance(url, str) or not url:
            report.add(rule.file, f"alert {rule.name!r} has no runbook_url annotation")
            continue
        want = github_anchor(rule.name)
        if urllib.parse.urlsplit(url).fragment != want:
            report.add(
                rule.file,
                f"alert {rule.name!r} runbook_url {url!r} does not point at {RUNBOOK}#{want}",
            )
        elif base is not None and url != runbook_links.url(rule.name, base):
            report.add(
                rule.file,
                f"alert {rule.name!r} runbook_url {url!r} is not "
                f"{runbook_links.url(rule.name, base)!r} ({runbook_links.CONFIG} base_url)",
            )


@dataclass(frozen=True)
class CodeSnippet:
    line: int
    code: str


def code_snippets(text: str) -> Iterator[CodeSnippet]:
    """Inline code spans and fenced-block lines of Markdown ``text``, with their line."""
    fenced: list[tuple[int, int]] = []
    for block in _FENCE.finditer(text):
        fenced.append(block.span())
        first = text.count("\n", 0, block.start("body"))
        for offset, line in enumerate(block.group("body").split("\n")):
            if line.strip():
                yield CodeSnippet(first + offset + 1, line.strip())
    for span in _CODE_SPAN.finditer(text):
        if any(start <= span.start() < end for start, end in fenced):
            continue
        code = " ".join(span.group("code").split())
        yield CodeSnippet(text.count("\n", 0, span.start()) + 1, code)


def is_stack_metric_name(name: str) -> bool:
    """Whether a name read by a code snippet is meant as one of the stack's metrics
    (``memory_limiter`` or ``exporter`` in backticks parse as PromQL too)."""
    return (
        bool(_RECORDING_RULE_NAME.match(name))
        or name in SYNTHETIC_METRICS
        or name.startswith(METRIC_NAMESPACES)
    )


def runbook_metric_reads(text: str) -> list[tuple[int, str, str | None]]:
    """(line, metric name, job selected) of every stack metric a runbook snippet that
    parses as PromQL reads."""
    found: list[tuple[int, str, str | None]] = []
    for snippet in code_snippets(text):
        try:
            ast = promql_parser.parse(snippet.code)
        except (ValueError, TypeError):
            continue  # a shell command, a path, a config key: not PromQL
        for name, job in sorted(metric_reads(ast).names, key=str):
            if is_stack_metric_name(name):
                found.append((snippet.line, name, job))
    return found


def check_runbook_metrics(repo: Path, producers: Producers, report: Report) -> None:
    """Every metric a runbook query reads is produced, as for dashboards and rules."""
    try:
        text = (repo / RUNBOOK).read_text(encoding="utf-8")
    except OSError:
        return  # check_runbook reports it
    for line, name, job in runbook_metric_reads(text):
        # Prose may name a histogram by its family (`..._duration_seconds`); a counter
        # without its _total is the very mistake to catch, so only _bucket counts.
        if not producers.produces(name, job) and not producers.produces(f"{name}_bucket", job):
            report.add(
                RUNBOOK,
                f"line {line}: metric {name!r} is produced by nothing{producers.suggestion(name)}",
            )
