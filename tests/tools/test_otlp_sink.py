"""The OTLP sink decodes what the real OTel SDK exporter sends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from stacktools.otlp_sink import OtlpSink, ReceivedSpan
from stacktools.paths import REPO_ROOT


def emit_two_spans(sink: OtlpSink, compression: Compression = Compression.NoCompression) -> None:
    """A parent and a child span, through a real SDK provider and OTLP/HTTP exporter."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "sink-test"}))
    exporter = OTLPSpanExporter(endpoint=sink.traces_url, compression=compression, timeout=5)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.otlp_sink")
    with tracer.start_as_current_span("parent", kind=trace.SpanKind.SERVER) as parent:
        parent.set_attribute("http.route", "/v1/users/{user_id}/readings")
        parent.set_attribute("http.status_code", 201)
        with tracer.start_as_current_span("child") as child:
            child.set_attribute("db.system", "sqlite")
            child.set_attribute("neuros.ok", True)
            child.set_attribute("neuros.ratio", 0.5)
            child.set_attribute("neuros.tags", ["a", "b"])
            child.add_event("retry", {"attempt": 2})
    provider.shutdown()


def by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {span.name: span for span in spans}


@pytest.mark.parametrize(
    "compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"]
)
def test_decodes_spans_from_the_sdk_exporter(sink: OtlpSink, compression: Compression) -> None:
    emit_two_spans(sink, compression)

    spans = by_name(sink.wait_for(lambda spans: len(spans) >= 2, timeout=10))

    parent, child = spans["parent"], spans["child"]
    assert parent.service_name == child.service_name == "sink-test"
    assert len(parent.trace_id) == 32
    assert int(parent.trace_id, 16) != 0
    assert child.trace_id == parent.trace_id
    assert len(parent.span_id) == len(child.span_id) == 16
    assert child.parent_span_id == parent.span_id
    assert parent.parent_span_id == ""
    assert parent.attributes == {
        "http.route": "/v1/users/{user_id}/readings",
        "http.status_code": "201",
    }
    assert child.attributes == {
        "db.system": "sqlite",
        "neuros.ok": "true",
        "neuros.ratio": "0.5",
        "neuros.tags": "[a, b]",
    }
    assert parent.resource["service.name"] == "sink-test"
    assert parent.events == ()
    assert child.events == (("retry", {"attempt": "2"}),)
    assert "retry=" in child.texts()
    assert "attempt=2" in child.texts()
    assert sink.stats() == (2, 2)  # SimpleSpanProcessor: one request per span


def test_spans_returns_a_copy(sink: OtlpSink) -> None:
    emit_two_spans(sink)
    first = sink.wait_for(lambda spans: len(spans) == 2)

    first.clear()

    assert len(sink.spans()) == 2


def test_wait_for_times_out(sink: OtlpSink) -> None:
    with pytest.raises(TimeoutError, match="0 spans received"):
        sink.wait_for(lambda spans: bool(spans), timeout=0.2)


def test_max_spans_keeps_the_newest_and_counts_all() -> None:
    with OtlpSink(max_spans=1) as sink:
        emit_two_spans(sink)
        sink.wait_for(lambda spans: sink.stats()[1] == 2)

        assert [span.name for span in sink.spans()] == ["parent"]  # the child ends first


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_answers_an_empty_export_response(sink: OtlpSink) -> None:
    status, body = post(sink.traces_url, b"", "application/x-protobuf")

    assert status == 200
    ExportTraceServiceResponse().ParseFromString(body)
    assert sink.stats() == (1, 0)


@pytest.mark.parametrize(
    ("path", "body", "content_type", "expected"),
    [
        ("/v1/traces", b"{}", "application/json", 415),
        ("/v1/traces", b"\xff\xff\xff", "application/x-protobuf", 400),
        ("/v1/metrics", b"", "application/x-protobuf", 404),
    ],
    ids=["json", "garbage", "wrong-path"],
)
def test_refuses_what_it_cannot_decode(
    sink: OtlpSink, path: str, body: bytes, content_type: str, expected: int
) -> None:
    status, _ = post(f"{sink.endpoint}{path}", body, content_type)

    assert status == expected
    assert sink.spans() == []


def test_command_line_receives_and_reports() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "stacktools.otlp_sink", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        assert first_line.startswith("otlp_sink: listening on http://127.0.0.1:"), first_line
        endpoint = first_line.rsplit(" ", 1)[1].strip()

        exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=5)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        with provider.get_tracer("cli").start_as_current_span("one"):
            pass
        provider.shutdown()
        with urllib.request.urlopen(f"{endpoint}/stats", timeout=5) as response:
            assert json.load(response) == {"requests": 1, "spans": 1}

        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, err
    assert "received 1 spans in 1 requests" in out
