"""CPU per request of full tracing: the 3 spans of an ingest plus their OTLP export.

    python -m stacktools.bench.tracing [--rounds 5] [--seconds 3] [--rate 400] [--cpu 0]

Each measurement is a fresh worker process pinned with ``taskset -c CPU`` that replays
the span calls of one ingest request (the SERVER span of
neuros/middleware/server_spans.py, then ``db.write`` and ``kpi.compute`` as
neuros/agent.py makes them, and the exemplar lookup of
neuros/middleware/request_metrics.py) after some app-like work, at ``--rate`` requests
per second.
It alternates segments with and without the spans: "spans" is the main thread's extra
CPU per request, "export" the CPU of every other thread (batching, encoding, HTTP or
gRPC, the mp feeder) plus the final flush, per request. Variants run interleaved,
``--rounds`` times each in a rotating order; the table shows medians.

Spans go to a real receiver: ``python -m stacktools.otlp_sink`` (OTLP/HTTP) on the other
CPU, and, when grpcio and opentelemetry-exporter-otlp-proto-grpc are installed, a gRPC
TraceService in this (otherwise idle) process. Every run checks that all its spans
arrived.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import math
import multiprocessing
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from typing import Any

from opentelemetry import context, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

WARMUP_REQUESTS = 300
SEGMENTS = 6  # untraced/traced pairs per measurement, so drift hits both alike
SPANS_PER_REQUEST = 3
READINGS_ROUTE = "/v1/users/{user_id}/readings"


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    needs_grpc: bool = False


VARIANTS = [
    Variant("api-noop", "API no-op tracer (reference: the calls alone)"),
    Variant("sdk-spans", "SDK spans, no export (reference)"),
    Variant("sdk-http", "(i) SDK + BSP + OTLP/HTTP, defaults (5 s / 512)"),
    Variant("sdk-http-200ms", "(ii) SDK + BSP + OTLP/HTTP, 200 ms / 2048"),
    Variant("sdk-grpc", "(iii) SDK + BSP + OTLP/gRPC, defaults", needs_grpc=True),
    Variant("sdk-mp", "(iv) SDK spans, encode+export in a 2nd process"),
    Variant("lean-spans", "lean spans, no export (reference)"),
    Variant("lean-http", "(v) lean + OTLP/HTTP, 1 s / 512 (default)"),
    Variant("lean-http-200ms", "(v) lean + OTLP/HTTP, 200 ms / 512"),
    Variant("lean-http-1s-2048", "(v) lean + OTLP/HTTP, 1 s / 2048"),
]
BY_NAME = {variant.name: variant for variant in VARIANTS}


# --- the measured work --------------------------------------------------------------


def one_request(http_tracer: trace.Tracer, tracer: trace.Tracer) -> None:
    """The span calls of one ingest request, in the app's order."""
    parent = Context()  # no traceparent header
    span = http_tracer.start_span(
        "POST",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "url.scheme": "http"},
    )
    token = context.attach(trace.set_span_in_context(span, parent))
    exemplar = trace.get_current_span().get_span_context()
    if exemplar.is_valid and exemplar.trace_flags.sampled:
        format(exemplar.trace_id, "032x")
    with tracer.start_as_current_span(
        "db.write", attributes={"db.system": "sqlite", "neuros.readings.count": 1}
    ):
        start_ns = time.time_ns()
        tracer.start_span("kpi.compute", start_time=start_ns).end(end_time=start_ns + 40_000)
    span.update_name(f"POST {READINGS_ROUTE}")
    span.set_attribute("http.route", READINGS_ROUTE)
    span.set_attribute("http.response.status_code", 201)
    span.end()
    context.detach(token)


_BODY = json.dumps(
    {
        "readings": [
            {
                "recorded_at": f"2026-11-{day:02d}T07:00:00+00:00",
                "rr_intervals_ms": [800, 810, 790, 805, 795] * 4,
                "sleep_hours": 7.25,
            }
            for day in range(1, 4)
        ]
    }
)
_DB = sqlite3.connect(":memory:", check_same_thread=False)
_DB.execute("CREATE TABLE readings (user_id TEXT, recorded_at TEXT, body TEXT)")


def app_like_work() -> None:
    """A stand-in for the rest of a request (~0.2 ms here): parse, compute, store, answer.

    Spans measured after an idle sleep alone run with cold caches and cost several
    times what they cost inside a request; measured after this, they cost what they
    add to one.
    """
    body = json.loads(_BODY)
    for item in body["readings"]:
        rr = item["rr_intervals_ms"]
        diffs = [b - a for a, b in itertools.pairwise(rr)]
        math.sqrt(sum(d * d for d in diffs) / len(diffs))
        _DB.execute("INSERT INTO readings VALUES (?, ?, ?)", ("u", item["recorded_at"], str(rr)))
    _DB.commit()
    json.dumps({"user_id": "u", "readiness": "good", "kpis": {"rmssd": 14.36, "sleep": 7.25}})


def paced(requests: int, rate: float, work: Callable[[], None]) -> None:
    """``requests`` calls of ``work`` at ``rate`` per second (0: back to back)."""
    interval = 1 / rate if rate > 0 else 0.0
    begin = time.perf_counter()
    for i in range(requests):
        work()
        if interval:
            delay = begin + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)


# --- providers ------------------------------------------------------------------------


@dataclass
class Setup:
    provider: trace.TracerProvider
    flush: Callable[[], None]
    offloaded_cpu: Callable[[], float] = lambda: 0.0


def _sdk(processor: Any | None) -> Setup:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(
        resource=Resource.create({"service.name": "bench-tracing"}), shutdown_on_exit=False
    )
    if processor is not None:
        provider.add_span_processor(processor)

    def flush() -> None:
        provider.force_flush(30_000)

    return Setup(provider, flush)


def _sdk_http(endpoint: str, delay_ms: int | None = None, batch: int | None = None) -> Setup:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
    processor = BatchSpanProcessor(
        exporter, schedule_delay_millis=delay_ms, max_export_batch_size=batch
    )
    return _sdk(processor)


def _sdk_grpc(grpc_target: str) -> Setup:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    module = importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
    exporter = module.OTLPSpanExporter(endpoint=grpc_target, insecure=True, timeout=10)
    return _sdk(BatchSpanProcessor(exporter))


def _lean(endpoint: str | None, delay: float = 1.0, batch: int = 512) -> Setup:
    from neuros.otlp_export import ExportConfig, OtlpHttpExporter
    from neuros.spans import LeanTracerProvider
    from neuros.trace_config import resource_from_env, sampler_from_env

    resource = resource_from_env({"OTEL_SERVICE_NAME": "bench-tracing"})
    exporter = None
    if endpoint is not None:
        config = ExportConfig(
            url=f"{endpoint}/v1/traces",
            schedule_delay=delay,
            max_batch_size=batch,
            max_queue_size=max(2048, batch),
        )
        exporter = OtlpHttpExporter(config, resource)
    provider = LeanTracerProvider(
        sampler=sampler_from_env({"OTEL_TRACES_SAMPLER": "always_on"}),
        resource=resource,
        exporter=exporter,
    )

    def flush() -> None:
        provider.force_flush(30)

    return Setup(provider, flush)


# --- (iv): encoding and export in a second process -----------------------------------

SpanTuple = tuple[str, int, int, int, int, int, int, dict[str, Any], str]
_FLUSH = "flush"
_STOP = "stop"


def _offload_main(
    queue: Queue[list[SpanTuple] | str], reply: Connection, endpoint: str, cpu: int
) -> None:
    """The second process: rebuild SDK spans from tuples, encode and export them."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, TraceFlags

    os.sched_setaffinity(0, {cpu})
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=10)
    resource = Resource.create({"service.name": "bench-tracing"})
    sampled = TraceFlags(TraceFlags.SAMPLED)
    scopes: dict[str, InstrumentationScope] = {}
    pending: list[ReadableSpan] = []

    def export() -> None:
        if pending:
            exporter.export(pending)
            pending.clear()

    while True:
        try:
            item = queue.get(timeout=1.0)
        except Exception:  # queue.Empty: the 1 s schedule delay passed
            export()
            continue
        if item in (_FLUSH, _STOP):
            export()
            reply.send(time.process_time())
            if item == _STOP:
                return
            continue
        assert isinstance(item, list)
        for name, trace_id, span_id, parent_id, kind, start, end, attrs, scope in item:
            pending.append(
                ReadableSpan(
                    name=name,
                    context=SpanContext(trace_id, span_id, False, sampled),
                    parent=SpanContext(trace_id, parent_id, False, sampled) if parent_id else None,
                    resource=resource,
                    attributes=attrs,
                    kind=SpanKind(kind),
                    start_time=start,
                    end_time=end,
                    instrumentation_scope=scopes.setdefault(scope, InstrumentationScope(scope)),
                )
            )
        if len(pending) >= 512:
            export()


def _sdk_offloaded(endpoint: str, other_cpu: int) -> Setup:
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    mp = multiprocessing.get_context("fork")
    queue: Queue[list[SpanTuple] | str] = mp.Queue()
    receive, send = mp.Pipe(duplex=False)
    child = mp.Process(target=_offload_main, args=(queue, send, endpoint, other_cpu), daemon=True)
    child.start()
    child_cpu = [0.0]

    class TupleProcessor(SpanProcessor):
        """Ends a span by queueing a minimal tuple; pickling runs on mp's feeder thread."""

        def __init__(self) -> None:
            self.buffer: list[SpanTuple] = []

        def on_end(self, span: ReadableSpan) -> None:
            ctx = span.context
            assert ctx is not None
            parent = span.parent
            self.buffer.append(
                (
                    span.name,
                    ctx.trace_id,
                    ctx.span_id,
                    parent.span_id if parent is not None else 0,
                    span.kind.value,
                    span.start_time or 0,
                    span.end_time or 0,
                    dict(span.attributes or {}),
                    span.instrumentation_scope.name if span.instrumentation_scope else "",
                )
            )
            if len(self.buffer) >= 64:
                queue.put(self.buffer)
                self.buffer = []

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            if self.buffer:
                queue.put(self.buffer)
                self.buffer = []
            queue.put(_FLUSH)
            child_cpu[0] = float(receive.recv())
            return True

    processor = TupleProcessor()
    setup = _sdk(processor)
    return Setup(setup.provider, setup.flush, lambda: child_cpu[0])


def build(variant: str, endpoint: str, grpc_target: str, other_cpu: int) -> Setup:
    match variant:
        case "api-noop":
            return Setup(trace.NoOpTracerProvider(), lambda: None)
        case "sdk-spans":
            return _sdk(None)
        case "sdk-http":
            return _sdk_http(endpoint)
        case "sdk-http-200ms":
            return _sdk_http(endpoint, delay_ms=200, batch=2048)
        case "sdk-grpc":
            return _sdk_grpc(grpc_target)
        case "sdk-mp":
            return _sdk_offloaded(endpoint, other_cpu)
        case "lean-spans":
            return _lean(None)
        case "lean-http":
            return _lean(endpoint)
        case "lean-http-200ms":
            return _lean(endpoint, delay=0.2)
        case "lean-http-1s-2048":
            return _lean(endpoint, delay=1.0, batch=2048)
    raise ValueError(f"unknown variant {variant!r}")


def worker(args: argparse.Namespace) -> int:
    """Alternates untraced and traced segments of the same paced loop. The main thread's
    CPU in traced minus untraced segments is the span cost; every other thread's CPU
    (exporters, mp feeder, gRPC) and the final flush are export cost."""
    sys.setswitchinterval(0.0005)  # as neuros/__main__.py serves the agent
    setup = build(args.worker, args.endpoint, args.grpc_target, args.other_cpu)
    http_tracer = setup.provider.get_tracer("neuros.http")
    tracer = setup.provider.get_tracer("neuros")
    filler = app_like_work if args.filler else (lambda: None)

    def traced() -> None:
        filler()
        one_request(http_tracer, tracer)

    paced(WARMUP_REQUESTS, 0, traced)
    paced(WARMUP_REQUESTS, 0, filler)
    setup.flush()
    offloaded_before = setup.offloaded_cpu()
    per_segment = max(1, int(args.rate * args.seconds / SEGMENTS) if args.rate else args.requests)
    spent = {"untraced": 0.0, "traced": 0.0}
    process_start, main_start = time.process_time(), time.thread_time()
    for _ in range(SEGMENTS):
        for name, work in (("untraced", filler), ("traced", traced)):
            start = time.thread_time()
            paced(per_segment, args.rate, work)
            spent[name] += time.thread_time() - start
    setup.flush()
    main = time.thread_time() - main_start
    other_threads = time.process_time() - process_start - main
    flush = main - spent["traced"] - spent["untraced"]
    requests = per_segment * SEGMENTS
    spans_us = (spent["traced"] - spent["untraced"]) / requests * 1e6
    export_us = (other_threads + flush) / requests * 1e6
    result = {
        "variant": args.worker,
        "requests": requests,
        "spans": SPANS_PER_REQUEST * (requests + WARMUP_REQUESTS),
        "spans_us": spans_us,
        "export_us": export_us,
        "us_per_request": spans_us + export_us,
        "offloaded_us_per_request": (setup.offloaded_cpu() - offloaded_before) / requests * 1e6,
    }
    print(json.dumps(result), flush=True)
    return 0


# --- receivers ---------------------------------------------------------------------


class HttpSink:
    """``python -m stacktools.otlp_sink --port 0`` on the other CPU."""

    def __init__(self, cpu: int) -> None:
        self.process = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(cpu),
                sys.executable,
                "-m",
                "stacktools.otlp_sink",
                "--port",
                "0",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"otlp_sink did not start: {line!r}")
        self.endpoint = line.rsplit(" ", 1)[1].strip()

    def spans(self) -> int:
        with urllib.request.urlopen(f"{self.endpoint}/stats", timeout=10) as response:  # noqa: S310
            count: int = json.load(response)["spans"]
            return count

    def close(self) -> None:
        self.process.terminate()
        self.process.communicate(timeout=10)


class GrpcSink:
    """A gRPC TraceService in this (idle) process; None when grpcio is missing."""

    def __init__(self) -> None:
        grpc = importlib.import_module("grpc")
        services = importlib.import_module(
            "opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc"
        )
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        self.count = 0
        lock = threading.Lock()
        sink = self

        class Service:
            def Export(self, request: Any, context: Any) -> Any:
                spans = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
                with lock:
                    sink.count += spans
                return ExportTraceServiceResponse()

        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        services.add_TraceServiceServicer_to_server(Service(), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.target = f"127.0.0.1:{port}"

    @staticmethod
    def create() -> GrpcSink | None:
        try:
            importlib.import_module("opentelemetry.exporter.otlp.proto.grpc.trace_exporter")
            return GrpcSink()
        except ImportError:
            return None

    def spans(self) -> int:
        return self.count

    def close(self) -> None:
        self.server.stop(grace=1)


# --- orchestration -----------------------------------------------------------------


def run_worker(args: argparse.Namespace, variant: str, endpoint: str, grpc_target: str) -> Any:
    command = [
        "taskset",
        "-c",
        str(args.cpu),
        sys.executable,
        "-m",
        "stacktools.bench.tracing",
        "--worker",
        variant,
        "--endpoint",
        endpoint,
        "--grpc-target",
        grpc_target,
        "--other-cpu",
        str(args.other_cpu),
        "--rate",
        str(args.rate),
        "--seconds",
        str(args.seconds),
        "--requests",
        str(args.requests),
        *([] if args.filler else ["--no-filler"]),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools.bench.tracing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="traced run per measurement")
    parser.add_argument("--rate", type=float, default=400.0, help="req/s; 0: as fast as possible")
    parser.add_argument(
        "--requests", type=int, default=300, help="requests per segment when --rate 0"
    )
    parser.add_argument(
        "--no-filler",
        dest="filler",
        action="store_false",
        help="spans alone after each sleep, without app-like work (cold caches)",
    )
    parser.add_argument("--cpu", type=int, default=0, help="CPU of the measured process")
    parser.add_argument("--other-cpu", type=int, default=1, help="CPU of receivers, 2nd process")
    parser.add_argument("--variants", nargs="*", choices=list(BY_NAME), default=list(BY_NAME))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--grpc-target", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    http_sink = HttpSink(args.other_cpu)
    grpc_sink = GrpcSink.create()
    variants = [v for v in args.variants if grpc_sink is not None or not BY_NAME[v].needs_grpc]
    if len(variants) < len(args.variants):
        print("grpcio / opentelemetry-exporter-otlp-proto-grpc not installed: no sdk-grpc")
    results: dict[str, list[Any]] = {v: [] for v in variants}
    try:
        for round_ in range(args.rounds):
            shift = round_ % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                sink: HttpSink | GrpcSink = (
                    grpc_sink if BY_NAME[variant].needs_grpc and grpc_sink else http_sink
                )
                before = sink.spans()
                result = run_worker(
                    args, variant, http_sink.endpoint, grpc_sink.target if grpc_sink else ""
                )
                exporting = not variant.endswith(("-spans", "-noop"))
                expected = result["spans"] if exporting else 0
                deadline = time.monotonic() + 10
                while sink.spans() - before < expected and time.monotonic() < deadline:
                    time.sleep(0.05)
                result["delivered"] = sink.spans() - before == expected if exporting else None
                results[variant].append(result)
                print(
                    f"round {round_ + 1}/{args.rounds} {variant:<18} "
                    f"{result['us_per_request']:8.1f} µs/req",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        http_sink.close()
        if grpc_sink is not None:
            grpc_sink.close()
    print_table(args, results)
    return 0


def print_table(args: argparse.Namespace, results: dict[str, list[Any]]) -> None:
    pace = f"{args.rate:g} req/s" if args.rate > 0 else "back to back"
    work = "after app-like work" if args.filler else "alone"
    print(
        f"\nCPU µs per request (3 spans + export), {pace}, spans {work}, taskset -c {args.cpu};"
        f" median of {args.rounds} interleaved runs"
    )
    print(
        f"{'variant':<50} {'spans':>7} {'export':>7} {'total':>7} {'min-max':>13} "
        f"{'2nd proc':>8} {'arrived':>7}"
    )
    for variant, runs in results.items():
        totals = [r["us_per_request"] for r in runs]
        offloaded = statistics.median(r["offloaded_us_per_request"] for r in runs)
        print(
            f"{BY_NAME[variant].label:<50} "
            f"{statistics.median(r['spans_us'] for r in runs):7.1f} "
            f"{statistics.median(r['export_us'] for r in runs):7.1f} "
            f"{statistics.median(totals):7.1f} "
            f"{f'{min(totals):.0f}-{max(totals):.0f}':>13} "
            f"{(f'{offloaded:.1f}' if offloaded else '-'):>8} "
            f"{_delivered(runs):>7}"
        )


def _delivered(runs: list[Any]) -> str:
    if runs[0]["delivered"] is None:
        return "-"
    return "yes" if all(r["delivered"] for r in runs) else "NO"


if __name__ == "__main__":
    sys.exit(main())
