"""The deployed agent (a real uvicorn process) exports its traces over OTLP/HTTP.

The receiver is ``stacktools/otlp_sink.py``: a real HTTP server in this process that
decodes the protobuf with ``opentelemetry-proto``, as the collector's OTLP receiver
does. What reaches it is what the collector, and then Tempo, would store. The
exporter's own behaviour (buffering, retries, shutdown, configuration) is tested
against small local servers below.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from neuros.auth.tokens import TOKEN_PREFIX, digest
from neuros.otlp_export import ExportConfig, ExportConfigError, OtlpHttpExporter
from neuros.spans import LeanSpan
from stacktools.otlp_sink import OtlpSink, ReceivedSpan
from tests.support.agent import RR_EXAMPLE, reading
from tests.support.processes import LiveAgent, free_port
from tests.support.spans import RESOURCE, lean

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


def _child(spans: list[ReceivedSpan], parent: ReceivedSpan, name: str) -> ReceivedSpan:
    """The one span named ``name`` directly below ``parent``, in its trace."""
    found = [s for s in spans if s.parent_span_id == parent.span_id and s.name == name]
    assert len(found) == 1, (parent.name, name, found)
    assert found[0].trace_id == parent.trace_id
    return found[0]


def _server_span(spans: list[ReceivedSpan], method: str, route: str) -> ReceivedSpan | None:
    return next(
        (s for s in spans if s.parent_span_id == "" and s.name == f"{method} {route}"), None
    )


def test_spans_reach_a_real_otlp_receiver(traced_agent: LiveAgent, sink: OtlpSink) -> None:
    body = {"readings": [reading(rr_intervals_ms=RR_EXAMPLE, sleep_hours=6.5, resting_hr_bpm=58)]}
    with traced_agent.client(timeout=10) as client:
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

    # Storage and KPI work show up as children of the request that caused them:
    # server -> db.write -> kpi.compute, all in the request's trace.
    write = _child(spans, ingest, "db.write")
    _child(spans, write, "kpi.compute")
    _child(spans, _child(spans, read, "db.read"), "kpi.compute")
    assert {"db.write", "kpi.compute"} == _descendants(spans, ingest)
    assert {"db.read", "kpi.compute"} == _descendants(spans, read)
    assert ingest.resource.get("telemetry.sdk.language") == "python"

    # Nothing identifies the user: not in a span name, nor in any key or value of its
    # attributes, its resource or its events.
    assert any(span.resource for span in spans)  # the resource really was decoded
    # Nor the caller: no token, nor its hash.
    private = (
        USER,
        traced_agent.token.removeprefix(TOKEN_PREFIX),
        digest(traced_agent.token).hex(),
    )
    for span in spans:
        leaks = [text for text in span.texts() if any(p in text for p in private)]
        assert not leaks, (span.name, leaks)

    # The latency histogram's exemplars link to traces that really arrived.
    exemplars = {m["trace_id"]: m["labels"] for m in EXEMPLAR.finditer(exposition)}
    received = {s.trace_id for s in spans}
    ingest_exemplars = [t for t, labels in exemplars.items() if 'method="POST"' in labels]
    assert ingest_exemplars, exposition
    assert ingest.trace_id in ingest_exemplars
    assert set(exemplars) <= received, set(exemplars) - received


def test_spans_are_flushed_when_the_agent_stops(
    live_agent: Callable[..., LiveAgent], sink: OtlpSink
) -> None:
    """Nothing is lost at a clean stop, even long before the next scheduled export."""
    agent = live_agent(
        env={
            "OTEL_SDK_DISABLED": "false",
            "OTEL_SERVICE_NAME": SERVICE,
            "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        }
    )
    with agent.client(timeout=10) as client:
        assert client.get(f"/v1/users/{USER}/kpis").status_code == 404
    assert sink.spans() == []

    agent.stop()

    assert agent.process is not None
    assert agent.process.returncode == 0
    spans = sink.wait_for(lambda got: _server_span(got, "GET", KPIS_ROUTE) is not None, timeout=5)
    assert {s.name for s in spans} == {f"GET {KPIS_ROUTE}", "db.read"}


# --- exporter ---------------------------------------------------------------------


def dead_endpoint() -> str:
    """A local port nothing listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}/v1/traces"


def make_spans(count: int) -> list[LeanSpan]:
    provider, collected = lean()
    for _ in range(count):
        provider.get_tracer("t").start_span("s").end()
    return collected.spans


def test_a_full_buffer_drops_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    config = ExportConfig(
        url=dead_endpoint(), timeout=0.2, schedule_delay=3600, max_queue_size=4, max_batch_size=1000
    )
    exporter = OtlpHttpExporter(config, RESOURCE)
    with caplog.at_level(logging.WARNING, logger="neuros.otlp_export"):
        for span in make_spans(10):
            exporter.submit(span)
        assert exporter.dropped_spans == 6
        exporter.force_flush(timeout=5)  # the export fails; the drops are reported
        for span in make_spans(5):
            exporter.submit(span)
        assert exporter.dropped_spans == 7
        assert exporter.shutdown(timeout=5)
    drops = [r.getMessage() for r in caplog.records if "buffer full" in r.getMessage()]
    assert drops == ["span buffer full: 6 spans dropped (6 in all)"]  # once a minute at most
    assert exporter.failed_spans == 8  # the collector never answered


def test_shutdown_with_a_dead_endpoint_ends_within_its_timeout() -> None:
    exporter = OtlpHttpExporter(ExportConfig(url=dead_endpoint()), RESOURCE)
    for span in make_spans(600):
        exporter.submit(span)

    start = time.monotonic()
    assert exporter.shutdown(timeout=2)
    assert time.monotonic() - start < 2
    assert exporter.failed_spans + exporter.exported_spans == 600
    exporter.submit(make_spans(1)[0])  # after shutdown: dropped, no error
    assert exporter.dropped_spans == 1


def test_shutdown_with_a_silent_endpoint_is_bounded() -> None:
    """A collector that accepts the connection and never answers."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1/traces"
        exporter = OtlpHttpExporter(ExportConfig(url=url), RESOURCE)
        for span in make_spans(3):
            exporter.submit(span)

        start = time.monotonic()
        exporter.shutdown(timeout=1)
        assert time.monotonic() - start < 1.5


class Collector(BaseHTTPRequestHandler):
    """Answers with the statuses queued in ``server.statuses``, then 200."""

    protocol_version = "HTTP/1.1"
    server: CollectorServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((dict(self.headers), request))
        status = self.server.statuses.pop(0) if self.server.statuses else HTTPStatus.OK
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(status)
        if status != HTTPStatus.TOO_MANY_REQUESTS:  # 429 waits out our own first backoff
            self.send_header("Retry-After", "0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        # Like a collector closing idle keep-alive connections, without saying so.
        self.close_connection = self.server.hang_up

    def log_message(self, format: str, *args: object) -> None:
        pass


class CollectorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, statuses: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), Collector)
        self.statuses = statuses
        self.hang_up = False
        self.received: list[tuple[dict[str, str], ExportTraceServiceRequest]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/custom/traces"


@pytest.fixture
def collector(request: pytest.FixtureRequest) -> Iterator[CollectorServer]:
    server = CollectorServer(list(getattr(request, "param", [])))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.mark.parametrize("collector", [[429, 503, 502, 504]], indirect=True)
def test_retries_throttling_and_unavailability(collector: CollectorServer) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
        "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20t0ken,x-tenant=neuros",
    }
    exporter = OtlpHttpExporter(ExportConfig.from_env(env), RESOURCE)
    for span in make_spans(3):
        exporter.submit(span)

    assert exporter.force_flush(timeout=20)
    exporter.shutdown(timeout=1)

    assert len(collector.received) == 5
    headers, request = collector.received[-1]
    assert headers["Content-Type"] == "application/x-protobuf"
    assert headers["authorization"] == "Bearer t0ken"
    assert headers["x-tenant"] == "neuros"
    assert len(request.resource_spans[0].scope_spans[0].spans) == 3
    assert exporter.exported_spans == 3


@pytest.mark.parametrize("collector", [[400]], indirect=True)
def test_a_rejected_batch_is_not_retried(collector: CollectorServer) -> None:
    exporter = OtlpHttpExporter(ExportConfig(url=collector.url), RESOURCE)
    for span in make_spans(2):
        exporter.submit(span)

    assert exporter.force_flush(timeout=5)
    exporter.shutdown(timeout=1)

    assert len(collector.received) == 1
    assert (exporter.exported_spans, exporter.failed_spans) == (0, 2)


def test_a_full_batch_is_sent_before_the_schedule_delay(collector: CollectorServer) -> None:
    config = ExportConfig(url=collector.url, schedule_delay=3600, max_batch_size=4)
    exporter = OtlpHttpExporter(config, RESOURCE)
    for span in make_spans(4):
        exporter.submit(span)

    deadline = time.monotonic() + 5
    while exporter.exported_spans < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exporter.exported_spans == 4
    exporter.shutdown(timeout=1)


def test_a_closed_keep_alive_connection_is_reopened(collector: CollectorServer) -> None:
    collector.hang_up = True
    exporter = OtlpHttpExporter(ExportConfig(url=collector.url), RESOURCE)
    for _ in range(3):
        exporter.submit(make_spans(1)[0])
        assert exporter.force_flush(timeout=5)
    exporter.shutdown(timeout=1)

    assert (exporter.exported_spans, exporter.failed_spans) == (3, 0)
    assert len(collector.received) == 3


def test_a_dead_collector_does_not_stall_the_queue() -> None:
    """Only the first batch of a round waits out its retries; the rest get one try."""
    config = ExportConfig(url=dead_endpoint(), timeout=0.5, max_batch_size=2)
    exporter = OtlpHttpExporter(config, RESOURCE)
    for span in make_spans(20):
        exporter.submit(span)

    start = time.monotonic()
    assert exporter.force_flush(timeout=5)
    assert time.monotonic() - start < 2
    assert exporter.failed_spans == 20
    assert exporter.shutdown(timeout=1)


def test_keeps_one_connection_for_many_batches() -> None:
    with OtlpSink() as sink:
        config = ExportConfig(url=sink.traces_url, max_batch_size=2)
        exporter = OtlpHttpExporter(config, RESOURCE)
        for span in make_spans(6):
            exporter.submit(span)
        assert exporter.force_flush(timeout=5)
        assert exporter.shutdown(timeout=5)
        assert sink.stats() == (3, 6)
        assert {s.service_name for s in sink.spans()} == {"encoding-test"}


@pytest.mark.parametrize(
    ("env", "url"),
    [
        ({}, "http://localhost:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"},
            "http://collector:4318/v1/traces",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://c.example/otlp",
            },
            "https://c.example/otlp",
        ),
    ],
)
def test_endpoint_configuration(env: dict[str, str], url: str) -> None:
    assert ExportConfig.from_env(env).url == url


def test_batching_configuration() -> None:
    config = ExportConfig.from_env(
        {
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
        }
    )
    assert (config.schedule_delay, config.max_queue_size, config.max_batch_size) == (0.2, 100, 100)
    assert (config.timeout, config.gzip) == (2.5, True)
    defaults = ExportConfig.from_env({})
    assert (defaults.schedule_delay, defaults.max_queue_size, defaults.max_batch_size) == (
        1.0,
        2048,
        512,
    )
    assert defaults.timeout == 10.0


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_BSP_SCHEDULE_DELAY": "soon"},
        {"OTEL_BSP_MAX_QUEUE_SIZE": "0"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"},
        {"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"},
    ],
)
def test_bad_configuration_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ExportConfigError):
        ExportConfig.from_env(env)
