"""A tiny, real OTLP/HTTP trace receiver, for tests and benchmarks.

It accepts ``POST /v1/traces`` with ``application/x-protobuf`` (optionally gzip),
decodes the ``ExportTraceServiceRequest`` and keeps every span as a plain
:class:`ReceivedSpan`. ``GET /stats`` answers ``{"requests": N, "spans": M}``.

As a library::

    with OtlpSink() as sink:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
        ...
        spans = sink.wait_for(lambda spans: len(spans) >= 3, timeout=10)

As a program (prints ``otlp_sink: listening on http://127.0.0.1:PORT``, then runs
until SIGTERM or Ctrl-C and prints what it received)::

    python -m stacktools.otlp_sink --port 4318
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType

from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

TRACES_PATH = "/v1/traces"
STATS_PATH = "/stats"
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
# Far above what an SDK batch holds (512 spans by default); refuses garbage early.
MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One decoded span. Ids are lowercase hex; ``parent_span_id`` is "" for a root.

    ``resource`` holds the resource attributes the span was sent with, ``events`` each
    event's name and attributes: everything a trace store keeps about the span.
    """

    service_name: str
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, str]
    resource: dict[str, str]
    events: tuple[tuple[str, dict[str, str]], ...]

    def texts(self) -> list[str]:
        """Every name, key and value of the span as text, for privacy checks."""
        pairs = [*self.attributes.items(), *self.resource.items()]
        for event_name, event_attributes in self.events:
            pairs.append((event_name, ""))
            pairs.extend(event_attributes.items())
        return [self.name, *(f"{key}={value}" for key, value in pairs)]


def flatten_value(value: AnyValue) -> str:
    """An attribute value as text: booleans as true/false, arrays as [a, b]."""
    match value.WhichOneof("value"):
        case "string_value":
            return value.string_value
        case "bool_value":
            return "true" if value.bool_value else "false"
        case "int_value":
            return str(value.int_value)
        case "double_value":
            return repr(value.double_value)
        case "bytes_value":
            return value.bytes_value.hex()
        case "array_value":
            return "[" + ", ".join(flatten_value(v) for v in value.array_value.values) + "]"
        case "kvlist_value":
            items = (f"{kv.key}: {flatten_value(kv.value)}" for kv in value.kvlist_value.values)
            return "{" + ", ".join(items) + "}"
        case _:
            return ""


def flatten_attributes(attributes: Iterable[KeyValue]) -> dict[str, str]:
    return {kv.key: flatten_value(kv.value) for kv in attributes}


def decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = flatten_attributes(resource_spans.resource.attributes)
        service_name = resource.get("service.name", "")
        for scope_spans in resource_spans.scope_spans:
            spans.extend(
                ReceivedSpan(
                    service_name=service_name,
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    attributes=flatten_attributes(span.attributes),
                    resource=resource,
                    events=tuple(
                        (event.name, flatten_attributes(event.attributes)) for event in span.events
                    ),
                )
                for span in scope_spans.spans
            )
    return spans


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Many exporters may connect at once; the default backlog of 5 is for toys.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sink: OtlpSink) -> None:
        super().__init__(address, _Handler)
        self.sink = sink


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive: the SDK exporter reuses one connection for every batch.
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != TRACES_PATH:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self._reply(HTTPStatus.LENGTH_REQUIRED, b"content-length required\n", "text/plain")
            return
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"too large\n", "text/plain")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != PROTOBUF_CONTENT_TYPE:
            self._reply(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                f"only {PROTOBUF_CONTENT_TYPE} is supported\n".encode(),
                "text/plain",
            )
            return
        try:
            if self.headers.get("Content-Encoding", "").strip().lower() == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
        except (OSError, EOFError, zlib.error, DecodeError) as exc:
            self._reply(HTTPStatus.BAD_REQUEST, f"undecodable body: {exc}\n".encode(), "text/plain")
            return
        self.server.sink.record(decode_spans(request))
        self._reply(
            HTTPStatus.OK, ExportTraceServiceResponse().SerializeToString(), PROTOBUF_CONTENT_TYPE
        )

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != STATS_PATH:
            self._reply(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
            return
        requests, spans = self.server.sink.stats()
        payload = json.dumps({"requests": requests, "spans": spans}).encode()
        self._reply(HTTPStatus.OK, payload, "application/json")

    def _reply(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.sink.verbose:
            super().log_message(format, *args)


class OtlpSink:
    """An OTLP/HTTP receiver on a background thread; use it as a context manager.

    ``max_spans`` bounds memory for long runs by keeping only the newest spans;
    the counters in :meth:`stats` still count every span received.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        max_spans: int | None = None,
        verbose: bool = False,
    ) -> None:
        self.verbose = verbose
        self._spans: deque[ReceivedSpan] = deque(maxlen=max_spans)
        self._requests = 0
        self._span_total = 0
        self._changed = threading.Condition()
        self._server = _Server((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    @property
    def endpoint(self) -> str:
        """Base URL, as ``OTEL_EXPORTER_OTLP_ENDPOINT`` wants it (no ``/v1/traces``)."""
        host = self._server.server_address[0]
        text = host.decode() if isinstance(host, bytes) else host
        return f"http://{text}:{self.port}"

    @property
    def traces_url(self) -> str:
        return f"{self.endpoint}{TRACES_PATH}"

    def start(self) -> OtlpSink:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="otlp-sink",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def record(self, spans: Sequence[ReceivedSpan]) -> None:
        with self._changed:
            self._requests += 1
            self._span_total += len(spans)
            self._spans.extend(spans)
            self._changed.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        """A copy of the spans received so far, oldest first."""
        with self._changed:
            return list(self._spans)

    def stats(self) -> tuple[int, int]:
        """(export requests, spans) received since start."""
        with self._changed:
            return self._requests, self._span_total

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()

    def wait_for(
        self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 10.0
    ) -> list[ReceivedSpan]:
        """Block until ``predicate(spans)`` holds and return those spans.

        Re-checked on every export received, and at least every 50 ms, until
        ``timeout`` seconds have passed; then raises :class:`TimeoutError`.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                snapshot = list(self._spans)
                if predicate(snapshot):
                    return snapshot
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"OTLP sink: condition not met within {timeout}s "
                        f"({len(snapshot)} spans received)"
                    )
                self._changed.wait(min(remaining, 0.05))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools.otlp_sink", description="Receive OTLP/HTTP traces."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=4318, help="port, 0 for any free one (4318)")
    parser.add_argument(
        "--max-spans",
        type=int,
        default=10_000,
        help="spans kept in memory, newest first; counters count all (10000)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sink = OtlpSink(args.port, args.host, max_spans=args.max_spans, verbose=args.verbose)
    except OSError as exc:
        print(f"otlp_sink: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    with sink:
        print(f"otlp_sink: listening on {sink.endpoint}", flush=True)
        while not stop.wait(0.5):
            pass
    requests, spans = sink.stats()
    print(f"otlp_sink: received {spans} spans in {requests} requests", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
