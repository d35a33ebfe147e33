"""Dashboards against a real agent scraped by a real Prometheus: do panels show data?

The agent runs as deployed (``python -m neuros``) and Prometheus 3 (tools folder) runs
the repository's rules with a config derived from prometheus/prometheus.yml, its
scrape jobs replaced by the agent's job at a 1 s interval. Realistic traffic (users in
every readiness band, KPI reads, rejected batches, a 404) flows until Prometheus has
scraped it several times and evaluated every rule group since; then the real entry
point, ``scripts/check-stack --prometheus URL --json``, runs every dashboard query.
At least 80 % must return series, and every empty one must be allowed, with a reason,
in grafana/expected-empty.yml.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from neuros.kpi import Readiness
from stacktools import check_stack, paths
from stacktools.compose import as_written
from stacktools.paths import REPO_ROOT
from tests.support.agent import RR_EXAMPLE, reading
from tests.support.processes import LiveAgent
from tests.support.prometheus_server import (
    STACK_FLAGS,
    PrometheusServer,
    repo_config,
)

pytestmark = pytest.mark.slow

CHECK_STACK = REPO_ROOT / paths.CHECK_STACK
# $__rate_interval for the run: several 1 s scrapes, and all of them after traffic began.
RATE_INTERVAL = "15s"
MIN_SCRAPES = 5
MIN_DATA_FRACTION = 0.8
MAX_BODY_BYTES = 4096
DEADLINE_SECONDS = 40.0
# Rejected batches store nothing, so this user never gets data.
READINGS_OF_NOBODY = "/v1/users/e2e-rejected/readings"


def _agent_job() -> str:
    """The scrape job of the agent in prometheus/prometheus.yml (dashboards select it)."""
    report = check_stack.Report()
    hosts = check_stack.load_compose(REPO_ROOT, report)
    config = check_stack.load_yaml(REPO_ROOT / paths.PROMETHEUS_CONFIG)
    jobs = check_stack.agent_jobs(config, hosts)
    assert len(jobs) == 1, f"expected one agent scrape job, found {sorted(jobs)}"
    return next(iter(jobs))


def _day(offset: int) -> str:
    return f"2026-11-{20 + offset:02d}T07:00:00+00:00"


# One batch per readiness band. Scores: high 60 + 0.8*43.6 = 94.9 (HRV well above the
# previous day's); low: HRV 71 % below baseline (clamped -50: -40), resting HR +20
# (-40), 11 h of sleep debt (-22) -> 0, and over the 10 h sleep-debt threshold;
# moderate: no baseline, 1 h of sleep debt -> 58.
BATCHES: dict[Readiness, list[dict[str, object]]] = {
    Readiness.HIGH: [
        reading(_day(-1), hrv_rmssd_ms=10.0, sleep_hours=8.0, resting_hr_bpm=50),
        reading(_day(0), rr_intervals_ms=RR_EXAMPLE, sleep_hours=8.0, resting_hr_bpm=50),
    ],
    Readiness.LOW: [
        reading(_day(-1), hrv_rmssd_ms=50.0, sleep_hours=2.0, resting_hr_bpm=50),
        reading(_day(0), rr_intervals_ms=RR_EXAMPLE, sleep_hours=3.0, resting_hr_bpm=70),
    ],
    Readiness.MODERATE: [reading(_day(0), rr_intervals_ms=RR_EXAMPLE, sleep_hours=7.0)],
}


def test_traffic_covers_every_readiness_band() -> None:
    assert set(BATCHES) == set(Readiness)


def _drive_round(client: httpx.Client) -> None:
    """One round of the traffic a deployment sees, failures included."""
    for band, readings in BATCHES.items():
        user = f"e2e-{band.value}"
        response = client.post(f"/v1/users/{user}/readings", json={"readings": readings})
        assert response.status_code == 201, response.text
        assert response.json()["kpis"]["readiness"] == band.value, response.text
        assert client.get(f"/v1/users/{user}/kpis").status_code == 200
        assert client.post(f"/v1/users/{user}/analyze").status_code == 200
    invalid = {"readings": [reading(resting_hr_bpm=999)]}
    assert client.post(READINGS_OF_NOBODY, json=invalid).status_code == 422
    malformed = client.post(
        READINGS_OF_NOBODY,
        content=b'{"readings": [',
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    too_large = {"readings": [reading(rr_intervals_ms=[800.5] * 1000)]}
    assert client.post(READINGS_OF_NOBODY, json=too_large).status_code == 413
    assert client.get("/v1/users/e2e-nobody/kpis").status_code == 404


def _rule_groups_evaluated_since(prometheus: PrometheusServer, since: float) -> bool:
    groups = prometheus.api("rules")["groups"]
    assert groups, f"Prometheus loaded no rule group:\n{prometheus.log()}"
    return all(_timestamp(group["lastEvaluation"]) > since for group in groups)


def _timestamp(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339).timestamp()


def _drive_until_scraped(agent: LiveAgent, prometheus: PrometheusServer, job: str) -> None:
    """Traffic until Prometheus holds MIN_SCRAPES scrapes with traffic in the rate window,
    then until every rule group has been evaluated on them. Polls; never sleeps."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    scraped_at: float | None = None
    enough_scrapes = f'count_over_time(up{{job="{job}"}}[{RATE_INTERVAL}]) >= {MIN_SCRAPES}'
    with agent.client(timeout=10) as client:
        while True:
            _drive_round(client)
            if scraped_at is None and prometheus.query(enough_scrapes):
                scraped_at = time.time()
            if scraped_at is not None and _rule_groups_evaluated_since(prometheus, scraped_at):
                return
            assert time.monotonic() < deadline, (
                f"Prometheus did not scrape the agent {MIN_SCRAPES} times and evaluate its"
                f" rules within {DEADLINE_SECONDS}s; targets:"
                f" {prometheus.api('targets')['activeTargets']}\n{prometheus.log()}"
            )


def _check_stack_live(prometheus: PrometheusServer) -> dict[str, Any]:
    result = subprocess.run(
        [
            str(CHECK_STACK),
            "--prometheus",
            prometheus.url,
            "--json",
            "--rate-interval",
            RATE_INTERVAL,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_compose_runs_prometheus_with_the_flags_this_test_uses() -> None:
    command = as_written()["services"]["prometheus"]["command"]
    assert set(STACK_FLAGS) <= set(command), command


def test_dashboard_queries_return_data_from_a_real_prometheus(
    live_agent: Callable[..., LiveAgent],
    prometheus_server: Callable[..., PrometheusServer],
    tmp_path: Path,
) -> None:
    job = _agent_job()
    agent = live_agent(env={"NEUROS_MAX_BODY_BYTES": str(MAX_BODY_BYTES)})
    target = agent.url.removeprefix("http://")
    scrape = {"job_name": job, "static_configs": [{"targets": [target]}]}
    prometheus = prometheus_server(repo_config([scrape], fast_rules_dir=tmp_path / "rules"))
    _drive_until_scraped(agent, prometheus, job)

    report = _check_stack_live(prometheus)

    live = report["live"]
    assert live is not None, report
    assert live["total"] > 0, report
    results = live["results"]
    failed = [r for r in results if r["error"]]
    assert not failed, f"queries Prometheus refused: {failed}"
    unexplained = [
        f"{r['dashboard']} / {r['panel']}: {r['expr']}"
        for r in results
        if r["series"] == 0 and not r["expected_empty"]
    ]
    assert not unexplained, (
        "dashboard queries with no data and no reason in grafana/expected-empty.yml:\n"
        + "\n".join(unexplained)
    )
    assert live["fraction_with_data"] >= MIN_DATA_FRACTION, (
        f"only {live['with_data']}/{live['total']} dashboard queries returned data"
    )
