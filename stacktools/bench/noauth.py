"""The agent with API authentication removed: for part (f) of the benchmark only.

``stacktools/bench/agent.py`` measures the agent as deployed (``python -m neuros``, every
/v1 request authenticated) against this one, side by side, to bound what auth costs.
There is deliberately no setting that turns auth off: this module runs
``neuros.__main__.main`` itself (same settings, logging, signal handling and uvicorn
options) with one change: ``AuthorizedAgent``, the dependency through which every /v1
route gets the agent, hands the agent out without checking the token. The dependency
itself stays, so the difference measured is the check and nothing else. (Not
``app.dependency_overrides``: with any override set, FastAPI rebuilds every dependency
of every request from its signature, which made "auth off" 30 % slower than "on".)

    python -m stacktools.bench.noauth     # environment as for python -m neuros
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from neuros.agent import Agent
from neuros.api.auth import AuthorizedAgent


async def _unchecked(self: AuthorizedAgent, request: Request) -> Agent:
    agent: Agent = request.app.state.agent
    return agent


def _api_routes(routes: Iterable[BaseRoute]) -> Iterable[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        # An included router (FastAPI >= 0.165 keeps it whole and resolves lazily).
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def guarded_routes(app: FastAPI) -> list[APIRoute]:
    """The app's routes that get the agent through ``AuthorizedAgent``."""
    return [
        route
        for route in _api_routes(app.routes)
        if any(isinstance(d.call, AuthorizedAgent) for d in route.dependant.dependencies)
    ]


def skip_auth() -> None:
    AuthorizedAgent.__call__ = _unchecked  # type: ignore[method-assign]


def main() -> None:
    import neuros.__main__ as agent_main

    skip_auth()
    agent_main.main()


if __name__ == "__main__":
    main()
