"""Shared fixtures: the app in-process, and the real agent under uvicorn."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from neuros.auth.admin_token import bearer
from neuros.auth.authenticator import Authenticator
from neuros.auth.tokens import ALL_USERS, Scope
from neuros.auth.tokens_file import TokensFile
from neuros.config import Settings
from neuros.main import create_app
from tests.postgres_server import PostgresServer, find_bindir

REPO_ROOT = Path(__file__).resolve().parent.parent


def add_token(
    tokens_file: Path,
    name: str = "admin",
    scopes: tuple[Scope, ...] = tuple(Scope),
    users: tuple[str, ...] = (ALL_USERS,),
) -> str:
    """A new token in ``tokens_file`` (created if missing); returns the token."""
    return TokensFile(tokens_file).add(name, scopes, users)


def unstarted_app() -> FastAPI:
    """An app that is never started: what it declares (routes, OpenAPI document), not
    what it does. Building it loads a tokens file (a throwaway one) and opens nothing
    else: the database opens in the lifespan, which never runs."""
    with tempfile.TemporaryDirectory() as scratch:
        tokens_file = Path(scratch) / "tokens.yml"
        add_token(tokens_file)
        return create_app(
            Settings(db_path=Path(scratch) / "unopened.db", api_tokens_file=tokens_file),
            registry=CollectorRegistry(),
            tracer_provider=TracerProvider(),
        )


def openapi_document() -> dict[str, Any]:
    return unstarted_app().openapi()


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of ``app``, included routers resolved (FastAPI >= 0.165 keeps an
    included router whole in ``app.routes``)."""
    return [
        context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]


@dataclass
class InProcess:
    """The app under a TestClient that sends ``token`` (every scope, every user)."""

    client: TestClient
    registry: CollectorRegistry
    spans: InMemorySpanExporter
    settings: Settings
    token: str

    @property
    def auth(self) -> Authenticator:
        """The app's authenticator (reload it after changing its tokens file)."""
        app = self.client.app
        assert isinstance(app, FastAPI)
        authenticator: Authenticator = app.state.auth
        return authenticator

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return 0.0 if value is None else value


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool],
    timeout: float = 15.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    details: Callable[[], str] = lambda: "",
) -> float:
    """Poll ``predicate`` until true; returns the seconds it took. On timeout the
    AssertionError carries ``details()`` (last answers, logs)."""
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{details()}".rstrip())


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serves(process: subprocess.Popen[bytes], url: str, log: Callable[[], str]) -> bool:
    """True once ``url`` answers 200; fails at once, with the log, if the process died."""
    if process.poll() is not None:
        raise AssertionError(f"{process.args!r} exited early:\n{log()}")
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@dataclass
class LiveAgent:
    """``python -m neuros`` in a subprocess, as deployed. ``token`` (every scope, every
    user) is in ``tokens_file``; ``headers`` carry it."""

    db_path: Path
    env: dict[str, str]
    log_path: Path
    tokens_file: Path
    token: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    module: str = "neuros"  # or a launcher with the same environment (the bench's)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client on this agent that sends the token."""
        return httpx.Client(base_url=self.url, headers=self.headers, **kwargs)  # type: ignore[arg-type]

    def start(self) -> "LiveAgent":
        if not self.token:
            self.token = add_token(self.tokens_file)
        env = {
            **os.environ,
            "NEUROS_HOST": "127.0.0.1",
            "NEUROS_PORT": str(self.port),
            "NEUROS_DB_PATH": str(self.db_path),
            "NEUROS_API_TOKENS_FILE": str(self.tokens_file),
            **self.env,
        }
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        wait_until(self._healthy, what=f"agent on {self.url}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        return serves(self.process, f"{self.url}/health", self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


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


RR_EXAMPLE = [800, 810, 790, 805, 795]  # RMSSD 14.3614 ms


def reading(at: str = "2026-11-20T07:00:00+00:00", **values: object) -> dict[str, object]:
    """A reading body; RR_EXAMPLE when no measurement is given."""
    return {"recorded_at": at, **(values or {"rr_intervals_ms": RR_EXAMPLE})}


# --- PostgreSQL (the second storage backend) -------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real server for the session; missing PostgreSQL skips, and fails in CI."""
    bindir = find_bindir()
    if bindir is None:
        reason = "PostgreSQL is not installed (apt-get install postgresql; scripts/test.sh does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    server = PostgresServer(bindir, free_port()).init().start()
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
