"""Which metric names exist: the agent's registry, recording rules, the storage
script's textfile, Prometheus itself, the collector's own telemetry and declared
exporters; reads of any other name are findings."""

from __future__ import annotations

import difflib
import importlib
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import promql_parser
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ..paths import STORAGE_SCRIPT
from .collector import collector_metric_names
from .promql import Query, metric_reads
from .report import Report
from .rules import Rule

# Metrics no file in this repository defines, read by name prefix. One line each: who
# produces them. A neuros_* name is never accepted by prefix: the agent's registry, the
# recording rules and the storage script are the only sources for those. Nor is an
# otelcol_* name: collector.py lists the collector's, whose spelling depends on
# otel/config.yml.
EXPORTER_PREFIXES: tuple[str, ...] = (
    "scrape_",  # synthetic: Prometheus adds scrape_* series to every scrape
    "prometheus_",  # Prometheus' own /metrics (job "prometheus")
    "alertmanager_",  # Alertmanager's /metrics
    "tempo_",  # Tempo's /metrics on :3200
    "traces_spanmetrics_",  # Tempo metrics-generator, span-metrics processor (remote write)
    "traces_service_graph_",  # Tempo metrics-generator, service-graphs processor
    "node_",  # node-exporter, incl. the textfile collector's node_textfile_*
    "k6_",  # k6 load tests (experimental-prometheus-rw output)
    "go_",  # Go runtime of every Go component above
    "process_",  # process collectors: the agent's and every Go component's
)
# Series that carry an agent job's label without coming from the agent's registry.
AGENT_JOB_PREFIXES = (
    "scrape_",  # Prometheus' per-target scrape series
    "traces_spanmetrics_",  # Tempo's span metrics name the traced service's job
)
PRODUCED_BY_NOTHING = (
    "is produced by nothing: not the agent, a recording rule, the storage script, the"
    " backup tool, the collector or a declared exporter"
)
# Synthetic series Prometheus itself creates: scrape health and alert state.
SYNTHETIC_METRICS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})


def family_sample_names(name: str, kind: str) -> set[str]:
    """The sample names a family of this type exposes (no ``_created``: disabled)."""
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_count", "_sum"),
        "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
        "summary": ("", "_count", "_sum"),
        "info": ("_info",),
    }.get(kind, ("",))
    return {name + suffix for suffix in suffixes}


def agent_metric_names(repo: Path) -> set[str]:
    """Sample names the agent exposes, from its own registry built fresh."""
    # Prefer the checked repository's package over any other installed copy.
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    module = importlib.import_module("neuros.metrics")
    registry = CollectorRegistry()
    module.build_metrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names |= family_sample_names(family.name, family.type)
        names |= {sample.name for sample in family.samples}
    return names


def backup_tool_metric_names(repo: Path) -> set[str]:
    """Sample names the backup tool (``python -m neuros.backup``) writes to its
    textfile, from the checked repository's own renderer."""
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    module = importlib.import_module("neuros.backup.textfile")
    text = module.render(module.Run(finished_at=0.0, success=True, duration_seconds=0.0), {})
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def storage_script_metric_names(repo: Path) -> set[str]:
    """Sample names scripts/storage-management.sh writes to its textfile.

    Runs the real script's ``clean`` with a ``docker`` that always fails first on PATH
    and empty temporary folders, so it can never prune anything.
    """
    script = repo / STORAGE_SCRIPT
    if not script.is_file():
        return set()
    with tempfile.TemporaryDirectory(prefix="check-stack-storage-") as tmp:
        root = Path(tmp)
        (root / "bin").mkdir()
        (root / "logs").mkdir()
        docker = root / "bin" / "docker"
        docker.write_text("#!/bin/sh\necho 'check-stack: no docker here' >&2\nexit 1\n")
        docker.chmod(0o755)
        metrics_file = root / "storage.prom"
        env = {**os.environ, "PATH": f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run(
            [
                "bash",
                str(script),
                "clean",
                "--metrics-file",
                str(metrics_file),
                "--log-dir",
                str(root / "logs"),
                "--lock-file",
                str(root / "lock"),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if not metrics_file.is_file():
            raise RuntimeError(f"{STORAGE_SCRIPT} clean --metrics-file wrote no file")
        text = metrics_file.read_text(encoding="utf-8")
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@dataclass(frozen=True)
class Producers:
    """Where each metric comes from: exact names, then declared exporter prefixes.

    A selector scoped to an agent job (``job="neuros"``) gets only the leeway of
    :data:`AGENT_JOB_PREFIXES`: the agent's registry lists every name it exposes, so a
    misspelt ``process_resident_memory_byte{job="neuros"}`` is caught.
    """

    exact: Mapping[str, str]
    agent_jobs: frozenset[str] = frozenset()
    prefixes: Sequence[str] = EXPORTER_PREFIXES

    def produces(self, name: str, job: str | None = None) -> bool:
        prefixes = AGENT_JOB_PREFIXES if job in self.agent_jobs else tuple(self.prefixes)
        return name in self.exact or name.startswith(prefixes)

    def matches(self, pattern: str) -> bool:
        try:
            regex = re.compile(pattern)
        except re.error:
            return False
        if any(regex.fullmatch(name) for name in self.exact):
            return True
        literal = re.match(r"[A-Za-z0-9_:]*", pattern)
        return literal is not None and literal.group(0).startswith(tuple(self.prefixes))

    def suggestion(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self.exact), n=1, cutoff=0.8)
        return f' (did you mean "{close[0]}"?)' if close else ""


def collect_producers(
    repo: Path, rules: Sequence[Rule], agent_jobs: frozenset[str], report: Report
) -> Producers:
    exact: dict[str, str] = dict.fromkeys(SYNTHETIC_METRICS, "Prometheus")
    try:
        exact.update(dict.fromkeys(storage_script_metric_names(repo), "storage script"))
    except (OSError, RuntimeError, subprocess.SubprocessError) as error:
        report.add(STORAGE_SCRIPT, f"cannot collect its metric names: {error}")
    try:
        exact.update(dict.fromkeys(agent_metric_names(repo), "agent"))
    except Exception as error:  # any import or build failure is a finding, not a crash
        report.add("neuros/metrics.py", f"cannot build the agent's metrics: {error!r}")
    try:
        exact.update(dict.fromkeys(backup_tool_metric_names(repo), "backup tool"))
    except Exception as error:  # as above
        report.add("neuros/backup/textfile.py", f"cannot render its metrics: {error!r}")
    exact.update(dict.fromkeys(collector_metric_names(), "collector"))
    exact.update({r.name: "recording rule" for r in rules if r.kind == "record"})
    return Producers(exact, agent_jobs)


def check_metric_names(
    queries: Sequence[Query],
    asts: Mapping[int, promql_parser.Expr],
    producers: Producers,
    report: Report,
) -> None:
    for index, ast in asts.items():
        query = queries[index]
        reads = metric_reads(ast)
        for name, job in sorted(reads.names, key=str):
            if producers.produces(name, job):
                continue
            if job in producers.agent_jobs:
                message = f"is not exposed by the agent (job {job!r}) nor a recording rule"
            else:
                message = PRODUCED_BY_NOTHING
            report.add(
                query.file,
                f"{query.where}: metric {name!r} {message}{producers.suggestion(name)}",
            )
        for pattern in sorted(reads.patterns):
            if not producers.matches(pattern):
                report.add(
                    query.file,
                    f"{query.where}: no produced metric matches __name__=~{pattern!r}",
                )
