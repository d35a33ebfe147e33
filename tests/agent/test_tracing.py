"""Traces: spans per request, child spans for KPI and storage work, no personal data."""

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from neuros.middleware.server_spans import incoming_context
from tests.support.agent import InProcess, reading

USER = "trace-canary-91c2"


def _by_name(spans: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {s.name: s for s in spans}


def _parent_of(spans: dict[str, ReadableSpan], child: str) -> ReadableSpan:
    parent = spans[child].parent
    assert parent is not None
    return next(s for s in spans.values() if s.context and s.context.span_id == parent.span_id)


def test_ingest_has_server_db_and_kpi_spans(app: InProcess) -> None:
    body = {"readings": [reading(sleep_hours=7.25, resting_hr_bpm=58.5)]}
    assert app.client.post(f"/v1/users/{USER}/readings", json=body).status_code == 201
    spans = _by_name(app.spans.get_finished_spans())
    assert set(spans) == {"POST /v1/users/{user_id}/readings", "db.write", "kpi.compute"}
    server = spans["POST /v1/users/{user_id}/readings"]
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/v1/users/{user_id}/readings"
    assert server.attributes["http.response.status_code"] == 201
    assert _parent_of(spans, "db.write") is server
    assert _parent_of(spans, "kpi.compute") is spans["db.write"]


def test_reads_have_db_and_kpi_spans(app: InProcess) -> None:
    app.client.post(f"/v1/users/{USER}/readings", json={"readings": [reading()]})
    app.spans.clear()
    app.client.get(f"/v1/users/{USER}/kpis")
    spans = _by_name(app.spans.get_finished_spans())
    assert _parent_of(spans, "db.read").name == "GET /v1/users/{user_id}/kpis"
    assert _parent_of(spans, "kpi.compute") is spans["db.read"]


def test_incoming_trace_context_is_continued(app: InProcess) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    app.client.get("/v1/users/nobody/kpis", headers=headers)
    server = _by_name(app.spans.get_finished_spans())["GET /v1/users/{user_id}/kpis"]
    assert server.context is not None
    assert format(server.context.trace_id, "032x") == trace_id


def test_server_errors_mark_the_span(app: InProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = app.client.app.state.agent  # type: ignore[attr-defined]

    def explode(*_: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(agent, "snapshot", explode)
    assert app.client.get(f"/v1/users/{USER}/kpis").status_code == 500
    server = _by_name(app.spans.get_finished_spans())["GET /v1/users/{user_id}/kpis"]
    assert server.status.status_code is StatusCode.ERROR
    assert [e.name for e in server.events] == ["exception"]


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
        events = [(e.name, dict(e.attributes or {})) for e in span.events]
        text = f"{span.name} {dict(span.attributes or {})} {events} {span.resource.attributes}"
        for secret in (USER, "7.25", "58.5"):
            assert secret not in text, f"{secret!r} leaked in span {span.name}: {text}"
    server = [s for s in spans if s.kind is SpanKind.SERVER]
    assert {s.attributes["http.route"] for s in server if s.attributes} == {
        "/v1/users/{user_id}/readings",
        "/v1/users/{user_id}/kpis",
        "/v1/users/{user_id}/analyze",
        "unmatched",
    }


def test_probe_and_scrape_routes_are_not_traced(app: InProcess) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert app.client.get(path).status_code == 200
    assert app.spans.get_finished_spans() == ()


def test_trace_headers_are_read_only_when_sent() -> None:
    fields = frozenset({b"traceparent", b"tracestate", b"baggage"})
    plain = [(b"host", b"agent"), (b"content-type", b"application/json")]
    assert incoming_context(plain, fields) == {}

    traced = [
        *plain,
        (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        (b"tracestate", b"a=1"),
        (b"tracestate", b"b=2"),
    ]
    parent = trace.get_current_span(incoming_context(traced, fields)).get_span_context()
    assert parent.is_remote
    assert format(parent.span_id, "016x") == "00f067aa0ba902b7"
    assert parent.trace_state.to_header() == "a=1,b=2"
