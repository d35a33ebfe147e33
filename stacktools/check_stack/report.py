"""Findings, and the report ``main`` prints: one line each, a summary, or JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Type-only: promql reports through Report, so a run-time import would be a cycle.
if TYPE_CHECKING:
    from .promql import Query


@dataclass(frozen=True, order=True)
class Finding:
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass
class LiveResult:
    query: Query
    series: int | None
    error: str | None = None
    expected_empty: str | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    live: list[LiveResult] | None = None

    def add(self, file: Path | str, message: str) -> None:
        self.findings.append(Finding(str(file), message))


def live_counts(results: Sequence[LiveResult]) -> tuple[int, int, int]:
    """(queries, with data, empty as expected)."""
    with_data = sum(1 for r in results if r.series)
    expected = sum(1 for r in results if r.series == 0 and r.expected_empty)
    return len(results), with_data, expected


def live_summary(report: Report) -> str:
    if report.live is None:
        return ""
    total, with_data, expected = live_counts(report.live)
    share = with_data / total if total else 0.0
    return (
        f"{with_data}/{total} dashboard queries returned data ({share:.0%}),"
        f" {expected} expected empty"
    )


def summary(report: Report) -> str:
    counts = report.counts
    text = (
        f"check-stack: {len(report.findings)} finding(s); checked {counts['dashboards']}"
        f" dashboards ({counts['dashboard_queries']} queries), {counts['rules']} rules,"
        f" {counts['datasources']} datasources"
    )
    live = live_summary(report)
    return f"{text}; {live}" if live else text


def json_report(report: Report) -> dict[str, Any]:
    live: dict[str, Any] | None = None
    if report.live is not None:
        total, with_data, _ = live_counts(report.live)
        live = {
            "total": total,
            "with_data": with_data,
            "fraction_with_data": with_data / total if total else 0.0,
            "results": [
                {
                    "file": r.query.file,
                    "dashboard": r.query.dashboard,
                    "panel": r.query.panel,
                    "expr": r.query.expr,
                    "query": r.query.promql,
                    "series": r.series,
                    "error": r.error,
                    "expected_empty": r.expected_empty,
                }
                for r in report.live
            ],
        }
    return {
        "ok": not report.findings,
        "summary": summary(report),
        "findings": [asdict(f) for f in report.findings],
        "warnings": report.warnings,
        "notes": report.notes,
        "counts": report.counts,
        "live": live,
    }
