"""Liveness and readiness probes."""

from fastapi import APIRouter, Response, status

from neuros.api.deps import AgentDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/ready", responses={503: {"description": "Database not writable"}})
def ready(agent: AgentDep, response: Response) -> dict[str, str]:
    """Readiness: a transaction can be committed to the database."""
    if agent.ready():
        return {"status": "ready"}
    response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "database not writable"}
