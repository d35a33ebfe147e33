"""The lean tracer and its OTLP exporter: wire format, sampling, buffering, shutdown.

Every encoding is checked by parsing it with opentelemetry-proto's own classes, as a
collector would.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import propagate, trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanKind, StatusCode
from opentelemetry.util import types as otel_types
from prometheus_client import CollectorRegistry

from neuros.auth.admin_token import bearer
from neuros.auth.tokens import TOKEN_PREFIX, digest
from neuros.config import Settings
from neuros.main import create_app
from neuros.otlp_encoding import TraceEncoder, any_value
from neuros.otlp_export import OtlpHttpExporter
from neuros.spans import LeanSpan, LeanTracerProvider
from neuros.trace_config import Sampler, resource_from_env, sampler_from_env
from neuros.tracing import TracingConfigError, build_tracer_provider, shutdown_tracing
from tests.support.agent import add_token, reading
from tests.support.spans import RESOURCE, lean

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def decode(spans: list[LeanSpan]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(TraceEncoder(RESOURCE).encode(spans))
    return request


def only_span(request: ExportTraceServiceRequest) -> Span:
    [resource_spans] = request.resource_spans
    [scope_spans] = resource_spans.scope_spans
    [span] = scope_spans.spans
    assert isinstance(span, Span)
    return span


def attributes(kvs: object) -> dict[str, object]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}  # type: ignore[attr-defined]


# --- wire format ------------------------------------------------------------------

# (message, field, number, protobuf type) for every field the encoder writes.
WRITTEN_FIELDS = [
    (ExportTraceServiceRequest, "resource_spans", 1, "TYPE_MESSAGE"),
    (ResourceSpans, "resource", 1, "TYPE_MESSAGE"),
    (ResourceSpans, "scope_spans", 2, "TYPE_MESSAGE"),
    (Resource, "attributes", 1, "TYPE_MESSAGE"),
    (ScopeSpans, "scope", 1, "TYPE_MESSAGE"),
    (ScopeSpans, "spans", 2, "TYPE_MESSAGE"),
    (ScopeSpans, "schema_url", 3, "TYPE_STRING"),
    (InstrumentationScope, "name", 1, "TYPE_STRING"),
    (InstrumentationScope, "version", 2, "TYPE_STRING"),
    (Span, "trace_id", 1, "TYPE_BYTES"),
    (Span, "span_id", 2, "TYPE_BYTES"),
    (Span, "trace_state", 3, "TYPE_STRING"),
    (Span, "parent_span_id", 4, "TYPE_BYTES"),
    (Span, "name", 5, "TYPE_STRING"),
    (Span, "kind", 6, "TYPE_ENUM"),
    (Span, "start_time_unix_nano", 7, "TYPE_FIXED64"),
    (Span, "end_time_unix_nano", 8, "TYPE_FIXED64"),
    (Span, "attributes", 9, "TYPE_MESSAGE"),
    (Span, "dropped_attributes_count", 10, "TYPE_UINT32"),
    (Span, "events", 11, "TYPE_MESSAGE"),
    (Span, "dropped_links_count", 14, "TYPE_UINT32"),
    (Span, "status", 15, "TYPE_MESSAGE"),
    (Span, "flags", 16, "TYPE_FIXED32"),
    (Span.Event, "time_unix_nano", 1, "TYPE_FIXED64"),
    (Span.Event, "name", 2, "TYPE_STRING"),
    (Span.Event, "attributes", 3, "TYPE_MESSAGE"),
    (Span.Event, "dropped_attributes_count", 4, "TYPE_UINT32"),
    (Status, "message", 2, "TYPE_STRING"),
    (Status, "code", 3, "TYPE_ENUM"),
    (KeyValue, "key", 1, "TYPE_STRING"),
    (KeyValue, "value", 2, "TYPE_MESSAGE"),
    (AnyValue, "string_value", 1, "TYPE_STRING"),
    (AnyValue, "bool_value", 2, "TYPE_BOOL"),
    (AnyValue, "int_value", 3, "TYPE_INT64"),
    (AnyValue, "double_value", 4, "TYPE_DOUBLE"),
    (AnyValue, "array_value", 5, "TYPE_MESSAGE"),
]


@pytest.mark.parametrize(("message", "name", "number", "kind"), WRITTEN_FIELDS)
def test_field_numbers_match_the_installed_schema(
    message: type, name: str, number: int, kind: str
) -> None:
    descriptor = message.DESCRIPTOR.fields_by_name[name]  # type: ignore[attr-defined]
    assert descriptor.number == number
    assert descriptor.type == getattr(descriptor, kind)


def test_every_span_field_round_trips() -> None:
    provider, collected = lean()
    tracer = provider.get_tracer("neuros.test", "1.2.3", "https://opentelemetry.io/schemas/1.26")
    parent = propagate.extract({"traceparent": TRACEPARENT, "tracestate": "vendor=opaque"})
    server = tracer.start_span(
        "GET", context=parent, kind=SpanKind.SERVER, attributes={"http.request.method": "GET"}
    )
    server.set_attributes({"flag": True, "count": -7, "ratio": 0.25, "tags": ["a", "b"]})
    server.set_attribute("huge", 1 << 64)  # no int64: dropped and counted
    server.add_event("retry", {"attempt": 2}, timestamp=1_700_000_000_000_000_001)
    server.record_exception(ValueError("bad input"), timestamp=1_700_000_000_000_000_002)
    server.set_status(StatusCode.ERROR, "it failed")
    server.update_name("GET /v1/things/{id}")
    server.end(end_time=1_700_000_000_000_000_009)
    child = tracer.start_span("child", context=trace.set_span_in_context(server), start_time=5)
    child.end(end_time=6)

    request = decode(collected.spans)

    [resource_spans] = request.resource_spans
    assert attributes(resource_spans.resource.attributes) == RESOURCE
    [scope_spans] = resource_spans.scope_spans
    assert scope_spans.scope.name == "neuros.test"
    assert scope_spans.scope.version == "1.2.3"
    assert scope_spans.schema_url == "https://opentelemetry.io/schemas/1.26"
    first, second = scope_spans.spans
    assert first.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert first.parent_span_id.hex() == "00f067aa0ba902b7"
    assert first.span_id == server.get_span_context().span_id.to_bytes(8, "big")
    assert first.trace_state == "vendor=opaque"
    assert first.name == "GET /v1/things/{id}"
    assert first.kind == Span.SPAN_KIND_SERVER
    assert first.start_time_unix_nano == collected.spans[0].start_ns > 0
    assert first.end_time_unix_nano == 1_700_000_000_000_000_009
    assert attributes(first.attributes) == {
        "http.request.method": "GET",
        "flag": True,
        "count": -7,
        "ratio": 0.25,
        "tags": first.attributes[4].value.array_value,
    }
    assert [v.string_value for v in first.attributes[4].value.array_value.values] == ["a", "b"]
    assert first.dropped_attributes_count == 1
    assert [(e.name, e.time_unix_nano, attributes(e.attributes)) for e in first.events] == [
        ("retry", 1_700_000_000_000_000_001, {"attempt": 2}),
        (
            "exception",
            1_700_000_000_000_000_002,
            {"exception.type": "ValueError", "exception.message": "bad input"},
        ),
    ]
    assert first.status.code == Status.STATUS_CODE_ERROR
    assert first.status.message == "it failed"
    assert first.flags == 0x301  # sampled, parent known to be remote
    assert second.trace_id == first.trace_id
    assert second.parent_span_id == first.span_id
    assert second.kind == Span.SPAN_KIND_INTERNAL
    assert (second.start_time_unix_nano, second.end_time_unix_nano) == (5, 6)
    assert second.flags == 0x101  # sampled, local parent
    assert not second.HasField("status")


def test_spans_are_grouped_by_scope() -> None:
    provider, collected = lean()
    for name in ("neuros.http", "neuros", "neuros.http"):
        provider.get_tracer(name).start_span(f"from {name}").end()

    [resource_spans] = decode(collected.spans).resource_spans

    assert {s.scope.name: [span.name for span in s.spans] for s in resource_spans.scope_spans} == {
        "neuros.http": ["from neuros.http", "from neuros.http"],
        "neuros": ["from neuros"],
    }


@pytest.mark.parametrize("kind", list(SpanKind))
def test_span_kinds(kind: SpanKind) -> None:
    provider, collected = lean()
    provider.get_tracer("t").start_span("s", kind=kind).end()

    assert only_span(decode(collected.spans)).kind == Span.SpanKind.Value(f"SPAN_KIND_{kind.name}")


attribute_values = (
    st.text()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
    | st.sampled_from([-(1 << 63), -1, 0, 127, 128, (1 << 63) - 1])
    | st.floats()
    | st.lists(st.text(), max_size=3)
    | st.lists(st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1), max_size=3)
)


def _same(decoded: AnyValue, value: object) -> bool:
    which = decoded.WhichOneof("value")
    if isinstance(value, list):
        items = decoded.array_value.values
        return which == "array_value" and len(items) == len(value) and all(map(_same, items, value))
    got = getattr(decoded, which) if which else None
    if isinstance(value, float):
        # Bit for bit: NaN and -0.0 too.
        return which == "double_value" and struct.pack("<d", got) == struct.pack("<d", value)
    return type(got) is type(value) and got == value


@given(st.dictionaries(st.text(min_size=1), attribute_values, max_size=6))
def test_attribute_values_round_trip(values: dict[str, otel_types.AnyValue]) -> None:
    provider, collected = lean()
    provider.get_tracer("t").start_span("s", attributes=values).end()

    span = only_span(decode(collected.spans))

    assert [kv.key for kv in span.attributes] == list(values)
    for kv in span.attributes:
        assert _same(kv.value, values[kv.key]), (kv.key, values[kv.key], kv.value)
    assert span.dropped_attributes_count == 0


@given(st.text(), st.text())
def test_names_and_event_text_round_trip(name: str, message: str) -> None:
    provider, collected = lean()
    span = provider.get_tracer("t").start_span(name)
    span.record_exception(RuntimeError(message))
    span.end()

    decoded = only_span(decode(collected.spans))

    assert decoded.name == name
    assert attributes(decoded.events[0].attributes)["exception.message"] == message


def test_lone_surrogates_do_not_break_the_request() -> None:
    provider, collected = lean()
    provider.get_tracer("t").start_span("s", attributes={"k": "a\ud800b"}).end()

    assert attributes(only_span(decode(collected.spans)).attributes) == {"k": "a?b"}


@pytest.mark.parametrize("value", [1 << 63, -(1 << 63) - 1, None, b"bytes", {"a": 1}, [1, None]])
def test_values_otlp_cannot_hold_are_dropped_and_counted(value: object) -> None:
    assert any_value(value) is None
    provider, collected = lean()
    provider.get_tracer("t").start_span("s", attributes={"bad": value, "good": 1}).end()  # type: ignore[dict-item]

    span = only_span(decode(collected.spans))

    assert attributes(span.attributes) == {"good": 1}
    assert span.dropped_attributes_count == 1


def test_a_repeated_pair_is_encoded_once_and_reused() -> None:
    provider, collected = lean()
    tracer = provider.get_tracer("t")
    for status in (201, 201, 500, 201):
        tracer.start_span("s", attributes={"http.response.status_code": status}).end()

    spans = decode(collected.spans).resource_spans[0].scope_spans[0].spans

    assert [attributes(s.attributes)["http.response.status_code"] for s in spans] == [
        201,
        201,
        500,
        201,
    ]


# --- span behaviour ---------------------------------------------------------------


def test_status_follows_the_api_rules() -> None:
    provider, _ = lean()
    span = provider.get_tracer("t").start_span("s")
    assert isinstance(span, LeanSpan)
    span.set_status(StatusCode.OK, "ignored for OK")
    assert (span.status_code, span.status_message) == (StatusCode.OK.value, "")
    span.set_status(StatusCode.ERROR, "too late")  # OK is final
    assert span.status_code == StatusCode.OK.value

    other = provider.get_tracer("t").start_span("s")
    assert isinstance(other, LeanSpan)
    other.set_status(trace.Status(StatusCode.ERROR, "boom"))
    other.set_status(StatusCode.UNSET)  # changes nothing
    assert (other.status_code, other.status_message) == (StatusCode.ERROR.value, "boom")


def test_an_ended_span_is_exported_once_and_frozen() -> None:
    provider, collected = lean()
    span = provider.get_tracer("t").start_span("s")
    span.end()
    span.end()
    span.set_attribute("late", 1)
    span.update_name("renamed")
    span.add_event("late")

    assert collected.spans == [span]
    assert not span.is_recording()
    assert isinstance(span, LeanSpan)
    assert (span.name, span.attributes, span.events) == ("s", {}, None)


def test_current_span_nests_and_records_escaping_errors() -> None:
    provider, collected = lean()
    tracer = provider.get_tracer("t")
    current: list[trace.Span] = []

    def work() -> None:
        with tracer.start_as_current_span("outer") as outer:
            current.append(outer)
            with tracer.start_as_current_span("inner") as inner:
                current.extend((inner, trace.get_current_span()))
            current.append(trace.get_current_span())
            raise KeyError("gone")

    with pytest.raises(KeyError):
        work()
    assert trace.get_current_span() is trace.INVALID_SPAN
    outer, inner, current_inner, current_outer = current
    assert (current_inner, current_outer) == (inner, outer)

    inner_span, outer_span = collected.spans
    assert inner_span.parent_id == outer_span.span_id
    assert inner_span.trace_id == outer_span.trace_id
    assert outer_span.status_code == StatusCode.ERROR.value
    assert outer_span.status_message == "KeyError: 'gone'"
    assert outer_span.events is not None
    assert [name for _, name, _ in outer_span.events] == ["exception"]


def test_start_as_current_span_decorates_sync_and_async_functions() -> None:
    provider, collected = lean()
    tracer = provider.get_tracer("t")

    @tracer.start_as_current_span("sync")
    def work() -> int:
        return trace.get_current_span().get_span_context().span_id

    @tracer.start_as_current_span("async")
    async def async_work() -> int:
        await asyncio.sleep(0)
        return trace.get_current_span().get_span_context().span_id

    ids = [work(), work(), asyncio.run(async_work())]

    assert [span.name for span in collected.spans] == ["sync", "sync", "async"]
    assert ids == [span.span_id for span in collected.spans]
    assert len(set(ids)) == 3


# --- sampling ---------------------------------------------------------------------

LOW_TRACE_ID = 0x0000_0000_0000_0001_0000_0000_0000_0001  # low 64 bits tiny: sampled at 0.5
HIGH_TRACE_ID = 0x0000_0000_0000_0001_FFFF_FFFF_FFFF_FFFF  # low 64 bits huge: not sampled


def _remote_parent(trace_id: int, sampled: bool) -> trace.Span:
    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if sampled else 0)
    return NonRecordingSpan(trace.SpanContext(trace_id, 0xABC, True, flags))


@pytest.mark.parametrize(
    ("name", "root", "under_sampled", "under_unsampled"),
    [
        # Root with LOW/HIGH trace ids, then under a remote parent (HIGH trace id)
        # that was sampled / not sampled.
        ("always_on", (True, True), True, True),
        ("always_off", (False, False), False, False),
        ("traceidratio", (True, False), False, False),
        ("parentbased_always_on", (True, True), True, False),
        ("parentbased_always_off", (False, False), True, False),
        ("parentbased_traceidratio", (True, False), True, False),
    ],
)
def test_samplers(
    name: str, root: tuple[bool, bool], under_sampled: bool, under_unsampled: bool
) -> None:
    sampler = sampler_from_env({"OTEL_TRACES_SAMPLER": name, "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert sampler.name == name
    assert (
        sampler.should_sample(None, LOW_TRACE_ID),
        sampler.should_sample(None, HIGH_TRACE_ID),
    ) == root
    sampled = _remote_parent(HIGH_TRACE_ID, True).get_span_context()
    unsampled = _remote_parent(HIGH_TRACE_ID, False).get_span_context()
    assert sampler.should_sample(sampled, HIGH_TRACE_ID) is under_sampled
    assert sampler.should_sample(unsampled, HIGH_TRACE_ID) is under_unsampled


def test_ratio_samples_about_its_share_of_new_traces() -> None:
    provider, collected = lean("traceidratio", "0.25")
    tracer = provider.get_tracer("t")
    for _ in range(4000):
        tracer.start_span("s").end()

    assert 800 < len(collected.spans) < 1200


def test_an_unsampled_span_still_propagates() -> None:
    provider, collected = lean("parentbased_always_off")
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("root") as root:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        child = tracer.start_span("child")

    assert isinstance(root, NonRecordingSpan)
    assert not root.is_recording()
    context = root.get_span_context()
    assert context.is_valid
    assert not context.trace_flags.sampled
    assert carrier["traceparent"] == f"00-{context.trace_id:032x}-{context.span_id:016x}-00"
    assert child.get_span_context().trace_id == context.trace_id
    assert collected.spans == []


def test_a_sampled_remote_parent_is_followed_by_default() -> None:
    provider, collected = lean("parentbased_always_on")
    parent = propagate.extract({"traceparent": TRACEPARENT})
    provider.get_tracer("t").start_span("s", context=parent).end()

    [span] = collected.spans
    assert f"{span.trace_id:032x}" == "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, Sampler("parentbased_always_on", True, 1 << 64)),
        ({"OTEL_TRACES_SAMPLER": "nonsense"}, Sampler("parentbased_always_on", True, 1 << 64)),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            Sampler("traceidratio", False, 1 << 64),
        ),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"},
            Sampler("traceidratio", False, 0),
        ),
    ],
)
def test_sampler_configuration(env: dict[str, str], expected: Sampler) -> None:
    assert sampler_from_env(env) == expected


# --- resource ---------------------------------------------------------------------


def test_resource_from_the_environment() -> None:
    resource = resource_from_env(
        {
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=ignored, team=core%2Cops,broken,",
            "OTEL_SERVICE_NAME": "neuros-eu",
        }
    )
    assert resource["service.name"] == "neuros-eu"
    assert resource["team"] == "core,ops"
    assert "broken" not in resource
    assert resource["telemetry.sdk.language"] == "python"
    assert resource["telemetry.sdk.name"] == "neuros.spans"
    assert resource["telemetry.sdk.version"]
    assert resource_from_env({})["service.name"] == "neuros"
    assert resource_from_env({"OTEL_RESOURCE_ATTRIBUTES": "service.name=x"})["service.name"] == "x"


# --- wiring -----------------------------------------------------------------------


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    return monkeypatch


def test_default_provider_is_the_lean_one_with_otlp(otel_env: pytest.MonkeyPatch) -> None:
    provider = build_tracer_provider()
    assert isinstance(provider, LeanTracerProvider)
    assert isinstance(provider.exporter, OtlpHttpExporter)
    assert provider.exporter.config.url == "http://127.0.0.1:1/v1/traces"
    assert shutdown_tracing(provider, timeout=2)


def test_none_exporter_still_samples_for_propagation(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_TRACES_EXPORTER", "none")
    provider = build_tracer_provider()
    assert isinstance(provider, LeanTracerProvider)
    assert provider.exporter is None
    span = provider.get_tracer("t").start_span("s")
    assert span.get_span_context().trace_flags.sampled
    span.end()
    assert shutdown_tracing(provider)


def test_console_uses_the_sdk(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = build_tracer_provider()
    assert isinstance(provider, SdkTracerProvider)
    assert shutdown_tracing(provider, timeout=2)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_TRACES_EXPORTER", "zipkin"),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "-1"),
    ],
)
def test_unsupported_settings_are_config_errors(
    otel_env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    otel_env.setenv(name, value)
    with pytest.raises(TracingConfigError):
        build_tracer_provider()


def test_disabled_means_no_provider(otel_env: pytest.MonkeyPatch) -> None:
    otel_env.setenv("OTEL_SDK_DISABLED", "true")
    assert build_tracer_provider() is None


def test_shutdown_tracing_stops_an_sdk_provider() -> None:
    provider = SdkTracerProvider()
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    assert shutdown_tracing(provider, timeout=2)
    assert shutdown_tracing(trace.NoOpTracerProvider())


def test_the_app_traces_with_the_lean_provider(tmp_path: Path) -> None:
    """The same span tree as with the SDK (tests/agent/test_tracing.py), and no user id."""
    user = "lean-canary-5e1f"
    provider, collected = lean()
    tokens_file = tmp_path / "tokens.yml"
    token = add_token(tokens_file)
    app = create_app(
        Settings(db_path=tmp_path / "neuros.db", api_tokens_file=tokens_file),
        registry=CollectorRegistry(),
        tracer_provider=provider,
    )
    with TestClient(app, headers=bearer(token)) as client:
        body = {"readings": [reading(sleep_hours=7.25)]}
        headers = {"traceparent": TRACEPARENT}
        assert client.post(f"/v1/users/{user}/readings", json=body).status_code == 201
        assert client.get(f"/v1/users/{user}/kpis", headers=headers).status_code == 200
        assert client.get("/health").status_code == 200

    request = decode(collected.spans)
    spans = [s for ss in request.resource_spans[0].scope_spans for s in ss.spans]

    def child(parent: Span, name: str) -> Span:
        [found] = [s for s in spans if s.parent_span_id == parent.span_id and s.name == name]
        assert isinstance(found, Span)
        assert found.trace_id == parent.trace_id
        return found

    [server] = [s for s in spans if s.name == "POST /v1/users/{user_id}/readings"]
    assert server.kind == Span.SPAN_KIND_SERVER
    assert server.parent_span_id == b""
    child(child(server, "db.write"), "kpi.compute")
    [read] = [s for s in spans if s.name == "GET /v1/users/{user_id}/kpis"]
    assert read.trace_id.hex() == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert read.parent_span_id.hex() == "00f067aa0ba902b7"
    child(child(read, "db.read"), "kpi.compute")
    assert len(spans) == 6  # /health is not traced
    text = str(request)
    for secret in (user, "7.25", token.removeprefix(TOKEN_PREFIX), digest(token).hex()):
        assert secret not in text
