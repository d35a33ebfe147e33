"""Liveness and readiness probes."""

from fastapi import APIRouter, Response, status

from neuros.api.deps import AgentDep
from neuros.schemas import Status

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get(
    "/ready",
    responses={503: {"model": Status, "description": "Database not writable"}},
)
async def ready(agent: AgentDep, response: Response) -> dict[str, str]:
    """Readiness: the writer commits a probe transaction to the database."""
    if await agent.ready():
        return {"status": "ready"}
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "database not writable"}
