"""Prometheus metrics: names, bounded labels, exemplars, current gauges."""

from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from neuros.metrics import HTTP_LATENCY_BUCKETS_SECONDS, build_metrics
from tests.support.agent import InProcess, reading
from tests.support.processes import wait_until

ROUTE = "/v1/users/{user_id}/readings"


def _series(text: str) -> set[str]:
    return {
        f"{s.name}{sorted(s.labels.items())}"
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_requests_are_labelled_by_route_template(app: InProcess) -> None:
    for user in ("alice", "bob"):
        app.client.post(f"/v1/users/{user}/readings", json={"readings": [reading()]})
    app.client.get("/v1/users/carol/kpis")
    app.client.get("/wp-admin/setup.php")
    app.client.request("BREW", "/health")
    labels = {"method": "POST", "route": ROUTE, "status": "201"}
    assert app.sample("neuros_http_requests_total", labels) == 2
    kpis = {"method": "GET", "route": "/v1/users/{user_id}/kpis", "status": "404"}
    assert app.sample("neuros_http_requests_total", kpis) == 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert app.sample("neuros_http_requests_total", unmatched) == 1
    assert (
        app.sample(
            "neuros_http_requests_total", {"method": "OTHER", "route": "/health", "status": "405"}
        )
        == 1
    )
    duration = {"method": "POST", "route": ROUTE}
    assert app.sample("neuros_http_request_duration_seconds_count", duration) == 2
    text = app.client.get("/metrics").text
    for secret in ("alice", "bob", "carol", "wp-admin"):
        assert secret not in text


def test_metrics_do_not_grow_with_users(app: InProcess) -> None:
    def post_users(prefix: str) -> None:
        for n in range(30):
            body = {"readings": [reading(sleep_hours=5 + n % 4, resting_hr_bpm=50 + n)]}
            assert app.client.post(f"/v1/users/{prefix}{n}/readings", json=body).status_code == 201
            app.client.get(f"/v1/users/{prefix}{n}/kpis")

    post_users("first-")
    app.client.get("/metrics")  # the scrape itself is a route too
    before = _series(app.client.get("/metrics").text)
    post_users("second-")
    after = _series(app.client.get("/metrics").text)
    assert after == before


def test_domain_metrics(app: InProcess) -> None:
    body = {"readings": [reading(rr_intervals_ms=[800, 810, 790, 805, 795], sleep_hours=6)]}
    app.client.post("/v1/users/u1/readings", json=body)
    assert app.sample("neuros_readings_accepted_total") == 1
    assert app.sample("neuros_kpi_hrv_rmssd_seconds_count") == 1
    assert app.sample("neuros_kpi_hrv_rmssd_seconds_sum") == pytest.approx(0.0143614)
    assert app.sample("neuros_kpi_sleep_debt_seconds_sum") == 2 * 3600
    assert app.sample("neuros_kpi_recovery_score_count") == 1
    assert app.sample("neuros_kpi_computation_duration_seconds_count") == 1
    app.client.get("/v1/users/u1/kpis")
    assert app.sample("neuros_kpi_computation_duration_seconds_count") == 2
    assert app.sample("process_resident_memory_bytes") > 0


def test_readiness_gauge_follows_users_between_bands(app: InProcess) -> None:
    """The gauge is read from the database (every replica's writes), soon after this
    replica moved a user between bands."""

    def band_counts() -> dict[str, float]:
        return {
            band: app.sample("neuros_users_by_readiness", {"readiness": band})
            for band in ("high", "moderate", "low")
        }

    def shows(expected: dict[str, float]) -> None:
        wait_until(
            lambda: band_counts() == expected,
            5,
            f"gauge {expected}",
            details=lambda: str(band_counts()),
        )

    # No baseline, 2 h debt: 60 - 4 = 56 -> moderate.
    app.client.post("/v1/users/u1/readings", json={"readings": [reading(sleep_hours=6)]})
    shows({"high": 0, "moderate": 1, "low": 0})
    # A 14-day stretch of 0 h sleep: debt far past 20 h -> 60 - 40 = 20 -> low.
    nights = [reading(f"2026-11-{d:02d}T07:00:00Z", sleep_hours=0) for d in range(7, 21)]
    app.client.post("/v1/users/u1/readings", json={"readings": nights})
    shows({"high": 0, "moderate": 0, "low": 1})
    app.client.post("/v1/users/u2/readings", json={"readings": [reading(sleep_hours=8)]})
    shows({"high": 0, "moderate": 1, "low": 1})


def test_readiness_gauge_is_restored_from_the_database(
    make_app: Callable[..., InProcess],
) -> None:
    first = make_app()
    first.client.post("/v1/users/u1/readings", json={"readings": [reading(sleep_hours=6)]})
    first.client.__exit__(None, None, None)
    second = make_app()
    assert second.sample("neuros_users_by_readiness", {"readiness": "moderate"}) == 1


def test_openmetrics_carries_trace_exemplars(app: InProcess) -> None:
    app.client.post("/v1/users/u1/readings", json={"readings": [reading()]})
    response = app.client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    server_span = next(
        s for s in app.spans.get_finished_spans() if s.name.startswith("POST /v1/users")
    )
    assert server_span.context is not None
    trace_id = format(server_span.context.trace_id, "032x")
    exemplar_lines = [
        line
        for line in response.text.splitlines()
        if line.startswith("neuros_http_request_duration_seconds_bucket") and "# {" in line
    ]
    assert exemplar_lines
    assert all(f'trace_id="{trace_id}"' in line for line in exemplar_lines)
    plain = app.client.get("/metrics").text
    assert "trace_id" not in plain  # the classic text format has no exemplars


def test_metrics_disabled_removes_the_middleware(make_app: Callable[..., InProcess]) -> None:
    app = make_app(metrics_enabled=False)
    app.client.post("/v1/users/u1/readings", json={"readings": [reading()]})
    assert (
        app.registry.get_sample_value(
            "neuros_http_requests_total", {"method": "POST", "route": ROUTE, "status": "201"}
        )
        is None
    )


def test_latency_buckets_are_sorted_and_fine_enough_for_an_slo() -> None:
    assert list(HTTP_LATENCY_BUCKETS_SECONDS) == sorted(HTTP_LATENCY_BUCKETS_SECONDS)
    names = {f.name for f in build_metrics().registry.collect()}
    assert all(n.startswith(("neuros_", "process_", "python_")) for n in names), names
