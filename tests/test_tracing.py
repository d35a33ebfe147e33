"""Traces: spans per request, child spans for KPI and storage work, no personal data."""

from opentelemetry.sdk.trace import ReadableSpan

from tests.conftest import InProcess, reading

USER = "trace-canary-91c2"


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def test_ingest_has_server_kpi_and_db_spans(app: InProcess) -> None:
    body = {"readings": [reading(sleep_hours=7.25, resting_hr_bpm=58.5)]}
    assert app.client.post(f"/v1/users/{USER}/readings", json=body).status_code == 201
    spans = _by_name(app.spans.get_finished_spans())
    server = spans["POST /v1/users/{user_id}/readings"]
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/users/{user_id}/readings"
    assert server.context is not None
    for child in ("db.upsert_readings", "kpi.compute"):
        parent = spans[child].parent
        assert parent is not None
        assert parent.span_id == server.context.span_id
    kpi = spans["kpi.compute"]
    assert kpi.context is not None
    assert spans["db.kpi_inputs"].parent is not None
    assert spans["db.kpi_inputs"].parent.span_id == kpi.context.span_id
    # One span per request: the ASGI receive/send spans are excluded.
    assert not [name for name in spans if "http receive" in name or "http send" in name]


def test_no_user_id_or_reading_in_any_span(app: InProcess) -> None:
    body = {"readings": [reading(sleep_hours=7.25, resting_hr_bpm=58.5)]}
    app.client.post(f"/v1/users/{USER}/readings?debug={USER}", json=body)
    app.client.get(f"/v1/users/{USER}/kpis")
    app.client.post(f"/v1/users/{USER}/analyze")
    app.client.post(f"/v1/users/{USER}/readings", json={"readings": [reading(sleep_hours=99)]})
    app.client.get(f"/nowhere/{USER}")
    spans = app.spans.get_finished_spans()
    assert len(spans) >= 5
    for span in spans:
        text = f"{span.name} {dict(span.attributes or {})} {span.events} {span.resource.attributes}"
        for secret in (USER, "7.25", "58.5"):
            assert secret not in text, f"{secret!r} leaked in span {span.name}: {text}"
    server = [s for s in spans if s.attributes and "http.target" in s.attributes]
    assert server
    assert {s.attributes["http.target"] for s in server if s.attributes} == {
        "/v1/users/{user_id}/readings",
        "/v1/users/{user_id}/kpis",
        "/v1/users/{user_id}/analyze",
        "unmatched",
    }


def test_probe_and_scrape_routes_are_not_traced(app: InProcess) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert app.client.get(path).status_code == 200
    assert app.spans.get_finished_spans() == ()
