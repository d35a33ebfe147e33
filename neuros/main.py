"""Application factory: wiring only."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI
from opentelemetry.trace import NoOpTracer, TracerProvider
from prometheus_client import CollectorRegistry, start_http_server

from neuros.agent import Agent
from neuros.api import exposition, health, kpis, readings
from neuros.api.auth import SECURITY_SCHEMES
from neuros.api.errors import install_error_handlers
from neuros.auth.authenticator import Authenticator
from neuros.auth.tokens_file import TokensFile
from neuros.backend import Backend
from neuros.config import Settings, get_settings
from neuros.metrics import build_metrics
from neuros.middleware.access_log import AccessLogMiddleware
from neuros.middleware.body_limit import BodyLimitMiddleware
from neuros.middleware.request_metrics import MetricsMiddleware
from neuros.tracing import build_tracer_provider, instrument, shutdown_tracing

logger = logging.getLogger("neuros")


def _version() -> str:
    try:
        return version("neuros")
    except PackageNotFoundError:
        return "unknown"


def _complete_openapi(app: FastAPI) -> None:
    """Routes declare their body (validated from bytes) and their security requirement
    in ``openapi_extra``; the models and the bearer scheme join the components here."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            components = schema.setdefault("components", {})
            readings.add_body_schemas(components)
            components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _watch_tokens(auth: Authenticator, every_seconds: float) -> None:
    """Reload the tokens file when it changes: a revoked token stops working within
    ``every_seconds`` without a restart. SIGHUP reloads at once."""
    while True:
        await asyncio.sleep(every_seconds)
        try:
            auth.reload_if_changed()
        except Exception:
            # The watcher must outlive any surprise; the tokens in force stay.
            logger.exception("api tokens watcher")


@contextlib.contextmanager
def _reload_on_sighup(auth: Authenticator) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, auth.reload, "SIGHUP")
    except (NotImplementedError, RuntimeError, ValueError):
        # Not the main thread (an in-process test client): polling still reloads.
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)


def build_backend(settings: Settings) -> Backend:
    """SQLite at NEUROS_DB_PATH, or PostgreSQL when NEUROS_DATABASE_URL is set."""
    if settings.database_url is None:
        from neuros.sqlite_backend import SqliteBackend

        return SqliteBackend(settings.db_path, settings.group_limits())
    from neuros.postgres import PostgresBackend

    return PostgresBackend(
        settings.database_url.get_secret_value(),
        min_size=settings.database_pool_min,
        max_size=settings.database_pool_max,
    )


def create_app(
    settings: Settings | None = None,
    *,
    registry: CollectorRegistry | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app. Tests inject a registry and a tracer provider; by default the
    provider comes from ``OTEL_*`` and is shut down with the app. A missing or invalid
    API tokens file raises ``TokensFileError``."""
    settings = settings or get_settings()
    metrics = build_metrics(registry, version=_version())
    auth = Authenticator(TokensFile(settings.api_tokens_file), metrics)
    owns_provider = tracer_provider is None
    provider = build_tracer_provider() if owns_provider else tracer_provider
    tracer = provider.get_tracer("neuros") if provider is not None else NoOpTracer()
    agent = Agent(
        build_backend(settings),
        metrics,
        tracer,
        sleep_need_hours=settings.sleep_need_hours,
        population_refresh_seconds=settings.population_refresh_seconds,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await agent.start()
        logger.info(
            "neuros ready, %s database schema v%d, %d api tokens",
            agent.backend.system,
            agent.backend.schema_version,
            len(auth.tokens),
        )
        metrics_server = None
        if settings.metrics_port is not None:
            metrics_server, _ = start_http_server(
                settings.metrics_port, addr=settings.host, registry=metrics.registry
            )
        watcher = asyncio.create_task(_watch_tokens(auth, settings.api_tokens_reload_seconds))
        try:
            with _reload_on_sighup(auth):
                yield
        finally:
            watcher.cancel()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
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
    app.state.auth = auth
    for router in (readings.router, kpis.router, health.router):
        app.include_router(router)
    if settings.metrics_port is None:
        app.include_router(exposition.router)
    install_error_handlers(app, metrics)
    _complete_openapi(app)

    # Last added runs first: server span, body limit, access log, then metrics
    # innermost, so its exemplars name the request's span.
    if settings.metrics_enabled:
        app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if provider is not None:
        instrument(app, provider)
    return app
