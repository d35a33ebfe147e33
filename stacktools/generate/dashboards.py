"""Grafana dashboards as code: the KPI overview and the SLO & error-budget dashboard.

``python -m stacktools.generate.dashboards`` writes ``grafana/dashboards/*.json`` and
``grafana/expected-empty.yml`` (the panels that may show no data, for
scripts/check-stack); ``--check`` fails when they differ from what this module
generates. Metric names come from
``neuros.metrics``, SLO names, objectives and burn-rate windows from ``stacktools.generate.slo``,
data source uids from ``grafana/provisioning/datasources/datasources.yml``: nothing
that has a source elsewhere is retyped here.
"""

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Self, TypeVar

import yaml
from grafana_foundation_sdk.builders import bargauge, heatmap, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models import heatmap as heatmap_models
from grafana_foundation_sdk.models import prometheus as prometheus_models
from prometheus_client.metrics import MetricWrapperBase

from neuros.metrics import PREFIX, build_metrics
from stacktools import paths
from stacktools.generate import slo
from stacktools.paths import REPO_ROOT

DATASOURCES_PATH = REPO_ROOT / paths.DATASOURCES_FILE
PROVIDERS_PATH = REPO_ROOT / paths.DASHBOARD_PROVIDERS
DASHBOARDS_DIR = REPO_ROOT / paths.DASHBOARDS_DIR
KPI_RULES_PATH = slo.RULES_DIR / "kpi-recording.yml"
# Read by scripts/check-stack: live dashboard queries allowed to return no series.
EXPECTED_EMPTY_FILE = REPO_ROOT / paths.EXPECTED_EMPTY_FILE
EMPTY_UNLESS = " Empty unless "
KPI_UID = "neuros-kpi-overview"
SLO_UID = "neuros-slo"
RATE = "$__rate_interval"
FIVE_XX = '"5.."'
TWO_XX = '"2.."'
# The agent's ProcessCollector and k6's remote-write output (k6 1.1.0 defaults: counters
# get _total, rates _rate, trends one gauge per stat in seconds, p(99) by default).
PROCESS_MEMORY = "process_resident_memory_bytes"
PROCESS_CPU = "process_cpu_seconds_total"
# Its value changes with every new agent process: prometheus/rules/restart-alerts.yml
# alerts on the changes, the dashboards mark them.
PROCESS_START = "process_start_time_seconds"
RESTART_ANNOTATION = "Agent restarts"
K6_REQUESTS = "k6_http_reqs_total"
K6_DURATION_P99 = "k6_http_req_duration_p99"
K6_VUS = "k6_vus"


class DashboardError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Datasources:
    prometheus: dashboard_models.DataSourceRef
    tempo: dashboard_models.DataSourceRef
    alertmanager: dashboard_models.DataSourceRef


def datasource_refs(path: Path = DATASOURCES_PATH) -> Datasources:
    """The provisioned data sources by type; each type must appear exactly once."""
    entries = yaml.safe_load(path.read_text())["datasources"]
    by_type: dict[str, dashboard_models.DataSourceRef] = {}
    for entry in entries:
        kind, uid = str(entry["type"]), str(entry["uid"])
        if kind in by_type:
            raise DashboardError(f"{path}: more than one {kind} data source")
        by_type[kind] = dashboard_models.DataSourceRef(type_val=kind, uid=uid)
    try:
        return Datasources(by_type["prometheus"], by_type["tempo"], by_type["alertmanager"])
    except KeyError as exc:
        raise DashboardError(f"{path}: no {exc.args[0]} data source") from exc


def _family(metric: MetricWrapperBase, kind: str, *labels: str) -> str:
    """A metric's family name, after checking its type and that it has ``labels``."""
    (family,) = metric.describe()
    missing = set(labels) - set(metric._labelnames)
    if family.type != kind or missing:
        raise DashboardError(f"{family.name}: expected a {kind} with labels {labels}")
    return family.name


@dataclass(frozen=True, slots=True)
class Names:
    """Series names of the agent's metrics, read off a throwaway registry."""

    requests: str
    duration: str
    accepted: str
    rejected: str
    hrv: str
    sleep_debt: str
    recovery: str
    readiness: str
    kpi_duration: str
    db_errors: str

    @classmethod
    def from_agent(cls) -> Self:
        m = build_metrics()
        return cls(
            requests=_family(m.http_requests, "counter", "route", "status") + "_total",
            duration=_family(m.http_request_duration, "histogram", "route"),
            accepted=_family(m.readings_accepted, "counter") + "_total",
            rejected=_family(m.readings_rejected, "counter", "reason") + "_total",
            hrv=_family(m.kpi_hrv_rmssd, "histogram"),
            sleep_debt=_family(m.kpi_sleep_debt, "histogram"),
            recovery=_family(m.kpi_recovery_score, "histogram"),
            readiness=_family(m.users_by_readiness, "gauge", "readiness"),
            kpi_duration=_family(m.kpi_computation_duration, "histogram"),
            db_errors=_family(m.db_errors, "counter", "operation") + "_total",
        )


def _recorded(records: Iterable[str], name: str) -> str:
    if name not in set(records):
        raise DashboardError(f"no recording rule named {name}")
    return name


def kpi_records(path: Path = KPI_RULES_PATH) -> list[str]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def slo_records(spec: slo.SloSpec) -> list[str]:
    return [
        rule["record"] for group in slo.recording_rules(spec)["groups"] for rule in group["rules"]
    ]


# --- PromQL helpers -----------------------------------------------------------------


def rate(series: str, selector: str = "") -> str:
    matchers = f"{{{selector}}}" if selector else ""
    return f"rate({series}{matchers}[{RATE}])"


def ratio(numerator: str, denominator: str, *, by: str = "") -> str:
    """``numerator / denominator``: 0 while the numerator has no series yet (no error so
    far), no sample without traffic (a ratio of nothing is undefined, not 0)."""
    fill = "vector(0)" if not by else f"{denominator} * 0"
    return f"({numerator} or {fill})\n/\n({denominator} > 0)"


def quantile(q: float, histogram: str, selector: str, *, by: str = "") -> str:
    """Histogram quantile, with no sample (rather than NaN) while nothing was observed."""
    keys = f"le, {by}" if by else "le"
    guard = f"sum by ({by}) " if by else "sum "
    return (
        f"histogram_quantile({q}, sum by ({keys}) ({rate(histogram + '_bucket', selector)}))\n"
        f"and on ({by})\n{guard}({rate(histogram + '_count', selector)}) > 0"
    )


# --- Panel helpers ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""
    exemplar: bool = False
    instant: bool = False
    fmt: prometheus_models.PromQueryFormat | None = None


class _Panel(Protocol):
    def title(self, title: str) -> Self: ...
    def description(self, description: str) -> Self: ...
    def unit(self, unit: str) -> Self: ...
    def datasource(self, datasource: dashboard_models.DataSourceRef) -> Self: ...
    def with_target(self, target: cogbuilder.Builder[cogvariants.Dataquery]) -> Self: ...
    def span(self, w: int) -> Self: ...
    def height(self, h: int) -> Self: ...


P = TypeVar("P", bound=_Panel)


def panel(
    builder: P,
    ds: dashboard_models.DataSourceRef,
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    width: int = 12,
    height: int = 8,
    empty_unless: str = "",
) -> P:
    """A panel reading ``queries`` from ``ds``. ``empty_unless`` says when a panel with
    no data is still healthy; it ends the description and feeds EXPECTED_EMPTY_FILE."""
    if empty_unless:
        description = f"{description}{EMPTY_UNLESS}{empty_unless}."
    builder = builder.title(title).description(description).unit(unit).datasource(ds)
    for index, q in enumerate(queries):
        target = (
            prometheus_builders.Dataquery()
            .datasource(ds)
            .ref_id(chr(ord("A") + index))
            .expr(q.expr)
            .legend_format(q.legend or "__auto")
        )
        target = target.instant() if q.instant else target.range()
        if q.exemplar:
            target = target.exemplar(True)
        if q.fmt is not None:
            target = target.format(q.fmt)
        builder = builder.with_target(target)
    return builder.span(width).height(height)


def _steps(*steps: tuple[float | None, str]) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(dashboard_models.ThresholdsMode.ABSOLUTE)
        .steps([dashboard_models.Threshold(value=v, color=c) for v, c in steps])
    )


def _lines(*steps: tuple[float | None, str]) -> timeseries.Panel:
    """A time series drawing its thresholds as dashed lines."""
    return (
        timeseries.Panel()
        .thresholds(_steps(*steps))
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    )


def _stacked() -> timeseries.Panel:
    return (
        timeseries.Panel()
        .fill_opacity(40)
        .stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    )


def _last(builder: stat.Panel) -> stat.Panel:
    return builder.reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]))


def _heatmap(y_unit: str) -> heatmap.Panel:
    return (
        heatmap.Panel()
        .calculate(False)
        .y_axis(heatmap.YAxisConfig().unit(y_unit))
        .cell_values(heatmap.CellValues().unit("cps"))
        .color(
            heatmap.HeatmapColorOptions()
            .mode(heatmap_models.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(heatmap_models.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
        )
    )


def _dashboard(uid: str, title: str, description: str) -> dashboard_builders.Dashboard:
    return (
        dashboard_builders.Dashboard(title)
        .uid(uid)
        .description(
            f"{description} Generated by stacktools/generate/dashboards.py: change the generator."
        )
        .tags([PREFIX])
        .readonly()
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(dashboard_models.DashboardCursorSync.CROSSHAIR)
    )


# --- Annotations --------------------------------------------------------------------


class PrometheusAnnotation(dashboard_models.AnnotationQuery):
    """An annotation query of the Prometheus data source. The SDK's model has the fields
    every annotation shares; the Prometheus ones (``step``, ``titleFormat``,
    ``textFormat``, ``tagKeys``, ``useValueForTime``) sit beside them in the JSON, where
    Grafana's Prometheus data source reads them."""

    def __init__(
        self,
        name: str,
        datasource: dashboard_models.DataSourceRef,
        expr: str,
        icon_color: str,
        prometheus_fields: dict[str, object],
    ) -> None:
        super().__init__(
            name=name, datasource=datasource, enable=True, hide=False, icon_color=icon_color,
            expr=expr,
        )  # fmt: skip
        self.prometheus_fields = prometheus_fields

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.prometheus_fields}


def restart_annotation(ds: dashboard_models.DataSourceRef, job: str) -> PrometheusAnnotation:
    """A marker at the start time of every agent process that replaced another: the
    query returns the new process's start time (ms) while its series changed within the
    last ``$__rate_interval`` (at least a step and a scrape), and ``useValueForTime``
    puts the marker at that value, not at the evaluation step. The first process a
    series shows has nothing before it to change from, so a fresh stack is no restart."""
    start = f"{PROCESS_START}{{{job}}}"
    expr = f"{start} * 1000\nand\n(changes({start}[{RATE}]) > 0)"
    return PrometheusAnnotation(
        RESTART_ANNOTATION,
        ds,
        expr,
        "red",
        {
            "titleFormat": "Agent restarted",
            "textFormat": "{{instance}}: a new agent process started (process_start_time_seconds "
            "changed; alerts NeurosAgentRestarted, NeurosAgentCrashLooping)",
            "tagKeys": "instance",
            "useValueForTime": True,
        },
    )


# --- Dashboards ---------------------------------------------------------------------

Section = tuple[str, list[cogbuilder.Builder[dashboard_models.Panel]]]


def _assemble(
    board: dashboard_builders.Dashboard,
    sections: Iterable[Section],
    annotations: Sequence[dashboard_models.AnnotationQuery] = (),
) -> dashboard_models.Dashboard:
    for title, panels in sections:
        board = board.with_row(dashboard_builders.Row(title))
        for builder in panels:
            board = board.with_panel(builder)
    built = board.build()
    if annotations:
        built.annotations = dashboard_models.AnnotationContainer(list_val=list(annotations))
    # The SDK leaves panel ids unset: number them in layout order, so they are stable.
    for number, item in enumerate(built.panels or [], start=1):
        item.id_val = number
    return built


def _kpi_sections(
    ds: dashboard_models.DataSourceRef, n: Names, records: list[str], job: str
) -> list[Section]:
    routes = f'{job},route=~"$route"'
    accepted = f"sum({rate(n.accepted, job)})"
    rejected = f"sum({rate(n.rejected, job)})"
    requests = f"sum by (route) ({rate(n.requests, routes)})"
    server_errors = f"sum by (route) ({rate(n.requests, routes + ',status=~' + FIVE_XX)})"
    not_2xx = f"sum by (route, status) ({rate(n.requests, routes + ',status!~' + TWO_XX)})"
    # Every agent replica exports the same population (read from the shared
    # database): max, not sum, over the replicas, or each user counts once per
    # replica (scripts/check-stack rejects a sum). Per-request rates above sum.
    readiness = f"max by (readiness) ({n.readiness}{{{job}}})"

    def buckets(histogram: str) -> list[Query]:
        expr = f"sum by (le) ({rate(histogram + '_bucket', job)})"
        return [Query(expr, "{{le}}", fmt=prometheus_models.PromQueryFormat.HEATMAP)]

    def quantiles(histogram: str, qs: Iterable[float]) -> list[Query]:
        return [Query(quantile(q, histogram, job), f"p{round(q * 100)}") for q in qs]

    ingest: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            _stacked(),
            ds,
            "Readings accepted and rejected",
            "Readings stored per second, and readings in rejected batches per second by "
            "reason (validation, malformed, too_large, storage). A batch is all-or-nothing.",
            "cps",
            [
                Query(accepted, "accepted"),
                Query(f"sum by (reason) ({rate(n.rejected, job)})", "rejected: {{reason}}"),
            ],
            width=16,
        ),
        panel(
            _last(stat.Panel()),
            ds,
            "Rejected share",
            "Share of readings rejected over the rate window; 0 while nothing was rejected, "
            "empty without any ingest.",
            "percentunit",
            [Query(ratio(rejected, f"({accepted} + {rejected})"), "rejected")],
            width=8,
        ).thresholds(_steps((None, "green"), (0.01, "orange"), (0.05, "red"))),
    ]
    distributions: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            _heatmap("s"),
            ds,
            "HRV RMSSD distribution",
            "KPI snapshots per second in each HRV RMSSD bucket (the histogram's bucket "
            "rates). Population-level: no series is per user.",
            "cps",
            buckets(n.hrv),
        ),
        panel(
            timeseries.Panel(),
            ds,
            "HRV RMSSD median: last hour vs 7-day baseline",
            "Recording rules behind the HRV alerts: median RMSSD of the snapshots of the last "
            "hour and of the last 7 days, each recorded only with at least 10 snapshots.",
            "s",
            [
                Query(_recorded(records, f"job:{n.hrv}:median1h"), "median 1h"),
                Query(_recorded(records, f"job:{n.hrv}:median7d"), "median 7d (baseline)"),
            ],
        ),
        panel(
            _heatmap("s"),
            ds,
            "Sleep debt distribution",
            "KPI snapshots per second in each 14-day sleep-debt bucket.",
            "cps",
            buckets(n.sleep_debt),
        ),
        panel(
            timeseries.Panel(),
            ds,
            "Sleep debt over 10 h",
            "Share of the KPI snapshots of the last 6 h whose 14-day sleep debt is over 10 h "
            "(recording rule behind the sleep-debt alert); empty without snapshots.",
            "percentunit",
            [
                Query(
                    _recorded(records, "job:neuros_kpi_sleep_debt_over_10h:ratio_rate6h"),
                    "over 10 h (6h)",
                )
            ],
        ),
        panel(
            _heatmap("short"),
            ds,
            "Recovery score distribution",
            "KPI snapshots per second in each recovery-score bucket (0-100; readiness is low "
            "at 33 or less, high at 67 or more).",
            "cps",
            buckets(n.recovery),
        ),
        panel(
            timeseries.Panel(),
            ds,
            "Recovery score quantiles",
            "p10, median and p90 of the recovery scores computed in the rate window; empty "
            "while no snapshot was computed.",
            "short",
            quantiles(n.recovery, (0.1, 0.5, 0.9)),
        ),
    ]
    bands: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            bargauge.Panel()
            .orientation(common.VizOrientation.HORIZONTAL)
            .display_mode(common.BarGaugeDisplayMode.GRADIENT)
            .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"])),
            ds,
            "Users per readiness band",
            "Users whose latest KPI snapshot is in each readiness band (low, moderate, high), "
            "and all of them.",
            "short",
            [
                Query(readiness, "{{readiness}}"),
                Query(_recorded(records, "job:neuros_users:count"), "all users"),
            ],
            width=8,
        ),
        panel(
            _stacked(),
            ds,
            "Readiness bands over time",
            "Users per readiness band, stacked.",
            "short",
            [Query(readiness, "{{readiness}}")],
            width=8,
        ),
        panel(
            _last(stat.Panel()),
            ds,
            "Low readiness share",
            "Share of users in the low band (recording rule behind the low-readiness alert); "
            "empty without users.",
            "percentunit",
            [Query(_recorded(records, "job:neuros_users_low_readiness:ratio"), "low readiness")],
            width=8,
        ).thresholds(_steps((None, "green"), (0.3, "orange"), (0.5, "red"))),
    ]
    computation: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            timeseries.Panel(),
            ds,
            "KPI computation latency",
            "p50, p95 and p99 of the time to read a user's KPI windows and compute the "
            "snapshot (once per ingest); empty while nothing was computed.",
            "s",
            quantiles(n.kpi_duration, (0.5, 0.95, 0.99)),
        ),
        panel(
            timeseries.Panel(),
            ds,
            "Database errors",
            "Failed database operations per second by operation (ingest, read, probe).",
            "cps",
            [Query(f"sum by (operation) ({rate(n.db_errors, job)})", "{{operation}}")],
        ),
    ]
    http: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            timeseries.Panel(),
            ds,
            "Request rate by route",
            "Requests per second by route template (filtered by the route variable).",
            "reqps",
            [Query(requests, "{{route}}")],
            width=8,
        ),
        panel(
            timeseries.Panel(),
            ds,
            "5xx error ratio by route",
            "Share of requests answered with a 5xx status, by route; 0 while a route had no "
            "error, empty for a route without traffic.",
            "percentunit",
            [Query(ratio(server_errors, requests, by="route"), "{{route}}")],
            width=8,
        ),
        panel(
            timeseries.Panel(),
            ds,
            "Non-2xx responses by status",
            "Responses per second outside 2xx, by route and status (4xx are client errors, "
            "5xx count against the availability SLO).",
            "reqps",
            [Query(not_2xx, "{{route}} {{status}}")],
            width=8,
        ),
        panel(
            timeseries.Panel(),
            ds,
            "Request duration by route, with exemplars",
            "p95 and p50 request duration by route. The dots on p95 are exemplars: each "
            "opens the trace of one request in Tempo.",
            "s",
            [
                Query(quantile(0.95, n.duration, routes, by="route"), "p95 {{route}}", True),
                Query(quantile(0.5, n.duration, routes, by="route"), "p50 {{route}}"),
            ],
            width=24,
            height=10,
        ),
    ]
    process: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            timeseries.Panel(),
            ds,
            "Agent memory",
            "Resident memory of the agent process.",
            "bytes",
            [Query(f"sum by (instance) ({PROCESS_MEMORY}{{{job}}})", "{{instance}}")],
        ),
        panel(
            timeseries.Panel(),
            ds,
            "Agent CPU",
            "CPU time of the agent process per second: 100 % is one full core.",
            "percentunit",
            [Query(f"sum by (instance) ({rate(PROCESS_CPU, job)})", "{{instance}}")],
        ),
    ]
    return [
        ("Ingest", ingest),
        ("KPI distributions (one observation per computed snapshot)", distributions),
        ("Readiness", bands),
        ("KPI computation and storage", computation),
        ("HTTP API", http),
        ("Agent process", process),
    ]


def kpi_overview(ds: Datasources, spec: slo.SloSpec) -> dashboard_models.Dashboard:
    names = Names.from_agent()
    job = f'job="{spec.job}"'
    route = (
        dashboard_builders.QueryVariable("route")
        .label("Route")
        .description("Route templates of the agent's HTTP API.")
        .datasource(ds.prometheus)
        .query(f"label_values({names.requests}{{{job}}}, route)")
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )
    board = _dashboard(
        KPI_UID,
        "NEUROS KPI Overview",
        "Ingest, population KPIs, HTTP API and process health of the NEUROS agent.",
    ).with_variable(route)
    sections = _kpi_sections(ds.prometheus, names, kpi_records(), job)
    return _assemble(board, sections, [restart_annotation(ds.prometheus, job)])


def _slo_panels(
    ds: dashboard_models.DataSourceRef, spec: slo.SloSpec, objective: slo.Slo, records: list[str]
) -> list[cogbuilder.Builder[dashboard_models.Panel]]:
    sel = f'service="{spec.service}",slo="{objective.name}"'
    budget = f"{_recorded(records, 'slo:error_budget_remaining:ratio')}{{{sel}}}"
    about = f"{objective.description} Objective {objective.objective:.2%} over {spec.window}."
    # The shortest SLI window and the long window of the fastest page.
    sli_windows = (slo.SLI_WINDOWS[0], slo.BURN_ALERTS[0].pairs[0].long)
    burn_windows = sorted(
        {w for alert in slo.BURN_ALERTS for pair in alert.pairs for w in (pair.long, pair.short)},
        key=slo.SLI_WINDOWS.index,
    )
    factors = {pair.factor: alert.severity for alert in slo.BURN_ALERTS for pair in alert.pairs}
    colour = {"page": "red", "ticket": "orange"}

    def sli(window: str) -> str:
        return f"1 - {_recorded(records, f'slo:sli_error:ratio_rate{window}')}{{{sel}}}"

    return [
        panel(
            _last(stat.Panel()),
            ds,
            f"{objective.name}: SLI over {spec.window}",
            f"{about} Green while the SLI meets the objective; empty without traffic.",
            "percentunit",
            [Query(sli(spec.window), "SLI")],
            width=6,
        )
        .decimals(3)
        .thresholds(_steps((None, "red"), (objective.objective, "green"))),
        panel(
            _last(stat.Panel()),
            ds,
            f"{objective.name}: error budget remaining",
            f"{about} Share of the {spec.window} error budget ({objective.budget:.2%} of "
            "requests) still unspent; negative once the SLO is breached.",
            "percentunit",
            [Query(budget, "budget remaining")],
            width=6,
        ).thresholds(_steps((None, "red"), (0, "orange"), (0.25, "green"))),
        panel(
            _lines((None, "red"), (objective.objective, "green")),
            ds,
            f"{objective.name}: SLI vs objective",
            f"{about} SLI over {' and '.join(sli_windows)} against the objective (dashed); "
            "empty while the API had no traffic.",
            "percentunit",
            [Query(sli(w), f"SLI {w}") for w in sli_windows]
            + [Query(f"{_recorded(records, 'slo:objective:ratio')}{{{sel}}}", "objective")],
        ),
        panel(
            _lines((None, "green"), *((f, colour[s]) for f, s in sorted(factors.items()))),
            ds,
            f"{objective.name}: burn rate per window",
            "Error ratio divided by the error budget, per window: 1 spends the budget exactly "
            "over the SLO window. Dashed: the burn-rate alert factors (orange ticket, red "
            "page); an alert needs both its long and its short window above its factor.",
            "short",
            [
                Query(f"{_recorded(records, f'slo:burn_rate:ratio_rate{w}')}{{{sel}}}", w)
                for w in burn_windows
            ],
        ),
        panel(
            _lines((None, "red"), (0, "green")),
            ds,
            f"{objective.name}: error budget over time",
            f"{about} Error budget remaining over the rolling {spec.window} window.",
            "percentunit",
            [Query(budget, "budget remaining")],
            width=24,
        ),
    ]


def _k6_panels(
    ds: dashboard_models.DataSourceRef,
) -> list[cogbuilder.Builder[dashboard_models.Panel]]:
    load_test = (
        "a k6 load test ran with --prometheus (k6's Prometheus remote-write output into "
        "this Prometheus)"
    )
    requests = f"sum({rate(K6_REQUESTS)})"
    unexpected = 'expected_response="false"'
    failed = f"sum({rate(K6_REQUESTS, unexpected)})"
    return [
        panel(
            timeseries.Panel(),
            ds,
            "k6 request rate",
            "Requests per second sent by k6.",
            "reqps",
            [Query(requests, "requests")],
            width=6,
            empty_unless=load_test,
        ),
        panel(
            timeseries.Panel(),
            ds,
            "k6 request duration p99",
            "Worst p99 request duration over k6's series (its default trend stat).",
            "s",
            [Query(f"max({K6_DURATION_P99})", "p99")],
            width=6,
            empty_unless=load_test,
        ),
        panel(
            timeseries.Panel(),
            ds,
            "k6 failed requests",
            "Share of k6 requests with an unexpected response status.",
            "percentunit",
            [Query(ratio(failed, requests), "failed")],
            width=6,
            empty_unless=load_test,
        ),
        panel(
            timeseries.Panel(),
            ds,
            "k6 virtual users",
            "Active k6 virtual users.",
            "short",
            [Query(f"sum({K6_VUS})", "VUs")],
            width=6,
            empty_unless=load_test,
        ),
    ]


def slo_dashboard(ds: Datasources, spec: slo.SloSpec) -> dashboard_models.Dashboard:
    prom = ds.prometheus
    records = slo_records(spec)
    guard_window = slo.BURN_ALERTS[0].pairs[0].long
    traffic = _recorded(records, f"slo:sli_requests:rate{guard_window}")
    alerts: list[cogbuilder.Builder[dashboard_models.Panel]] = [
        panel(
            table.Panel().with_transformation(
                dashboard_models.DataTransformerConfig(
                    id_val="organize",
                    options={"excludeByName": {"Time": True, "Value": True, "__name__": True}},
                )
            ),
            prom,
            "Firing alerts",
            'Alerts Prometheus fires now (ALERTS{alertstate="firing"}) with their labels; '
            "silences and notifications are under Alerting in the Alertmanager data source.",
            "short",
            [
                Query(
                    'ALERTS{alertstate="firing"}',
                    instant=True,
                    fmt=prometheus_models.PromQueryFormat.TABLE,
                )
            ],
            width=16,
            empty_unless="an alert is firing",
        ),
        panel(
            _lines((None, "orange"), (spec.min_request_rate, "green")),
            prom,
            f"API traffic in SLO scope ({guard_window})",
            "Requests per second to the routes the SLOs cover. Burn-rate alerts stay silent "
            f"below {spec.min_request_rate} req/s (dashed).",
            "reqps",
            [Query(f'{traffic}{{service="{spec.service}"}}', "requests")],
            width=8,
        ),
    ]
    sections: list[Section] = [("Alerts and traffic", alerts)]
    sections += [
        (f"SLO {s.name}: {s.objective:.2%} over {spec.window}", _slo_panels(prom, spec, s, records))
        for s in spec.slos
    ]
    sections.append(("Load tests (k6)", _k6_panels(prom)))
    board = _dashboard(
        SLO_UID,
        "NEUROS SLO & Error Budget",
        f"The SLOs of prometheus/slo.yml ({spec.service}, {spec.window} window): SLIs, error "
        "budgets, burn rates, firing alerts and k6 load-test results.",
    )
    restarts = restart_annotation(prom, f'job="{spec.job}"')
    return _assemble(board, sections, [restarts])


# --- Output -------------------------------------------------------------------------


def render(built: dashboard_models.Dashboard) -> str:
    return json.dumps(built, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def expected_empty(boards: Iterable[dashboard_models.Dashboard]) -> str:
    """The panels declared ``empty_unless``, in scripts/check-stack's format."""
    entries = [
        {"dashboard": board.title, "panel": item.title, "reason": f"Empty unless {reason}"}
        for board in boards
        for item in board.panels or []
        if isinstance(item, dashboard_models.Panel)
        for _, _, reason in [(item.description or "").partition(EMPTY_UNLESS)]
        if reason
    ]
    header = (
        "# Generated by `python -m stacktools.generate.dashboards`: the dashboard panels that"
        " may show\n"
        "# no data on a healthy stack, and when they have some. Do not edit; declare\n"
        "# `empty_unless` on the panel in stacktools/generate/dashboards.py instead.\n"
    )
    return header + yaml.safe_dump({"expected_empty": entries}, sort_keys=False, width=100)


def generated(ds: Datasources, spec: slo.SloSpec, out: Path, empty_file: Path) -> dict[Path, str]:
    """Every generated file by path: the dashboards in ``out``, the expected-empty list."""
    boards = {KPI_UID: kpi_overview(ds, spec), SLO_UID: slo_dashboard(ds, spec)}
    files = {out / f"{uid}.json": render(board) for uid, board in boards.items()}
    files[empty_file] = expected_empty(boards.values())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    parser.add_argument("--spec", type=Path, default=slo.SPEC_PATH)
    parser.add_argument("--datasources", type=Path, default=DATASOURCES_PATH)
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR)
    parser.add_argument("--expected-empty", type=Path, default=EXPECTED_EMPTY_FILE)
    args = parser.parse_args(argv)
    try:
        ds, spec = datasource_refs(args.datasources), slo.load_spec(args.spec)
        files = generated(ds, spec, args.out, args.expected_empty)
    except (DashboardError, slo.SpecError) as exc:
        print(f"dashboards: {exc}", file=sys.stderr)
        return 2
    stale = [path for path, text in files.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(
                f"dashboards: {path} is stale: run python -m stacktools.generate.dashboards",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
