"""The restart markers of the generated dashboards (stacktools/generate/dashboards.py).

Both dashboards carry one Prometheus annotation query that marks every agent restart:
on the provisioned Prometheus uid, reading the agent's own ``process_start_time_seconds``
(exported by its process collector), at the restart's own time. Its PromQL is run by the
real ``promtool`` against a series with a restart, as Grafana runs it step by step.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import generate_latest

from neuros.metrics import build_metrics
from stacktools import check_stack as cs
from stacktools.generate import dashboards, slo
from tests.support.tooling import tool

BOARDS = sorted(dashboards.DASHBOARDS_DIR.glob("*.json"))
JOB = slo.load_spec(slo.SPEC_PATH).job
# The smallest $__rate_interval Grafana computes at 15 s scrapes (4 x the scrape).
RATE_INTERVAL = "1m"


def _restart_annotations(path: Path) -> list[dict[str, Any]]:
    board = json.loads(path.read_text())
    found: list[dict[str, Any]] = [
        annotation
        for annotation in board.get("annotations", {}).get("list", [])
        if annotation.get("name") == dashboards.RESTART_ANNOTATION
    ]
    return found


def _expr() -> str:
    (annotation,) = _restart_annotations(BOARDS[0])
    expr: str = annotation["expr"]
    return expr


def test_both_dashboards_are_generated() -> None:
    assert {path.stem for path in BOARDS} == {dashboards.KPI_UID, dashboards.SLO_UID}


@pytest.mark.parametrize("path", BOARDS, ids=[p.stem for p in BOARDS])
def test_dashboard_marks_agent_restarts(path: Path) -> None:
    (annotation,) = _restart_annotations(path)
    uid = dashboards.datasource_refs().prometheus.uid
    assert annotation["datasource"] == {"type": "prometheus", "uid": uid}
    assert annotation["enable"] is True
    assert annotation["hide"] is False
    # The marker sits at the value (the new process's start time, in ms), not at the
    # evaluation step where the change was first seen.
    assert annotation["useValueForTime"] is True
    assert annotation["tagKeys"] == "instance"
    expr = annotation["expr"]
    assert expr == _expr(), "both dashboards mark restarts alike"
    parsed = promql_parser.parse(expr.replace("$__rate_interval", RATE_INTERVAL))
    assert cs.metric_reads(parsed).names == {(dashboards.PROCESS_START, JOB)}


def test_the_agent_exports_its_process_start_time() -> None:
    exposition = generate_latest(build_metrics().registry).decode()
    assert f"\n{dashboards.PROCESS_START} " in f"\n{exposition}"


def _samples(at: str, value: float | None) -> dict[str, Any]:
    expr = _expr().replace("$__rate_interval", RATE_INTERVAL)
    labels = f'{{instance="neuros:9464",job="{JOB}"}}'
    samples = [] if value is None else [{"labels": labels, "value": value}]
    return {"expr": expr, "eval_time": at, "exp_samples": samples}


def test_marker_is_at_the_restart_and_only_there(tmp_path: Path) -> None:
    """A first process started at t=1000 s, scraped every 15 s; it crashed and a new one
    started at t=1630 s, first scraped at 10m15s. Grafana evaluates the query at each
    step: the new start time (ms) comes back at the steps whose window holds the change,
    nothing before (the first process is no restart) and nothing after."""
    series = f'process_start_time_seconds{{job="{JOB}",instance="neuros:9464"}}'
    document = {
        "rule_files": [],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": [{"series": series, "values": "1000x40 1630x80"}],
                "promql_expr_test": [
                    _samples("5m", None),
                    _samples("10m", None),
                    _samples("10m15s", 1_630_000),
                    _samples("10m45s", 1_630_000),
                    _samples("11m", None),
                    _samples("20m", None),
                ],
            }
        ],
    }
    test_file = tmp_path / "restart-annotation-test.yml"
    test_file.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
