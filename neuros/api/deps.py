"""Request-scoped dependencies."""

from typing import Annotated

from fastapi import Depends, Path, Request

from neuros.agent import Agent
from neuros.api.auth import AuthorizedAgent
from neuros.auth.tokens import Scope
from neuros.schemas import USER_ID_PATTERN


# async: FastAPI runs a sync dependency in a worker thread, a hop per request.
async def get_agent(request: Request) -> Agent:
    agent: Agent = request.app.state.agent
    return agent


AgentDep = Annotated[Agent, Depends(get_agent)]

# The agent, for callers whose token holds the scope (neuros.api.auth); a route passes
# the same object's openapi() as openapi_extra.
WRITE_READINGS = AuthorizedAgent(Scope.READINGS_WRITE)
READ_KPIS = AuthorizedAgent(Scope.KPIS_READ)
ANALYZE = AuthorizedAgent(Scope.ANALYZE)
ReadingsWriter = Annotated[Agent, Depends(WRITE_READINGS)]
KpisReader = Annotated[Agent, Depends(READ_KPIS)]
Analyst = Annotated[Agent, Depends(ANALYZE)]
UserId = Annotated[
    str, Path(pattern=USER_ID_PATTERN, description="Opaque user id", examples=["user-42"])
]
