"""OTLP ``ExportTraceServiceRequest`` encoded by hand, in protobuf wire format.

The SDK's exporter builds a protobuf object tree per span and then serialises it: with
its batching and HTTP, ~150 µs of CPU per ingest request (3 spans) here. Writing the
bytes directly, with a service's repeated names and attribute pairs cached, costs ~2-4 µs
per span (stacktools/bench/tracing.py). Field numbers are those of opentelemetry-proto's
trace.proto, common.proto and resource.proto (checked in tests/agent/test_otlp_encoding.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.trace import DEFAULT_TRACE_STATE, SpanKind
from opentelemetry.util import types as otel_types

from neuros.spans import LeanSpan, Scope

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64 = (1 << 64) - 1
_ONE_BYTE = [bytes((n,)) for n in range(128)]
_DOUBLE = struct.Struct("<d")
_FIXED64 = struct.Struct("<Q")
# Span.trace_id (1), span_id (2) and parent_span_id (4): tag and length as one big-endian
# short, then the id's bytes (a trace id as two halves).
_IDS = struct.Struct(">HQQHQ")
_IDS_WITH_PARENT = struct.Struct(">HQQHQHQ")
# Span.kind (6) as a one-byte varint, start (7) and end (8) fixed64, and flags (16), whose
# two-byte tag 0x85 0x01 is the little-endian short 0x0185, fixed32.
_FIXED = struct.Struct("<BBBQBQHI")
# Span.kind is the API's SpanKind + 1 (0 is SPAN_KIND_UNSPECIFIED). Keyed by identity:
# hashing an Enum member runs Python code.
_KIND_BY_ID = {id(kind): kind.value + 1 for kind in SpanKind}
_CACHE_LIMIT = 4096


def varint(value: int) -> bytes:
    if value < 0x80:
        return _ONE_BYTE[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    return tag + varint(len(payload)) + payload


def _string(tag: bytes, text: str) -> bytes:
    # Lone surrogates cannot be UTF-8, and a receiver rejects the whole request for one.
    return _field(tag, text.encode("utf-8", "replace"))


def any_value(value: object) -> bytes | None:
    """An ``AnyValue`` message body; None for what OTLP attributes cannot hold."""
    if isinstance(value, str):
        return _string(b"\x0a", value)
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return b"\x18" + varint(value & _UINT64)  # negatives: two's complement, 10 bytes
        return None
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = [any_value(item) for item in value]
        if any(item is None for item in items):
            return None
        array = b"".join(_field(b"\x0a", item) for item in items if item is not None)
        return _field(b"\x2a", array)  # ArrayValue.values (1)
    return None


def key_value(key: str, value: object) -> bytes | None:
    """A ``KeyValue`` message body."""
    encoded = any_value(value)
    if encoded is None:
        return None
    return _string(b"\x0a", key) + _field(b"\x12", encoded)


def attribute_fields(tag: bytes, attributes: Mapping[str, object]) -> tuple[bytes, int]:
    """Repeated KeyValue fields under ``tag``, and how many could not be encoded."""
    parts: list[bytes] = []
    dropped = 0
    for key, value in attributes.items():
        encoded = key_value(key, value)
        if encoded is None:
            dropped += 1
        else:
            parts.append(_field(tag, encoded))
    return b"".join(parts), dropped


def resource_field(attributes: Mapping[str, object]) -> bytes:
    """``ResourceSpans.resource`` (1)."""
    fields, _ = attribute_fields(b"\x0a", attributes)
    return _field(b"\x0a", fields)


def scope_header(scope: Scope) -> bytes:
    """``ScopeSpans.scope`` (1): the InstrumentationScope message."""
    body = _string(b"\x0a", scope.name)
    if scope.version:
        body += _string(b"\x12", scope.version)
    return _field(b"\x0a", body)


def scope_trailer(scope: Scope) -> bytes:
    """``ScopeSpans.schema_url`` (3), written after the spans."""
    return _string(b"\x1a", scope.schema_url) if scope.schema_url else b""


class TraceEncoder:
    """Encodes batches of ended spans. Not thread-safe: one per exporter thread.

    Spans of one service repeat their names and attribute pairs (route templates,
    status codes), so their encodings are cached, up to a bound.
    """

    def __init__(self, resource: Mapping[str, object]) -> None:
        self._resource = resource_field(resource)
        self._scopes: dict[Scope, tuple[bytes, bytes]] = {}
        self._names: dict[str, bytes] = {}
        self._pairs: dict[tuple[str, type, object], bytes | None] = {}
        self._prefixes: dict[int, bytes] = {}

    def encode(self, spans: Iterable[LeanSpan]) -> bytes:
        """An ``ExportTraceServiceRequest`` holding ``spans``, grouped by scope."""
        by_scope: dict[Scope, list[bytes]] = {}
        prefixes = self._prefixes
        for span in spans:
            encoded = self.span(span)
            group = by_scope.get(span.scope)
            if group is None:
                by_scope[span.scope] = group = []
            size = len(encoded)
            group.append(prefixes.get(size) or self._prefix(size))
            group.append(encoded)
        parts = [self._resource]
        for scope, encoded_spans in by_scope.items():
            header, trailer = self._scope(scope)
            body = header + b"".join(encoded_spans) + trailer
            parts.append(_field(b"\x12", body))  # ResourceSpans.scope_spans (2)
        return _field(b"\x0a", b"".join(parts))  # ExportTraceServiceRequest.resource_spans (1)

    def _prefix(self, size: int) -> bytes:
        """Tag and length of a ``ScopeSpans.spans`` (2) field; few sizes recur."""
        prefix = b"\x12" + varint(size)
        if len(self._prefixes) < _CACHE_LIMIT:
            self._prefixes[size] = prefix
        return prefix

    def _scope(self, scope: Scope) -> tuple[bytes, bytes]:
        cached = self._scopes.get(scope)
        if cached is None:
            cached = self._scopes[scope] = (scope_header(scope), scope_trailer(scope))
        return cached

    def span(self, span: LeanSpan) -> bytes:
        """A ``Span`` message body. Fields may come in any order on the wire: the
        fixed-size ones are packed together, two struct calls for eight fields."""
        trace_id = span.trace_id
        parts = [
            _IDS_WITH_PARENT.pack(
                0x0A10,
                trace_id >> 64,
                trace_id & _UINT64,
                0x1208,
                span.span_id,
                0x2208,
                span.parent_id,
            )
            if span.parent_id
            else _IDS.pack(0x0A10, trace_id >> 64, trace_id & _UINT64, 0x1208, span.span_id),
            _FIXED.pack(
                0x30,
                _KIND_BY_ID[id(span.kind)],
                0x39,
                span.start_ns,
                0x41,
                span.end_ns,
                0x0185,
                span.flags,
            ),
            self._names.get(span.name) or self._name(span.name),
        ]
        dropped = 0
        pairs = self._pairs
        for key, value in span.attributes.items():
            try:
                cache_key = (key, type(value), value)
                encoded = pairs[cache_key]
            except KeyError:
                encoded = self._pair(cache_key, key, value)
            except TypeError:  # an unhashable value (a list)
                kv = key_value(key, value)
                encoded = None if kv is None else _field(b"\x4a", kv)
            if encoded is None:
                dropped += 1
            else:
                parts.append(encoded)
        if dropped:
            parts.append(b"\x50" + varint(dropped))  # dropped_attributes_count (10)
        if span.trace_state is not DEFAULT_TRACE_STATE and span.trace_state:
            parts.append(_string(b"\x1a", span.trace_state.to_header()))
        if span.events:
            for timestamp, event_name, event_attributes in span.events:
                parts.append(_field(b"\x5a", _event(timestamp, event_name, event_attributes)))
        if span.dropped_links:
            parts.append(b"\x70" + varint(span.dropped_links))  # dropped_links_count (14)
        if span.status_code:
            status = b"\x18" + varint(span.status_code)  # Status.code (3)
            if span.status_message:
                status = _string(b"\x12", span.status_message) + status  # Status.message (2)
            parts.append(_field(b"\x7a", status))
        return b"".join(parts)

    def _name(self, name: str) -> bytes:
        encoded = _string(b"\x2a", name)  # Span.name (5)
        if len(self._names) < _CACHE_LIMIT:
            self._names[name] = encoded
        return encoded

    def _pair(self, cache_key: tuple[str, type, object], key: str, value: object) -> bytes | None:
        kv = key_value(key, value)
        encoded = None if kv is None else _field(b"\x4a", kv)  # Span.attributes (9)
        # Not floats: -0.0 == 0.0 would share an entry, and measurements rarely repeat.
        if type(value) is not float:
            if len(self._pairs) >= _CACHE_LIMIT:
                self._pairs.clear()
            self._pairs[cache_key] = encoded
        return encoded


def _event(timestamp: int, name: str, attributes: Mapping[str, otel_types.AnyValue]) -> bytes:
    """A ``Span.Event`` message body: time (1), name (2), attributes (3), dropped (4)."""
    fields, dropped = attribute_fields(b"\x1a", attributes)
    body = b"\x09" + _FIXED64.pack(timestamp) + _string(b"\x12", name) + fields
    return body + (b"\x20" + varint(dropped) if dropped else b"")
