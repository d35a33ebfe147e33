"""The agent in-process: apps built for a test, their tokens, and request bodies."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from neuros.auth.authenticator import Authenticator
from neuros.auth.tokens import ALL_USERS, Scope
from neuros.auth.tokens_file import TokensFile
from neuros.config import Settings
from neuros.main import create_app


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


# The API's operations, as (path, method) in the OpenAPI document.
INGEST = ("/v1/users/{user_id}/readings", "post")
READS = [("/v1/users/{user_id}/kpis", "get"), ("/v1/users/{user_id}/analyze", "post")]
# The scope each route needs (docs/api.md, "Authentication"): the contract test checks
# the document against it, tests/agent/test_auth.py the app's dependencies.
SCOPES = {
    INGEST: Scope.READINGS_WRITE,
    READS[0]: Scope.KPIS_READ,
    READS[1]: Scope.ANALYZE,
}


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


RR_EXAMPLE = [800, 810, 790, 805, 795]  # RMSSD 14.3614 ms


def reading(at: str = "2026-11-20T07:00:00+00:00", **values: object) -> dict[str, object]:
    """A reading body; RR_EXAMPLE when no measurement is given."""
    return {"recorded_at": at, **(values or {"rr_intervals_ms": RR_EXAMPLE})}
