"""Request-scoped dependencies."""

from typing import Annotated

from fastapi import Depends, Path, Request

from neuros.agent import Agent
from neuros.schemas import USER_ID_PATTERN


# async: FastAPI runs a sync dependency in a worker thread, a hop per request.
async def get_agent(request: Request) -> Agent:
    agent: Agent = request.app.state.agent
    return agent


AgentDep = Annotated[Agent, Depends(get_agent)]
UserId = Annotated[
    str, Path(pattern=USER_ID_PATTERN, description="Opaque user id", examples=["user-42"])
]
