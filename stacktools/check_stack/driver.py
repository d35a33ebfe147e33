"""Every check, in order, over one repository."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..paths import OTEL_CONFIG, PROMETHEUS_CONFIG, REPO_ROOT, TEMPO_CONFIG
from .collector import check_collector_readers
from .compose import (
    agent_jobs,
    check_agent_metrics_port,
    check_endpoint,
    check_listeners,
    load_compose,
    otel_listeners,
    stack_endpoints,
    tempo_listeners,
    tempo_remote_writes,
)
from .files import load_required
from .grafana import (
    check_datasource_refs,
    check_expectations_match,
    dashboard_queries,
    datasource_queries,
    load_dashboards,
    load_datasources,
    load_expectations,
)
from .live import prometheus_query_function, run_live
from .producers import check_metric_names, collect_producers
from .promql import PROMTOOL_MISSING, Windows, find_promtool, in_ci, parse_queries
from .replicas import check_replica_sums
from .report import Report
from .rules import load_rules, rule_queries
from .runbook import check_runbook, check_runbook_metrics


@dataclass(frozen=True)
class Options:
    repo: Path = REPO_ROOT
    prometheus: str | None = None
    promtool: str | None = None
    windows: Windows = field(default_factory=Windows)
    strict_expectations: bool = False


def check(options: Options) -> Report:
    report = Report()
    repo = options.repo.resolve()
    datasources = load_datasources(repo, report)
    dashboards = load_dashboards(repo, report)
    rules = load_rules(repo, report)
    hosts = load_compose(repo, report)
    prometheus_config = load_required(repo, PROMETHEUS_CONFIG, report)

    check_datasource_refs(dashboards, datasources, report)

    dash_queries = [
        q for d in dashboards for q in dashboard_queries(d, datasources, options.windows)
    ]
    queries = dash_queries + datasource_queries(datasources, options.windows)
    queries += rule_queries(rules)
    promtool = find_promtool(options.promtool)
    if promtool is None:
        if in_ci():
            report.add(options.promtool or ".tools/bin/promtool", f"{PROMTOOL_MISSING} (CI=true)")
        else:
            report.warnings.append(PROMTOOL_MISSING)
    asts = parse_queries(queries, promtool, report)
    producers = collect_producers(repo, rules, agent_jobs(prometheus_config, hosts), report)
    check_metric_names(queries, asts, producers, report)
    check_replica_sums(queries, asts, report)

    check_runbook(repo, rules, report)
    check_runbook_metrics(repo, producers, report)

    otel = load_required(repo, OTEL_CONFIG, report)
    tempo = load_required(repo, TEMPO_CONFIG, report)
    for endpoint in stack_endpoints(prometheus_config, otel, tempo, datasources, hosts):
        check_endpoint(endpoint, hosts, report)
    check_agent_metrics_port(prometheus_config, hosts, report)
    if otel:
        check_listeners(OTEL_CONFIG, otel_listeners(otel), repo, hosts, report)
        check_collector_readers(otel, report)
    if tempo:
        check_listeners(TEMPO_CONFIG, tempo_listeners(tempo), repo, hosts, report)
        if not tempo_remote_writes(tempo):
            report.add(TEMPO_CONFIG, "no metrics_generator remote_write: span metrics go nowhere")

    expectations = load_expectations(repo, report)
    check_expectations_match(expectations, dash_queries, report)
    if options.prometheus:
        query = prometheus_query_function(options.prometheus)
        try:
            query("vector(1)")
        except (OSError, RuntimeError) as error:
            report.add(options.prometheus, f"cannot query Prometheus: {error}")
        else:
            report.live = run_live(
                [q for q in dash_queries if q.kind == "panel"],
                query,
                expectations,
                report,
                strict_expectations=options.strict_expectations,
            )

    report.counts = {
        "dashboards": len(dashboards),
        "dashboard_queries": len(dash_queries),
        "rules": len(rules),
        "datasources": len(datasources),
    }
    report.findings.sort()
    return report
