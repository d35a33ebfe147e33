"""Application factory: wiring only."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import NoOpTracer, TracerProvider
from prometheus_client import CollectorRegistry

from neuros.agent import Agent
from neuros.api import health, kpis, readings
from neuros.api import metrics as metrics_api
from neuros.api.errors import install_error_handlers
from neuros.config import Settings, get_settings
from neuros.http.access_log import AccessLogMiddleware
from neuros.http.body_limit import BodyLimitMiddleware
from neuros.http.metrics import MetricsMiddleware
from neuros.metrics import build_metrics
from neuros.store import Store
from neuros.tracing import build_tracer_provider, instrument, shutdown_tracing

logger = logging.getLogger("neuros")


def _version() -> str:
    try:
        return version("neuros")
    except PackageNotFoundError:
        return "unknown"


def _declare_request_bodies(app: FastAPI) -> None:
    """Routes that validate their body from bytes declare it in ``openapi_extra``;
    their models join the generated components here."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            readings.add_body_schemas(schema.setdefault("components", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app. Tests inject a registry and a tracer provider; by default the
    provider comes from ``OTEL_*`` and is shut down with the app."""
    settings = settings or get_settings()
    metrics = build_metrics(registry, version=_version())
    owns_provider = tracer_provider is None
    provider = build_tracer_provider() if owns_provider else tracer_provider
    tracer = provider.get_tracer("neuros") if provider is not None else NoOpTracer()
    agent = Agent(
        Store(settings.db_path),
        metrics,
        tracer,
        sleep_need_hours=settings.sleep_need_hours,
        group_limits=settings.group_limits(),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        agent.start()
        logger.info("neuros ready, database schema v%d", agent.store.schema_version())
        try:
            yield
        finally:
            await agent.stop()
            if provider is not None and owns_provider and not shutdown_tracing(provider):
                logger.warning("span flush timed out; unsent spans dropped")

    app = FastAPI(
        title="NEUROS agent",
        version=_version(),
        summary="Biometric ingestion, health KPIs and protocol advice.",
        lifespan=lifespan,
    )
    app.state.agent = agent
    app.state.metrics = metrics
    for router in (readings.router, kpis.router, health.router, metrics_api.router):
        app.include_router(router)
    install_error_handlers(app, metrics)
    _declare_request_bodies(app)

    # Last added runs first: server span, body limit, access log, then metrics
    # innermost, so its exemplars name the request's span.
    if settings.metrics_enabled:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if provider is not None:
        instrument(app, provider)
    return app
