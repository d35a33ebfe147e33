"""scripts/check-stack: the repository passes, and each kind of drift is caught.

The drift tests break one thing in a temporary copy of the repository and run the
real entry point on it (``scripts/check-stack --repo COPY``): it must exit 1 and name
the file and the problem. What they break is found in the files themselves (the first
dashboard target reading an agent metric, the first alert, the first scrape target...),
so the tests follow the repository as it changes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from neuros.metrics import build_metrics
from stacktools import check_stack as cs
from stacktools import paths
from stacktools.compose import as_written
from stacktools.paths import REPO_ROOT
from tests.support.textfiles import storage_script_sample_names
from tests.support.tooling import tool

CHECK_STACK = REPO_ROOT / paths.CHECK_STACK
COPIED = (
    "grafana",
    "prometheus",
    "otel",
    "tempo",
    "docs",
    "docker-compose.yml",
    "scripts",
    "neuros",
)
BAD_UID = "no-such-datasource"


def run_check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_STACK), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


# --- The repository ----------------------------------------------------------------------


def test_repository_passes() -> None:
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(_lines(result)) == 1, result.stdout
    assert _lines(result)[0].startswith("check-stack: 0 finding(s); checked")


def test_json_report_of_the_repository() -> None:
    result = run_check("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["findings"] == []
    assert report["live"] is None
    assert report["counts"]["dashboard_queries"] > 0


def test_wrapper_is_shellcheck_clean() -> None:
    result = subprocess.run(
        [tool("shellcheck"), str(CHECK_STACK)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


# --- Drift in a copy of the repository ------------------------------------------------------


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in COPIED:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    return copy


def _dashboards(repo: Path) -> list[cs.Dashboard]:
    dashboards = cs.load_dashboards(repo, cs.Report())
    assert dashboards, "no dashboards to break"
    return dashboards


def _write_json(path: Path, model: Any) -> None:
    path.write_text(json.dumps(model, indent=2), encoding="utf-8")


def _agent_metric_token(text: str) -> str | None:
    """The first agent metric name in ``text`` as a whole token."""
    names = cs.agent_metric_names(REPO_ROOT)
    tokens: list[str] = re.findall(r"(?<![\w:])[a-zA-Z_]\w*(?![\w:])", text)
    return next((token for token in tokens if token in names), None)


def _misspell(name: str) -> str:
    return name[:-1]


def break_dashboard_uid(repo: Path) -> tuple[str, str]:
    uids = {d.uid for d in cs.load_datasources(repo, cs.Report())}
    for dashboard in _dashboards(repo):
        for node in cs.walk_json(dashboard.model):
            ref = node.get("datasource")
            if isinstance(ref, dict) and ref.get("uid") in uids:
                ref["uid"] = BAD_UID
                _write_json(repo / dashboard.file, dashboard.model)
                return dashboard.file, f"uses datasource {BAD_UID!r}, which is not provisioned"
    raise AssertionError("no dashboard uses a provisioned datasource uid")


def break_datasource_link(repo: Path) -> tuple[str, str]:
    for path in sorted((repo / paths.DATASOURCES_DIR).glob("*.yml")):
        document = yaml.safe_load(path.read_text())
        for datasource in document.get("datasources") or []:
            for node in cs.walk_json(datasource.get("jsonData") or {}):
                for key in node:
                    if key.endswith("Uid"):
                        node[key] = BAD_UID
                        path.write_text(yaml.safe_dump(document))
                        rel = str(path.relative_to(repo))
                        return rel, f"{key} {BAD_UID!r} is not a provisioned datasource uid"
    raise AssertionError("no provisioned datasource links to another by uid")


def break_dashboard_metric(repo: Path) -> tuple[str, str]:
    for dashboard in _dashboards(repo):
        for panel in cs.iter_panels(dashboard.model.get("panels") or []):
            for target in panel.get("targets") or []:
                name = _agent_metric_token(target.get("expr", ""))
                if name:
                    target["expr"] = re.sub(
                        rf"(?<![\w:]){name}(?![\w:])", _misspell(name), target["expr"]
                    )
                    _write_json(repo / dashboard.file, dashboard.model)
                    return dashboard.file, f"metric {_misspell(name)!r} is not exposed"
    raise AssertionError("no dashboard target reads an agent metric")


def break_rule_metric(repo: Path) -> tuple[str, str]:
    for path in sorted((repo / paths.RULES_DIR).glob("*.yml")):
        lines = path.read_text().splitlines(keepends=True)
        for number, line in enumerate(lines):
            name = _agent_metric_token(line) if line.lstrip().startswith("expr:") else None
            if name:
                lines[number] = re.sub(rf"(?<![\w:]){name}(?![\w:])", _misspell(name), line)
                path.write_text("".join(lines))
                return str(path.relative_to(repo)), f"metric {_misspell(name)!r}"
    raise AssertionError("no one-line rule expression reads an agent metric")


def break_runbook(repo: Path) -> tuple[str, str]:
    alert = next(r for r in cs.load_rules(repo, cs.Report()) if r.kind == "alert")
    runbook = repo / paths.RUNBOOK
    text = runbook.read_text()
    assert f"\n## {alert.name}\n" in text
    runbook.write_text(text.replace(f"\n## {alert.name}\n", "\n## Something else\n"))
    return alert.file, f"alert {alert.name!r} has no '## {alert.name}' section"


def break_runbook_metric(repo: Path) -> tuple[str, str]:
    """A runbook query reading a metric no one produces (its first agent metric)."""
    runbook = repo / paths.RUNBOOK
    text = runbook.read_text()
    reads = cs.runbook_metric_reads(text)
    line, name, _ = next(read for read in reads if read[1].startswith("neuros_"))
    lines = text.splitlines(keepends=True)
    lines[line - 1] = re.sub(rf"(?<![\w:]){name}(?![\w:])", f"{name}_gone", lines[line - 1])
    runbook.write_text("".join(lines))
    return str(paths.RUNBOOK), f"line {line}: metric {name + '_gone'!r} is produced by nothing"


def break_runbook_collector_metric(repo: Path) -> tuple[str, str]:
    """The runbook names a collector metric by its fallback name (no unit suffix), as it
    did with otelcol_process_memory_rss."""
    runbook = repo / paths.RUNBOOK
    text = runbook.read_text()
    assert "`otelcol_process_memory_rss_bytes`" in text
    runbook.write_text(
        text.replace("`otelcol_process_memory_rss_bytes`", "`otelcol_process_memory_rss`")
    )
    return str(paths.RUNBOOK), (
        "metric 'otelcol_process_memory_rss' is produced by nothing"
        ' (did you mean "otelcol_process_memory_rss_bytes"?)'
    )


def break_collector_readers(repo: Path) -> tuple[str, str]:
    """Without the readers block the collector's metric names lose their suffixes."""
    path = repo / paths.OTEL_CONFIG
    document = yaml.safe_load(path.read_text())
    del document["service"]["telemetry"]["metrics"]["readers"]
    path.write_text(yaml.safe_dump(document))
    return str(paths.OTEL_CONFIG), "has no readers/pull/prometheus exporter"


def _first_scrape_target(repo: Path) -> tuple[str, str, int]:
    config = yaml.safe_load((repo / paths.PROMETHEUS_CONFIG).read_text())
    for job in config["scrape_configs"]:
        for static in job.get("static_configs") or []:
            for target in static.get("targets") or []:
                host, port = cs.parse_endpoint(target) or ("localhost", 0)
                if host not in cs.LOCAL_HOSTS:
                    return job["job_name"], host, port
    raise AssertionError("no scrape target names a compose service")


def break_compose_service(repo: Path) -> tuple[str, str]:
    job, host, port = _first_scrape_target(repo)
    compose = as_written(repo / paths.COMPOSE_FILE)
    compose["services"][f"{host}-renamed"] = compose["services"].pop(host)
    (repo / paths.COMPOSE_FILE).write_text(yaml.safe_dump(compose))
    problem = f"scrape job {job!r} target '{host}:{port}': no compose service {host!r}"
    return str(paths.PROMETHEUS_CONFIG), problem


def break_compose_port(repo: Path) -> tuple[str, str]:
    _, host, port = _first_scrape_target(repo)
    compose = as_written(repo / paths.COMPOSE_FILE)
    service = compose["services"][host]
    service["expose"] = [p for p in service.get("expose", []) if not str(p).startswith(str(port))]
    service["ports"] = [p for p in service.get("ports", []) if not str(p).endswith(f":{port}")]
    (repo / paths.COMPOSE_FILE).write_text(yaml.safe_dump(compose))
    return str(paths.PROMETHEUS_CONFIG), f"compose service {host!r} does not expose port {port}"


def break_collector_listen_port(repo: Path) -> tuple[str, str]:
    path = repo / paths.OTEL_CONFIG
    document = yaml.safe_load(path.read_text())
    telemetry = document["service"]["telemetry"]
    node = next(n for n in cs.walk_json(telemetry) if isinstance(n.get("port"), int))
    port = node["port"]
    node["port"] = port + 1
    path.write_text(yaml.safe_dump(document))
    return str(
        paths.COMPOSE_FILE
    ), f"exposes {port}, but {paths.OTEL_CONFIG} listens on no such port"


def break_tempo_remote_write(repo: Path) -> tuple[str, str]:
    path = repo / paths.TEMPO_CONFIG
    url = cs.tempo_remote_writes(yaml.safe_load(path.read_text()))[0]
    host, _ = cs.parse_endpoint(url) or ("", 0)
    path.write_text(path.read_text().replace(f"//{host}:", f"//{host}-gone:"))
    return str(paths.TEMPO_CONFIG), f"remote_write url {url.replace(host, host + '-gone')!r}"


def break_agent_otlp_endpoint(repo: Path) -> tuple[str, str]:
    path = repo / paths.COMPOSE_FILE
    compose = as_written(path)
    variable = cs.OTLP_ENDPOINT_VARIABLES[0]
    for name, service in compose["services"].items():
        value = (service.get("environment") or {}).get(variable)
        if value:
            host, port = cs.parse_endpoint(value) or ("", 0)
            service["environment"][variable] = value.replace(f":{port}", f":{port + 100}")
            path.write_text(yaml.safe_dump(compose))
            return str(paths.COMPOSE_FILE), (
                f"service {name!r} {variable}"
                f" {service['environment'][variable]!r}: compose service {host!r} does not"
                f" expose port {port + 100}"
            )
    raise AssertionError(f"no compose service sets {variable}")


def _agent_service(compose: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The compose service built from this repository that sets the metrics port."""
    for name, service in compose["services"].items():
        if "build" in service and cs.METRICS_PORT_VARIABLE in (service.get("environment") or {}):
            return name, service
    raise AssertionError(f"no built compose service sets {cs.METRICS_PORT_VARIABLE}")


def break_agent_metrics_port(repo: Path) -> tuple[str, str]:
    """The agent moves /metrics to another (exposed) port; Prometheus still scrapes
    the old one."""
    path = repo / paths.COMPOSE_FILE
    compose = as_written(path)
    name, service = _agent_service(compose)
    port = int(service["environment"][cs.METRICS_PORT_VARIABLE])
    service["environment"][cs.METRICS_PORT_VARIABLE] = str(port + 1)
    service["expose"] = [*service.get("expose", []), str(port + 1)]
    path.write_text(yaml.safe_dump(compose))
    return str(paths.PROMETHEUS_CONFIG), (
        f"target '{name}:{port}': the agent serves /metrics only on"
        f" {cs.METRICS_PORT_VARIABLE}={port + 1}"
    )


def break_agent_metrics_published(repo: Path) -> tuple[str, str]:
    path = repo / paths.COMPOSE_FILE
    compose = as_written(path)
    name, service = _agent_service(compose)
    port = service["environment"][cs.METRICS_PORT_VARIABLE]
    service["ports"] = [*service.get("ports", []), f"127.0.0.1:{port}:{port}"]
    path.write_text(yaml.safe_dump(compose))
    return str(paths.COMPOSE_FILE), (
        f"service {name!r} {cs.METRICS_PORT_VARIABLE}={port} is published"
    )


def break_dashboard_syntax(repo: Path) -> tuple[str, str]:
    dashboard = _dashboards(repo)[0]
    for panel in cs.iter_panels(dashboard.model.get("panels") or []):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                target["expr"] = f"sum(({target['expr']})"
                _write_json(repo / dashboard.file, dashboard.model)
                return dashboard.file, f"panel {panel['title']!r}: PromQL"
    raise AssertionError("no dashboard target to break")


def break_rule_syntax(repo: Path) -> tuple[str, str]:
    rule = cs.load_rules(repo, cs.Report())[0]
    path = repo / rule.file
    document = yaml.safe_load(path.read_text())
    document["groups"][0]["rules"][0]["expr"] = f"{rule.expr} +"
    path.write_text(yaml.safe_dump(document))
    return rule.file, f"{rule.kind} {rule.name!r}: PromQL"


def _sum_population(expr: str) -> str:
    """``expr`` with its deduplicating aggregations of a population gauge made sums."""
    gauges = "|".join(sorted(cs.SHARED_GAUGES))
    summed = re.sub(
        rf"\b(?:max|min|avg)(\s+(?:by|without)\s*\([^)]*\)\s*\(\s*(?:{gauges}))", r"sum\1", expr
    )
    if summed == expr:
        raise AssertionError(f"no deduplicated population gauge in {expr!r}")
    return summed


def break_population_rule(repo: Path) -> tuple[str, str]:
    """A recording rule that sums the replicas' identical population gauge."""
    gauge = sorted(cs.SHARED_GAUGES)[0]
    for rule in cs.load_rules(repo, cs.Report()):
        if gauge in rule.expr:
            path = repo / rule.file
            path.write_text(path.read_text().replace(rule.expr, _sum_population(rule.expr)))
            return rule.file, f"{rule.kind} {rule.name!r}: sum over {gauge} counts"
    raise AssertionError(f"no rule reads {gauge}")


def break_population_panel(repo: Path) -> tuple[str, str]:
    """A dashboard panel that sums the replicas' identical population gauge."""
    gauge = sorted(cs.SHARED_GAUGES)[0]
    for dashboard in _dashboards(repo):
        for panel in cs.iter_panels(dashboard.model.get("panels") or []):
            for target in panel.get("targets") or []:
                if gauge in target.get("expr", ""):
                    target["expr"] = _sum_population(target["expr"])
                    _write_json(repo / dashboard.file, dashboard.model)
                    return dashboard.file, f"sum over {gauge} counts"
    raise AssertionError(f"no dashboard target reads {gauge}")


@pytest.mark.parametrize(
    "mutate",
    [
        break_population_rule,
        break_population_panel,
        break_dashboard_uid,
        break_datasource_link,
        break_dashboard_metric,
        break_rule_metric,
        break_runbook,
        break_runbook_metric,
        break_runbook_collector_metric,
        break_collector_readers,
        break_compose_service,
        break_compose_port,
        break_collector_listen_port,
        break_tempo_remote_write,
        break_agent_otlp_endpoint,
        break_agent_metrics_port,
        break_agent_metrics_published,
        break_dashboard_syntax,
        break_rule_syntax,
    ],
)
def test_drift_is_a_finding_naming_file_and_problem(
    repo_copy: Path, mutate: Callable[[Path], tuple[str, str]]
) -> None:
    file, problem = mutate(repo_copy)
    result = run_check("--repo", str(repo_copy))
    assert result.returncode == 1, result.stdout + result.stderr
    assert any(line.startswith(f"{file}: ") and problem in line for line in _lines(result)), (
        f"no line '{file}: ...{problem}...' in:\n{result.stdout}"
    )


def test_unbroken_copy_passes(repo_copy: Path) -> None:
    result = run_check("--repo", str(repo_copy))
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_promtool_is_a_warning_outside_ci_and_a_finding_in_ci(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-promtool")
    outside = run_check("--promtool", missing, env={"CI": "false"})
    assert outside.returncode == 0, outside.stdout + outside.stderr
    assert cs.PROMTOOL_MISSING in outside.stderr
    in_ci = run_check("--promtool", missing, env={"CI": "true"})
    assert in_ci.returncode == 1
    assert f"{missing}: {cs.PROMTOOL_MISSING} (CI=true)" in _lines(in_ci)


# --- Grafana variables ----------------------------------------------------------------------

WINDOWS = cs.Windows(rate_interval="2m", range="6h")


@pytest.mark.parametrize(
    ("expr", "variables", "want"),
    [
        ('rate(x{route=~"$route"}[$__rate_interval])', {}, 'rate(x{route=~".*"}[2m])'),
        ('rate(x{route!~"${route}"}[$__interval])', {}, 'rate(x{route!~".*"}[2m])'),
        ('increase(x{a=~"[[route]]"}[$__range])', {}, 'increase(x{a=~".*"}[6h])'),
        ('x{job="$job"}', {"job": "neuros"}, 'x{job="neuros"}'),
        ('x{job="${job:raw}"}', {"job": None}, 'x{job=".*"}'),
        ('x{job=~"$job"}', {"job": "neuros"}, 'x{job=~".*"}'),
        ("topk($n, x) / $__range_s", {"n": "5"}, "topk(5, x) / 21600"),
        ("max_over_time(x[$window:$__interval])", {}, "max_over_time(x[2m:2m])"),
        ('x{route=~"/v1/.*$"}', {}, 'x{route=~"/v1/.*$"}'),
        ("x # $route in a comment", {}, "x # $route in a comment"),
    ],
)
def test_variable_substitution(expr: str, variables: dict[str, str | None], want: str) -> None:
    got = cs.substitute_variables(expr, variables, WINDOWS)
    assert got == want
    promql_parser.parse(got)


def test_dashboard_variables_take_single_current_values_only() -> None:
    model = {
        "templating": {
            "list": [
                {"name": "job", "type": "custom", "current": {"value": "neuros"}},
                {"name": "all", "type": "query", "current": {"value": "$__all"}},
                {"name": "many", "type": "custom", "current": {"value": ["a", "b"]}},
                {"name": "one", "type": "custom", "current": {"value": ["a"]}},
                {"name": "const", "type": "constant", "query": "c"},
                {"name": "unset", "type": "query"},
            ]
        }
    }
    assert cs.dashboard_variables(model) == {
        "job": "neuros",
        "all": None,
        "many": None,
        "one": "a",
        "const": "c",
        "unset": None,
    }


def test_query_variables_yield_their_promql() -> None:
    assert cs.variable_promql('label_values(up{job="x"}, instance)') == 'up{job="x"}'
    assert cs.variable_promql({"query": "query_result(sum(up))"}) == "sum(up)"
    assert cs.variable_promql("label_names()") is None


# --- Metric names ---------------------------------------------------------------------------


def test_metric_reads_walk_the_ast() -> None:
    expr = promql_parser.parse(
        'sum(rate(a_total{job="neuros",x=~"b_total"}[5m])) / job:a:rate5m'
        ' + max_over_time(c[1h:1m] offset 5m) + {__name__="d"} + {__name__=~"e_.*"}'
        ' + label_replace(f, "dst", "$1", "src", "(g_total)")'
    )
    reads = cs.metric_reads(expr)
    assert reads.names == {
        ("a_total", "neuros"),
        ("job:a:rate5m", None),
        ("c", None),
        ("d", None),
        ("f", None),
    }
    assert reads.patterns == {"e_.*"}


@pytest.mark.parametrize(
    ("expr", "flagged"),
    [
        ('sum by (job) (neuros_users_by_readiness{job="neuros"})', True),
        ("sum without (instance) (neuros_users_by_readiness)", True),
        ("count(neuros_users_by_readiness)", True),
        ('sum({__name__="neuros_users_by_readiness"})', True),
        ("sum(max_over_time(neuros_users_by_readiness[5m]))", True),
        ("sum by (job) (max without (instance) (neuros_users_by_readiness))", False),
        ("max by (readiness) (neuros_users_by_readiness)", False),
        ("sum by (instance, readiness) (neuros_users_by_readiness)", False),
        ("sum without (readiness) (neuros_users_by_readiness)", False),
        ("neuros_users_by_readiness / 2", False),
        ("sum(rate(neuros_http_requests_total[5m]))", False),
    ],
)
def test_replica_sums_flag_population_gauges_added_up_across_instances(
    expr: str, flagged: bool
) -> None:
    assert bool(cs.replica_sums(promql_parser.parse(expr))) is flagged


def test_producers_accept_exact_names_prefixes_and_regexes() -> None:
    producers = cs.Producers({"neuros_x_total": "agent"}, agent_jobs=frozenset({"neuros"}))
    assert producers.produces("neuros_x_total", "neuros")
    assert producers.produces("tempo_ingester_blocks_flushed_total")
    # The collector's names depend on its config: exact names only, never a prefix.
    assert not producers.produces("otelcol_exporter_sent_spans_total")
    assert not producers.produces("neuros_y_total")
    # An agent job gets no prefix leeway: its registry lists every name.
    assert producers.produces("process_resident_memory_byte")
    assert not producers.produces("process_resident_memory_byte", "neuros")
    assert producers.matches("neuros_.*_total")
    assert producers.matches("node_filesystem_.*")
    assert not producers.matches("neuros_nope_.*")
    assert producers.suggestion("neuros_x_totl") == ' (did you mean "neuros_x_total"?)'


def _exercise_every_metric(registry: CollectorRegistry) -> None:
    """One child per labelled metric, so every sample name is in the exposition."""
    metrics = build_metrics(registry)
    for metric in (getattr(metrics, f.name) for f in dataclasses.fields(metrics)):
        if not isinstance(metric, Counter | Gauge | Histogram):
            continue
        labels = getattr(metric, "_labelnames", ())
        child = metric.labels(*["x"] * len(labels)) if labels else metric
        if isinstance(child, Histogram):
            child.observe(1.0)
        else:
            child.inc()


def test_agent_metric_names_are_exactly_what_the_agent_exposes() -> None:
    registry = CollectorRegistry()
    _exercise_every_metric(registry)
    exposition = generate_latest(registry).decode()
    exposed = {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert "neuros_http_requests_total" in exposed  # the labelled ones were exercised
    assert cs.agent_metric_names(REPO_ROOT) == exposed


# The "Metric readers" case of the collector's v0.144.0 metric-stability test
# (internal/e2e/metric_stability_test.go): what a collector with a readers block serves.
E2E_READERS_NAMES = {
    "otelcol_process_uptime_seconds_total",
    "otelcol_process_cpu_seconds_total",
    "otelcol_process_memory_rss_bytes",
    "otelcol_process_runtime_heap_alloc_bytes",
    "otelcol_process_runtime_total_alloc_bytes_total",
    "otelcol_process_runtime_total_sys_memory_bytes",
    "otelcol_processor_batch_batch_send_size_bucket",
    "otelcol_processor_batch_batch_send_size_bytes_bucket",
    "otelcol_processor_batch_metadata_cardinality",
    "otelcol_processor_batch_timeout_trigger_send_total",
    "otelcol_exporter_sent_spans_total",
    "otelcol_exporter_send_failed_spans_total",
    "otelcol_exporter_sent_metric_points_total",
    "otelcol_exporter_send_failed_log_records_total",
    "otelcol_receiver_accepted_spans_total",
    "otelcol_receiver_refused_spans_total",
    "otelcol_receiver_accepted_log_records_total",
    "otelcol_receiver_refused_metric_points_total",
}
# Its "No metric readers (default)" case: the names without the block.
E2E_FALLBACK_NAMES = {
    "otelcol_process_uptime",
    "otelcol_process_memory_rss",
    "otelcol_process_runtime_total_alloc_bytes",
    "otelcol_processor_batch_timeout_trigger_send",
    "otelcol_exporter_sent_spans",
    "otelcol_exporter_send_failed_spans",
    "otelcol_receiver_accepted_spans",
    "otelcol_receiver_refused_spans",
}


def test_collector_names_are_those_of_the_pinned_release_with_readers() -> None:
    names = cs.collector_metric_names()
    assert names >= E2E_READERS_NAMES
    assert not names & E2E_FALLBACK_NAMES
    # What the collector alerts and the runbook read.
    assert {
        "otelcol_exporter_enqueue_failed_spans_total",
        "otelcol_exporter_queue_size",
        "otelcol_exporter_queue_capacity",
    } <= names
    env = (REPO_ROOT / paths.ENV_EXAMPLE).read_text()
    assert f"OTELCOL_IMAGE=otel/opentelemetry-collector-contrib:{cs.COLLECTOR_VERSION}\n" in env, (
        "the collector pin moved: re-read stacktools/check_stack/collector.py's table"
    )


@pytest.mark.parametrize(
    ("name", "unit", "instrument", "want"),
    [
        ("process_uptime", "s", "counter", {"otelcol_process_uptime_seconds_total"}),
        ("process_memory_rss", "By", "gauge", {"otelcol_process_memory_rss_bytes"}),
        ("process_runtime_total_alloc_bytes", "By", "counter",
         {"otelcol_process_runtime_total_alloc_bytes_total"}),
        ("exporter_queue_size", "{batches}", "gauge", {"otelcol_exporter_queue_size"}),
        ("processor_internal_duration", "s", "histogram",
         {f"otelcol_processor_internal_duration_seconds_{s}" for s in ("bucket", "count", "sum")}),
    ],
)  # fmt: skip
def test_collector_prometheus_names(name: str, unit: str, instrument: str, want: set[str]) -> None:
    assert cs.prometheus_sample_names(name, unit, instrument) == want


def test_collector_readers_block_is_required() -> None:
    reader = {"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": 8888}}}}
    assert cs.has_prometheus_reader({"service": {"telemetry": {"metrics": {"readers": [reader]}}}})
    assert not cs.has_prometheus_reader(
        {"service": {"telemetry": {"metrics": {"level": "normal"}}}}
    )
    assert not cs.has_prometheus_reader({})


def test_backup_tool_names_are_what_it_writes() -> None:
    from neuros.backup import textfile as backup_textfile

    names = cs.backup_tool_metric_names(REPO_ROOT)
    assert backup_textfile.LAST_SUCCESS in names
    assert names == set(backup_textfile.HELP)


RUNBOOK_SAMPLE = """\
## Section

Query `sum by (route) (rate(neuros_http_requests_total{job="neuros"}[5m]))` and
`job:neuros_kpi_hrv_rmssd_seconds:median1h <
0.8 * job:neuros_kpi_hrv_rmssd_seconds:median7d`; not `docker compose ps`,
`memory_limiter`, `otel-collector:8888` or `prometheus/slo.yml`.

```
otelcol_exporter_queue_size / otelcol_exporter_queue_capacity
```
"""


def test_runbook_reads_come_from_promql_snippets_only() -> None:
    reads = cs.runbook_metric_reads(RUNBOOK_SAMPLE)
    assert len(reads) == 5
    assert set(reads) == {
        (3, "neuros_http_requests_total", "neuros"),
        (4, "job:neuros_kpi_hrv_rmssd_seconds:median1h", None),
        (4, "job:neuros_kpi_hrv_rmssd_seconds:median7d", None),
        (9, "otelcol_exporter_queue_capacity", None),
        (9, "otelcol_exporter_queue_size", None),
    }


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("neuros_readings_accepted_total", True),
        ("otelcol_process_memory_rss", True),
        ("slo:burn_rate:ratio_rate1h", True),
        ("up", True),
        ("memory_limiter", False),
        ("exporter", False),
        ("collector:8888", False),
    ],
)
def test_stack_metric_names_in_prose(name: str, metric: bool) -> None:
    assert cs.is_stack_metric_name(name) is metric


def test_storage_script_names_match_a_successful_run(tmp_path: Path) -> None:
    # check_stack runs the script against a failing docker; test_rule_metrics against a
    # succeeding stub. Both runs must write the same series.
    assert cs.storage_script_metric_names(REPO_ROOT) == storage_script_sample_names(tmp_path)


# --- Runbook, endpoints, compose ------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("NeurosAgentDown", "neurosagentdown"),
        ("Where things are", "where-things-are"),
        ("SLO: burn-rate (fast)", "slo-burn-rate-fast"),
    ],
)
def test_github_anchor(heading: str, anchor: str) -> None:
    assert cs.github_anchor(heading) == anchor


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ("tempo:4317", ("tempo", 4317)),
        ("http://prometheus:9090/api/v1/write", ("prometheus", 9090)),
        ("https://grafana", ("grafana", 443)),
        ("dns:///otel-collector:4317", ("otel-collector", 4317)),
        ("[::1]:9090", ("[::1]", 9090)),
        ("no-port", None),
    ],
)
def test_parse_endpoint(value: str, want: tuple[str, int] | None) -> None:
    assert cs.parse_endpoint(value) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("${BIND:-127.0.0.1}:${PORT:-8000}:8000", "127.0.0.1:8000:8000"),
        ("${IMAGE:?set IMAGE}", ""),
        ("${A-x}${B:+y}$C", "x"),
        ("a$$b", "a$b"),
    ],
)
def test_compose_interpolation_uses_the_files_defaults(text: str, want: str) -> None:
    assert cs.interpolate(text) == want


def test_compose_ports_come_from_expose_and_port_targets(tmp_path: Path) -> None:
    compose = {
        "services": {
            "a": {"expose": ["8000", 9000, "7000-7001/tcp"], "build": {"context": "."}},
            "b": {
                "ports": ["${BIND:-127.0.0.1}:${P:-3001}:3000", {"target": 4000, "published": 1}],
                "networks": {"default": {"aliases": ["b-alias"]}},
            },
            "c": {"network_mode": "host", "expose": ["9100"]},
        }
    }
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(compose))
    report = cs.Report()
    hosts = cs.load_compose(tmp_path, report)
    assert report.findings == []
    assert hosts["a"].ports == {8000, 9000, 7000, 7001}
    assert hosts["a"].built
    assert hosts["b"].ports == {3000, 4000}
    assert hosts["b-alias"] is hosts["b"]
    for value in ("a:8000", "http://b-alias:3000", "localhost:1"):
        cs.check_endpoint(cs.Endpoint("f", "x", value), hosts, report)
    assert report.findings == []
    for value in ("a:8001", "zz:1", "c:9100"):
        cs.check_endpoint(cs.Endpoint("f", "x", value), hosts, report)
    messages = [f.message for f in report.findings]
    assert len(messages) == 3, messages
    assert messages[0].startswith("x 'a:8001': compose service 'a' does not expose port 8001")
    assert messages[1].startswith("x 'zz:1': no compose service 'zz'")
    assert messages[2].startswith("x 'c:9100': service 'c' uses the host network")


def test_listeners_of_the_service_mounting_a_config(tmp_path: Path) -> None:
    compose = {
        "services": {
            "otel": {"expose": ["4317", "8888"], "volumes": ["./otel:/etc/otel:ro"]},
            "host": {"expose": ["9100"], "volumes": ["/:/host:ro"]},
        }
    }
    (tmp_path / "docker-compose.yml").write_text(yaml.safe_dump(compose))
    config = {
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "localhost:4317"}}}},
        "service": {
            "telemetry": {
                "metrics": {
                    "readers": [
                        {"pull": {"exporter": {"prometheus": {"host": "0.0.0.0", "port": 8889}}}}
                    ]
                }
            }
        },
    }
    listeners = cs.otel_listeners(config)
    assert listeners == [("localhost", 4317), ("0.0.0.0", 8889)]
    report = cs.Report()
    hosts = cs.load_compose(tmp_path, report)
    cs.check_listeners(paths.OTEL_CONFIG, listeners, tmp_path, hosts, report)
    assert [str(f) for f in report.findings] == [
        "otel/config.yml: listens on localhost:4317: unreachable from other containers",
        "docker-compose.yml: service 'otel' exposes 8888, but otel/config.yml listens on no"
        " such port (listens on 4317, 8889)",
    ]
    unmounted = cs.Report()
    cs.check_listeners(paths.TEMPO_CONFIG, [], tmp_path, hosts, unmounted)
    assert [f.message for f in unmounted.findings] == [
        "no compose service mounts it (docker-compose.yml)"
    ]


def test_tempo_listeners() -> None:
    config = {
        "server": {"http_listen_port": 3200},
        "distributor": {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "0.0.0.0:4317"}}}}
        },
    }
    assert cs.tempo_listeners(config) == [("", 3200), ("0.0.0.0", 4317)]


# --- Live queries and expectations ----------------------------------------------------------


def _query(panel: str, expr: str) -> cs.Query:
    return cs.Query("d.json", f"panel {panel!r}", expr, expr, "panel", "Board", panel)


def test_live_queries_report_empty_failed_and_stale(tmp_path: Path) -> None:
    queries = [_query("full", "a"), _query("empty", "b"), _query("k6", "c"), _query("bad", "d(")]
    answers: dict[str, int | Exception] = {"a": 2, "b": 0, "c": 0, "d(": RuntimeError("parse")}

    def query(promql: str) -> int:
        answer = answers[promql]
        if isinstance(answer, Exception):
            raise answer
        return answer

    expect = [cs.Expectation("no load test", panel="k6")]
    report = cs.Report()
    results = cs.run_live(queries, query, expect, report)
    assert [r.series for r in results] == [2, 0, 0, None]
    assert [str(f) for f in report.findings] == [
        "d.json: panel 'empty': no data: b",
        "d.json: panel 'bad': query failed: parse: d(",
    ]
    assert report.notes == ["d.json: panel 'k6': expected empty: no load test"]

    answers["c"] = 1
    strict = cs.Report()
    cs.run_live(queries[2:3], query, expect, strict, strict_expectations=True)
    assert [f.message for f in strict.findings] == [
        "stale expectation: panel 'k6' returns data (no load test): c"
    ]
    relaxed = cs.Report()
    cs.run_live(queries[2:3], query, expect, relaxed)
    assert relaxed.findings == []


def test_expectations_file_is_validated(tmp_path: Path) -> None:
    path = tmp_path / paths.EXPECTED_EMPTY_FILE
    path.parent.mkdir(parents=True)
    entries = [
        {"panel": "k6", "reason": "no load test"},
        {"panel": "gone", "reason": "renamed since"},
        {"panel": "no reason"},
        {"panels": "typo", "reason": "r"},
    ]
    path.write_text(yaml.safe_dump({"expected_empty": entries}))
    report = cs.Report()
    expectations = cs.load_expectations(tmp_path, report)
    assert [e.panel for e in expectations] == ["k6", "gone"]
    cs.check_expectations_match(expectations, [_query("k6", "c")], report)
    messages = [f.message for f in report.findings]
    assert messages[0].startswith("entry 3 needs a reason")
    assert messages[1].startswith("entry 4 needs a reason")
    assert "unknown keys: panels" in messages[1]
    assert messages[2] == "entry {'panel': 'gone'} matches no dashboard query"


# --- promtool ------------------------------------------------------------------------------


def test_promtool_errors_name_the_failing_query() -> None:
    queries = [_query("ok", "sum(up)"), _query("bad", "sum(rate(up[5m])"), _query("ok2", "up")]
    errors = cs.promtool_errors(tool("promtool"), queries)
    assert list(errors) == [1]
    assert "unclosed left parenthesis" in errors[1]


def test_unattributed_promtool_failure_is_retried_one_by_one(tmp_path: Path) -> None:
    # A promtool whose output names no rule: the checker must still find the culprit.
    fake = tmp_path / "promtool"
    fake.write_text(
        '#!/bin/sh\nif grep -q BROKEN "$4"; then echo "FAILED: somewhere"; exit 1; fi\n'
    )
    fake.chmod(0o755)
    queries = [_query("ok", "up"), _query("bad", "BROKEN"), _query("ok2", "sum(up)")]
    assert list(cs.promtool_errors(str(fake), queries)) == [1]
