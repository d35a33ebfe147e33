"""The agent with API authentication removed: for part (f) of the benchmark only.

``scripts/bench_agent.py`` measures the agent as deployed (``python -m neuros``, every
/v1 request authenticated) against this one, side by side, to bound what auth costs.
There is deliberately no setting that turns auth off: this module runs
``neuros.__main__.main`` itself (same settings, logging, signal handling and uvicorn
options) with ``create_app`` wrapped so that, once the app is built, the ``authorize``
dependency of every /v1 route is overridden by one that returns an all-powerful
principal without reading any header. Everything else, the tokens file and its
watcher included, is the agent's.

    python -m scripts.bench_noauth     # environment as for python -m neuros
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

import neuros.__main__ as agent_main
from neuros.api.auth import require
from neuros.auth.tokens import Principal, Scope
from neuros.config import Settings
from neuros.main import create_app

# Whoever calls: every scope, every user.
NOBODY_CHECKED = Principal("bench-noauth", frozenset(Scope), True, frozenset(), None)
# Every route's authorize() is a closure made by require(): they share one code object.
_AUTHORIZE_CODE = require(Scope.READINGS_WRITE).dependency.__code__


async def no_auth() -> Principal:
    return NOBODY_CHECKED


def _calls(dependants: Iterable[Dependant]) -> Iterable[Callable[..., Any]]:
    for dependant in dependants:
        if dependant.call is not None:
            yield dependant.call
        yield from _calls(dependant.dependencies)


def _api_routes(routes: Iterable[BaseRoute]) -> Iterable[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # An included router (FastAPI >= 0.165 keeps it whole and resolves lazily).
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def authorize_callables(app: FastAPI) -> set[Callable[..., Any]]:
    """The ``authorize`` dependencies of the app's routes (one per /v1 route)."""
    return {
        call
        for route in _api_routes(app.routes)
        for call in _calls(route.dependant.dependencies)
        if getattr(call, "__code__", None) is _AUTHORIZE_CODE
    }


def without_auth(app: FastAPI) -> FastAPI:
    """``app`` with every ``authorize`` dependency replaced by :func:`no_auth`."""
    found = authorize_callables(app)
    if not found:
        # The wiring changed: measuring auth against auth would report "no cost".
        raise RuntimeError("no authorize dependency found on the app's routes")
    for call in found:
        app.dependency_overrides[call] = no_auth
    return app


def create_app_without_auth(settings: Settings | None = None, **kwargs: Any) -> FastAPI:
    return without_auth(create_app(settings, **kwargs))


def main() -> None:
    # The name main() calls: the rest of its start-up stays the agent's own.
    agent_main.create_app = create_app_without_auth  # type: ignore[attr-defined]
    agent_main.main()


if __name__ == "__main__":
    main()
