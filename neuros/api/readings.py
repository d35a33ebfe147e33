"""Ingest of biometric readings."""

from fastapi import APIRouter, status

from neuros.api.deps import AgentDep, UserId
from neuros.schemas import ErrorBody, IngestResult, Kpis, ReadingsBatch

INGEST_ROUTE_NAME = "ingest_readings"

router = APIRouter(prefix="/v1/users/{user_id}", tags=["readings"])


@router.post(
    "/readings",
    name=INGEST_ROUTE_NAME,
    status_code=status.HTTP_201_CREATED,
    response_model=IngestResult,
    responses={
        413: {"model": ErrorBody, "description": "Request body too large"},
        503: {"model": ErrorBody, "description": "Storage unavailable; nothing was stored"},
    },
)
def ingest_readings(user_id: UserId, batch: ReadingsBatch, agent: AgentDep) -> IngestResult:
    """Store 1 to 1000 readings, all or nothing, and return the user's fresh KPIs.

    A reading is identified by user and ``recorded_at`` (the instant, whatever the
    offset): sending it again replaces it and never counts twice.
    """
    snapshot = agent.ingest(user_id, batch.readings)
    return IngestResult(accepted=len(batch.readings), kpis=Kpis.of(snapshot))
