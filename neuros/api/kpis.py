"""KPI snapshots and protocol advice.

A snapshot is two indexed reads through the storage backend (``neuros.backend``); on
SQLite they run on the event loop, cheaper than a worker-thread hop per request.
"""

from typing import Any

from fastapi import APIRouter, HTTPException, status

from neuros.api.auth import AUTH_RESPONSES
from neuros.api.deps import ANALYZE, READ_KPIS, Analyst, KpisReader, UserId
from neuros.schemas import STORAGE_UNAVAILABLE, Analysis, ErrorBody, Kpis

router = APIRouter(prefix="/v1/users/{user_id}", tags=["kpis"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No readings for this user"},
    422: {"model": ErrorBody, "description": "Invalid user id, named by loc"},
    **AUTH_RESPONSES,
    **STORAGE_UNAVAILABLE,
}


def _no_data() -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail="no readings for this user")


@router.get(
    "/kpis",
    response_model=Kpis,
    responses=_RESPONSES,
    openapi_extra=READ_KPIS.openapi(),
)
async def get_kpis(user_id: UserId, agent: KpisReader) -> Kpis:
    """The user's current KPI snapshot. Needs scope ``kpis:read`` for this user."""
    snapshot = await agent.snapshot(user_id)
    if snapshot is None:
        raise _no_data()
    return Kpis.of(snapshot)


@router.post(
    "/analyze",
    response_model=Analysis,
    responses=_RESPONSES,
    openapi_extra=ANALYZE.openapi(),
)
async def analyze(user_id: UserId, agent: Analyst) -> Analysis:
    """Protocol advice from the rule set documented in ``neuros.recommend``. Needs
    scope ``analyze`` for this user."""
    result = await agent.analyze(user_id)
    if result is None:
        raise _no_data()
    snapshot, advice = result
    return Analysis(
        recommendation=advice.recommendation,
        reasons=list(advice.reasons),
        kpis=Kpis.of(snapshot),
    )
