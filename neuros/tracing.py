"""OpenTelemetry tracing, configured by the standard ``OTEL_*`` variables.

The default provider is the lean one in :mod:`neuros.spans`, exporting through
:mod:`neuros.otlp_export`: at 100 % sampling the SDK with its OTLP/HTTP exporter cost
~370 µs of CPU per ingest request here, this one ~70 µs (stacktools/bench/tracing.py).
Exporting happens on a worker thread,
so an unreachable collector costs requests nothing, and a full buffer drops spans
rather than blocking. The SDK remains for ``OTEL_TRACES_EXPORTER=console`` (a debug
aid) and for tests, which inject an SDK provider into ``create_app``.
"""

import os
import threading
from collections.abc import Mapping

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from neuros.middleware.server_spans import ServerSpanMiddleware
from neuros.otlp_export import ExportConfig, ExportConfigError, OtlpHttpExporter
from neuros.spans import LeanTracerProvider
from neuros.trace_config import DEFAULT_SERVICE_NAME, resource_from_env, sampler_from_env

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

    Sampler: ``OTEL_TRACES_SAMPLER``/``_ARG``; endpoint: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    as is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` + ``/v1/traces``; batching: ``OTEL_BSP_*``.
    """
    if tracing_disabled():
        return None
    environ = os.environ
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    if protocol not in ("", "http/protobuf"):
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported; use http/protobuf"
        )
    exporters: set[str] = set()
    for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        match name.strip():
            case "otlp" | "console" as known:
                exporters.add(known)
            case "none" | "":
                pass
            case other:
                raise TracingConfigError(f"OTEL_TRACES_EXPORTER={other!r} is not supported")
    if "console" in exporters:
        return _sdk_provider(environ, exporters)
    resource = resource_from_env(environ)
    try:
        exporter = (
            OtlpHttpExporter(ExportConfig.from_env(environ), resource)
            if "otlp" in exporters
            else None
        )
    except ExportConfigError as exc:
        raise TracingConfigError(str(exc)) from None
    return LeanTracerProvider(
        sampler=sampler_from_env(environ), resource=resource, exporter=exporter
    )


def _sdk_provider(environ: Mapping[str, str], exporters: set[str]) -> TracerProvider:
    """The OTel SDK, for the console exporter: printing spans is for debugging only."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    service_name = environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_SERVICE_NAME
    # Exit-time shutdown is ours (bounded, see shutdown_tracing), not the SDK's atexit hook.
    provider = SdkTracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}), shutdown_on_exit=False
    )
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    if "otlp" in exporters:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def instrument(app: FastAPI, provider: TracerProvider) -> None:
    app.add_middleware(
        ServerSpanMiddleware,
        tracer=provider.get_tracer("neuros.http"),
        excluded_paths=EXCLUDED_PATHS,
    )


def shutdown_tracing(provider: TracerProvider, timeout: float = SHUTDOWN_TIMEOUT_SECONDS) -> bool:
    """Flush and stop, giving up after ``timeout``: True if it finished in time."""
    if isinstance(provider, LeanTracerProvider):
        return provider.shutdown(timeout)
    stop = getattr(provider, "shutdown", None)
    if stop is None:
        return True
    # The SDK's shutdown has no deadline of its own.
    worker = threading.Thread(target=stop, name="otel-shutdown", daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()
