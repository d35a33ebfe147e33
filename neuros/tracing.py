"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables.

Spans leave the process through a BatchSpanProcessor: exporting happens on a worker
thread, so an unreachable collector costs requests nothing, and a full queue drops
spans rather than blocking.
"""

import os
import threading

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

from neuros.http.tracing import ServerSpanMiddleware

DEFAULT_SERVICE_NAME = "neuros"
# Probes and scrapes would drown the traces that matter.
EXCLUDED_PATHS = frozenset({"/metrics", "/health", "/ready"})
# Docker stops a container 10 s after SIGTERM; flushing must end well before.
SHUTDOWN_TIMEOUT_SECONDS = 3.0


class TracingConfigError(ValueError):
    pass


def tracing_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def build_tracer_provider() -> TracerProvider | None:
    """A provider from ``OTEL_*``; None when ``OTEL_SDK_DISABLED=true``.

    The sampler comes from ``OTEL_TRACES_SAMPLER``/``_ARG`` and the endpoint from
    ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``, both read by the SDK itself.
    """
    if tracing_disabled():
        return None
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use http/protobuf"
        )
    service_name = os.environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
    # Exit-time shutdown is ours (bounded, see shutdown_tracing), not the SDK's atexit hook.
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False
    )
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        match name.strip():
            case "otlp":
                provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            case "console":
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            case "none" | "":
                pass
            case other:
                raise TracingConfigError(f"OTEL_TRACES_EXPORTER={other!r} is not supported")
    return provider


def instrument(app: FastAPI, provider: TracerProvider) -> None:
    app.add_middleware(
        ServerSpanMiddleware,
        tracer=provider.get_tracer("neuros.http"),
        excluded_paths=EXCLUDED_PATHS,
    )


def shutdown_tracing(provider: TracerProvider, timeout: float = SHUTDOWN_TIMEOUT_SECONDS) -> bool:
    """Flush and stop, giving up after ``timeout``: True if it finished in time."""
    worker = threading.Thread(target=provider.shutdown, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()
