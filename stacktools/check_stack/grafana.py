"""Grafana: provisioned datasources, dashboards, the PromQL they run, the datasource
uids they use, and the dashboard queries allowed to return no series."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..paths import DASHBOARDS_DIR, DATASOURCES_DIR, EXPECTED_EMPTY_FILE
from .files import LoadError, as_dict, as_list, load_folder, load_yaml, walk_json
from .promql import Query, Windows, substitute_variables, variable_name
from .report import Report

# Grafana's own pseudo-datasources: never provisioned, always there.
BUILTIN_DATASOURCE_UIDS = frozenset(
    {"grafana", "-- Grafana --", "-- Mixed --", "-- Dashboard --", "__expr__"}
)


def dashboard_variables(dashboard: Mapping[str, Any]) -> dict[str, str | None]:
    """Template variable -> its current single value, or None (none, several or All)."""
    variables: dict[str, str | None] = {}
    for variable in as_list(as_dict(dashboard.get("templating")).get("list")):
        variable = as_dict(variable)
        name = variable.get("name")
        if not isinstance(name, str):
            continue
        current = as_dict(variable.get("current")).get("value")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else None
        if variable.get("type") == "constant" and current is None:
            current = variable.get("query")
        concrete = isinstance(current, str) and current not in ("", "$__all", "All")
        variables[name] = current if concrete else None
    return variables


@dataclass(frozen=True)
class Datasource:
    file: str
    name: str
    uid: str
    type: str
    url: str
    is_default: bool
    json_data: dict[str, Any]


def load_datasources(repo: Path, report: Report) -> list[Datasource]:
    datasources: list[Datasource] = []
    what = "datasource provisioning file"
    for rel, document in load_folder(repo, DATASOURCES_DIR, "*.yml", what, report):
        for item in as_list(document.get("datasources")):
            item = as_dict(item)
            name = str(item.get("name", ""))
            uid = item.get("uid")
            if not isinstance(uid, str) or not uid:
                report.add(rel, f"datasource {name!r} has no uid: dashboards cannot pin it")
                continue
            datasources.append(
                Datasource(
                    file=rel,
                    name=name,
                    uid=uid,
                    type=str(item.get("type", "")),
                    url=str(item.get("url", "")),
                    is_default=bool(item.get("isDefault", False)),
                    json_data=as_dict(item.get("jsonData")),
                )
            )
    seen: dict[str, str] = {}
    for datasource in datasources:
        if datasource.uid in seen:
            report.add(
                datasource.file,
                f"datasource uid {datasource.uid!r} is provisioned twice"
                f" ({seen[datasource.uid]} and {datasource.name!r})",
            )
        seen[datasource.uid] = datasource.name
    return datasources


@dataclass(frozen=True)
class Dashboard:
    file: str
    title: str
    model: dict[str, Any]


def load_dashboards(repo: Path, report: Report) -> list[Dashboard]:
    dashboards: list[Dashboard] = []
    for rel, model in load_folder(repo, DASHBOARDS_DIR, "*.json", "dashboard", report):
        # A dashboard file may be the model itself or an API envelope {"dashboard": ...}.
        model = as_dict(model.get("dashboard")) or model
        dashboards.append(Dashboard(rel, str(model.get("title", Path(rel).stem)), model))
    return dashboards


def iter_panels(panels: Iterable[Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        panel = as_dict(panel)
        yield panel
        yield from iter_panels(as_list(panel.get("panels")))


def _datasource_type(ref: Any, by_uid: Mapping[str, Datasource], default_type: str) -> str:
    if isinstance(ref, dict):
        if isinstance(ref.get("type"), str) and ref["type"]:
            return str(ref["type"])
        uid = ref.get("uid")
        if isinstance(uid, str) and uid in by_uid:
            return by_uid[uid].type
    return default_type


def dashboard_queries(
    dashboard: Dashboard, datasources: Sequence[Datasource], windows: Windows
) -> list[Query]:
    """The PromQL of every Prometheus target (and query variable) of a dashboard."""
    by_uid = {d.uid: d for d in datasources}
    default_type = next((d.type for d in datasources if d.is_default), "prometheus")
    variables = dashboard_variables(dashboard.model)
    queries: list[Query] = []

    def add(kind: str, where: str, panel: str, expr: str) -> None:
        promql = substitute_variables(expr, variables, windows)
        queries.append(Query(dashboard.file, where, expr, promql, kind, dashboard.title, panel))

    for panel in iter_panels(as_list(dashboard.model.get("panels"))):
        title = str(panel.get("title", ""))
        panel_type = _datasource_type(panel.get("datasource"), by_uid, default_type)
        for target in as_list(panel.get("targets")):
            target = as_dict(target)
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                continue
            kind = panel_type
            if "datasource" in target:
                kind = _datasource_type(target["datasource"], by_uid, panel_type)
            if kind == "prometheus":
                where = f"dashboard {dashboard.title!r} panel {title!r}"
                add("panel", where, title, expr)
    for variable in as_list(as_dict(dashboard.model.get("templating")).get("list")):
        variable = as_dict(variable)
        if variable.get("type") != "query":
            continue
        if _datasource_type(variable.get("datasource"), by_uid, default_type) != "prometheus":
            continue
        expr = variable_promql(variable.get("query"))
        if expr:
            where = f"dashboard {dashboard.title!r} variable {variable.get('name')!r}"
            add("variable", where, "", expr)
    return queries


_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\s*\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\((?P<expr>.*)\)\s*$", re.DOTALL)


def variable_promql(query: Any) -> str | None:
    """The PromQL inside a Prometheus query variable, if it has any."""
    if isinstance(query, dict):
        query = query.get("query")
    if not isinstance(query, str):
        return None
    for pattern, group in ((_LABEL_VALUES, "selector"), (_QUERY_RESULT, "expr")):
        match = pattern.match(query)
        if match:
            return match.group(group)
    return None


_TAGS = re.compile(r"\$\{__tags\}|\$__tags\b")


def datasource_queries(datasources: Iterable[Datasource], windows: Windows) -> list[Query]:
    """The PromQL of "traces to metrics" links (a Tempo datasource's ``tracesToMetrics``)."""
    queries: list[Query] = []
    for datasource in datasources:
        links = as_dict(datasource.json_data.get("tracesToMetrics"))
        for link in as_list(links.get("queries")):
            link = as_dict(link)
            expr = link.get("query")
            if not isinstance(expr, str):
                continue
            # "$$" is provisioning's escaped "$"; $__tags becomes matchers inside {...}.
            promql = _TAGS.sub("", expr.replace("$$", "$"))
            promql = substitute_variables(promql, {}, windows)
            where = f"datasource {datasource.name!r} traces-to-metrics query {link.get('name')!r}"
            queries.append(Query(datasource.file, where, expr, promql, "datasource"))
    return queries


def check_datasource_refs(
    dashboards: Sequence[Dashboard], datasources: Sequence[Datasource], report: Report
) -> None:
    uids = {d.uid for d in datasources}
    names = {d.name for d in datasources}
    for datasource in datasources:
        for node in walk_json(datasource.json_data):
            for key, value in node.items():
                # datasourceUid (exemplars, traces to metrics, service map...), alertmanagerUid
                if key.lower().endswith("uid") and value not in uids:
                    report.add(
                        datasource.file,
                        f"datasource {datasource.name!r}: {key} {value!r}"
                        f" is not a provisioned datasource uid ({', '.join(sorted(uids))})",
                    )
    for dashboard in dashboards:
        variables = set(dashboard_variables(dashboard.model))
        bad: set[str] = set()
        for node in walk_json(dashboard.model):
            ref = node.get("datasource")
            # {"uid": ...} since Grafana 8.3; a bare string is a legacy name (or uid).
            uid = ref.get("uid") if isinstance(ref, dict) else ref
            if uid is None:
                continue
            known = uids | BUILTIN_DATASOURCE_UIDS | (names if isinstance(ref, str) else set())
            if str(uid) not in known and variable_name(str(uid)) not in variables:
                bad.add(str(uid))
        for uid in sorted(bad):
            report.add(
                dashboard.file,
                f"dashboard {dashboard.title!r} uses datasource {uid!r}, which is not"
                f" provisioned in {DATASOURCES_DIR} (uids: {', '.join(sorted(uids))})",
            )


@dataclass(frozen=True)
class Expectation:
    reason: str
    dashboard: str | None = None
    panel: str | None = None
    expr: str | None = None

    def matches(self, query: Query) -> bool:
        return all(
            want is None or want == have
            for want, have in (
                (self.dashboard, query.dashboard),
                (self.panel, query.panel),
                (self.expr, query.expr),
            )
        )


_EXPECTATION_KEYS = {"reason", "dashboard", "panel", "expr"}


def load_expectations(repo: Path, report: Report) -> list[Expectation]:
    """grafana/expected-empty.yml: dashboard queries allowed to return no series."""
    path = repo / EXPECTED_EMPTY_FILE
    if not path.is_file():
        return []
    try:
        document = load_yaml(path)
    except LoadError as error:
        report.add(EXPECTED_EMPTY_FILE, str(error))
        return []
    expectations: list[Expectation] = []
    for number, entry in enumerate(as_list(as_dict(document).get("expected_empty")), 1):
        entry = as_dict(entry)
        selectors = {k: entry.get(k) for k in ("dashboard", "panel", "expr")}
        unknown = set(entry) - _EXPECTATION_KEYS
        if unknown or not entry.get("reason") or not any(selectors.values()):
            report.add(
                EXPECTED_EMPTY_FILE,
                f"entry {number} needs a reason and a dashboard, panel or expr"
                + (f" (unknown keys: {', '.join(sorted(unknown))})" if unknown else ""),
            )
            continue
        expectations.append(
            Expectation(
                reason=str(entry["reason"]),
                **{k: str(v) for k, v in selectors.items() if v is not None},
            )
        )
    return expectations


def check_expectations_match(
    expectations: Sequence[Expectation], queries: Sequence[Query], report: Report
) -> None:
    for expectation in expectations:
        if not any(expectation.matches(q) for q in queries):
            selectors = {k: v for k, v in asdict(expectation).items() if k != "reason" and v}
            report.add(EXPECTED_EMPTY_FILE, f"entry {selectors} matches no dashboard query")
