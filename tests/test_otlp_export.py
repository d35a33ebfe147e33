"""The deployed agent (a real uvicorn process) exports its traces over OTLP/HTTP.

The receiver is ``scripts/otlp_sink.py``: a real HTTP server in this process that
decodes the protobuf with ``opentelemetry-proto``, as the collector's OTLP receiver
does. What reaches it is what the collector, and then Tempo, would store.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from scripts.otlp_sink import OtlpSink, ReceivedSpan
from tests.conftest import RR_EXAMPLE, LiveAgent, reading

SERVICE = "neuros-otlp-test"
USER = "otlp-canary-4c1d9e"
READINGS_ROUTE = "/v1/users/{user_id}/readings"
KPIS_ROUTE = "/v1/users/{user_id}/kpis"
# A bucket line of the latency histogram with its exemplar (OpenMetrics). Label values
# are quoted strings and may hold braces: the route template "/v1/users/{user_id}/...".
_LABELS = r'(?:[^"}]|"(?:[^"\\]|\\.)*")*'
EXEMPLAR = re.compile(
    rf"^neuros_http_request_duration_seconds_bucket\{{(?P<labels>{_LABELS})\}} \S+ "
    rf'# \{{{_LABELS}?trace_id="(?P<trace_id>[0-9a-f]{{32}})"',
    re.MULTILINE,
)


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as running:
        yield running


@pytest.fixture
def traced_agent(live_agent: Callable[..., LiveAgent], sink: OtlpSink) -> LiveAgent:
    return live_agent(
        env={
            "OTEL_SDK_DISABLED": "false",
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
            # Export promptly: the test polls the sink rather than waiting out 5 s.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )


def _descendants(spans: list[ReceivedSpan], root: ReceivedSpan) -> set[str]:
    """Names of the spans below ``root`` in its trace (children, grandchildren...)."""
    below: set[str] = {root.span_id}
    names: set[str] = set()
    grew = True
    while grew:
        grew = False
        for span in spans:
            if span.parent_span_id in below and span.span_id not in below:
                below.add(span.span_id)
                names.add(span.name)
                grew = True
    return names


def _server_span(spans: list[ReceivedSpan], method: str, route: str) -> ReceivedSpan | None:
    return next(
        (s for s in spans if s.parent_span_id == "" and s.name == f"{method} {route}"), None
    )


def test_spans_reach_a_real_otlp_receiver(traced_agent: LiveAgent, sink: OtlpSink) -> None:
    body = {"readings": [reading(rr_intervals_ms=RR_EXAMPLE, sleep_hours=6.5, resting_hr_bpm=58)]}
    with httpx.Client(base_url=traced_agent.url, timeout=10) as client:
        assert client.post(f"/v1/users/{USER}/readings", json=body).status_code == 201
        assert client.get(f"/v1/users/{USER}/kpis").status_code == 200
        exposition = client.get("/metrics", headers={"Accept": "application/openmetrics-text"}).text

    spans = sink.wait_for(
        lambda got: (
            _server_span(got, "POST", READINGS_ROUTE) is not None
            and _server_span(got, "GET", KPIS_ROUTE) is not None
        ),
        timeout=15,
    )
    ingest = _server_span(spans, "POST", READINGS_ROUTE)
    read = _server_span(spans, "GET", KPIS_ROUTE)
    assert ingest is not None
    assert read is not None

    # The service name the stack's Tempo/Grafana queries select on, and the route
    # template (not the raw path) as the span's route.
    assert {s.service_name for s in spans} == {SERVICE}
    assert ingest.attributes.get("http.route") == READINGS_ROUTE
    assert read.attributes.get("http.route") == KPIS_ROUTE

    # Storage and KPI work show up as children of the request that caused them.
    assert {"db.write", "kpi.compute"} <= _descendants(spans, ingest)
    assert {"db.read", "kpi.compute"} <= _descendants(spans, read)

    # Nothing identifies the user: not in a span name, nor in any key or value of its
    # attributes, its resource or its events.
    assert any(span.resource for span in spans)  # the resource really was decoded
    for span in spans:
        leaks = [text for text in span.texts() if USER in text]
        assert not leaks, (span.name, leaks)

    # The latency histogram's exemplars link to traces that really arrived.
    exemplars = {m["trace_id"]: m["labels"] for m in EXEMPLAR.finditer(exposition)}
    received = {s.trace_id for s in spans}
    ingest_exemplars = [t for t, labels in exemplars.items() if 'method="POST"' in labels]
    assert ingest_exemplars, exposition
    assert ingest.trace_id in ingest_exemplars
    assert set(exemplars) <= received, set(exemplars) - received
