"""Fixtures only: the app in-process, the real agent under uvicorn, PostgreSQL, real
Prometheus servers, an OTLP sink, and stacks of the real compose file in Docker.

What they build, and every other shared helper, lives in tests/support/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from neuros.auth.admin_token import bearer
from neuros.config import Settings
from neuros.main import create_app
from stacktools.otlp_sink import OtlpSink
from tests.support.agent import InProcess, add_token
from tests.support.dockerstack import StartStack, compose_stacks
from tests.support.postgres_server import PostgresServer, require_bindir
from tests.support.processes import LiveAgent, free_port
from tests.support.prometheus_server import PrometheusServer, prometheus_servers


@pytest.fixture
def make_app(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> Iterator[Callable[..., InProcess]]:
    """Apps on one database: SQLite at tmp_path, or (``backend`` "postgresql") a fresh
    PostgreSQL database that every app of the test shares."""
    opened: list[TestClient] = []
    database_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None

    def make(**overrides: object) -> InProcess:
        tokens_file = tmp_path / f"tokens-{len(opened)}.yml"
        token = add_token(tokens_file)
        overrides.setdefault("api_tokens_file", tokens_file)
        if database_url is not None:
            overrides.setdefault("database_url", database_url)
        settings = Settings(db_path=tmp_path / "neuros.db", **overrides)  # type: ignore[arg-type]
        registry = CollectorRegistry()
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        app = create_app(settings, registry=registry, tracer_provider=provider)
        client = TestClient(app, raise_server_exceptions=False, headers=bearer(token))
        client.__enter__()
        opened.append(client)
        return InProcess(client, registry, spans, settings, token)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def app(make_app: Callable[..., InProcess]) -> InProcess:
    return make_app()


@pytest.fixture
def live_agent(tmp_path: Path) -> Iterator[Callable[..., LiveAgent]]:
    agents: list[LiveAgent] = []

    def start(
        env: dict[str, str] | None = None, db_path: Path | None = None, module: str = "neuros"
    ) -> LiveAgent:
        agent = LiveAgent(
            db_path=db_path or tmp_path / "live.db",
            env={"OTEL_SDK_DISABLED": "true", **(env or {})},
            log_path=tmp_path / f"agent-{len(agents)}.log",
            tokens_file=tmp_path / f"live-tokens-{len(agents)}.yml",
            module=module,
        )
        agents.append(agent)
        return agent.start()

    yield start
    for agent in agents:
        agent.stop()


# --- PostgreSQL (the second storage backend) -------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real server for the session; missing PostgreSQL skips, and fails in CI."""
    server = PostgresServer(require_bindir(), free_port()).init().start()
    yield server
    server.destroy()


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database on the session's server."""
    return postgres_server.create_database()


@pytest.fixture
def backend() -> str:
    """The storage backend make_app builds on; a module overrides it to run both."""
    return "sqlite"


# --- Servers the telemetry tests read back --------------------------------------


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """Start real Prometheus servers (promtool's sibling binary) for one test."""
    with prometheus_servers(tmp_path) as start:
        yield start


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    """A real OTLP/HTTP trace receiver for one test."""
    with OtlpSink() as running:
        yield running


# --- Docker (tests marked docker; tests/support/dockerstack.py) ------------------


@pytest.fixture
def docker_stack(request: pytest.FixtureRequest) -> Iterator[StartStack]:
    """Stacks that live for one test."""
    with compose_stacks(request) as start:
        yield start


@pytest.fixture(scope="module")
def docker_stack_module(request: pytest.FixtureRequest) -> Iterator[StartStack]:
    """Stacks shared by the tests of one module."""
    with compose_stacks(request) as start:
        yield start
