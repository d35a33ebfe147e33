"""The framework floor of the ingest benchmark: the agent's route with nothing behind it.

``stacktools/bench/agent.py`` measures the agent against this app, ratio (a): the same
route path ``POST /v1/users/{user_id}/readings``, the same ``UserId`` path parameter,
the same body parsing (``neuros.api.readings.read_batch``), served by the same server
with the same options (``neuros.__main__.uvicorn_options``). It answers a fixed 201
body of the agent's shape, ``{"accepted": n, "kpis": {...}}``: no storage, no KPI
work, no middleware. What the agent does beyond this is its own cost.

``classic_app`` is the same route written the textbook FastAPI way, a sync ``def``
with a ``batch: ReadingsBatch`` body parameter, reported beside it for transparency.

    python -m stacktools.bench.floor [--classic]    # NEUROS_HOST, NEUROS_PORT as the agent
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI, Request, Response, status

from neuros.__main__ import uvicorn_options
from neuros.api.deps import UserId
from neuros.api.readings import read_batch
from neuros.config import Settings
from neuros.kpi import Readiness
from neuros.schemas import Kpis, ReadingsBatch

READINGS_PATH = "/v1/users/{user_id}/readings"
HEALTH_PATH = "/health"
JSON_MEDIA_TYPE = "application/json"
# As neuros.__main__.main sets it; the classic variant's thread pool feels it.
SWITCH_INTERVAL_SECONDS = 0.0005

# The KPIs every answer carries: a fixed, plausible snapshot, serialised once.
_KPIS_JSON = (
    Kpis(
        hrv_rmssd_ms=48.2,
        hrv_baseline_ms=52.0,
        hrv_deviation_pct=-7.3,
        sleep_debt_hours=1.5,
        resting_hr_bpm=56.0,
        resting_hr_baseline_bpm=55.0,
        recovery_score=71.0,
        readiness=Readiness.MODERATE,
        as_of=datetime(2025, 1, 1, tzinfo=UTC),
    )
    .model_dump_json()
    .encode()
)


def answer(accepted: int) -> Response:
    """The 201 the agent would send for ``accepted`` readings, with fixed KPIs."""
    body = b'{"accepted":%d,"kpis":%s}' % (accepted, _KPIS_JSON)
    return Response(body, status_code=status.HTTP_201_CREATED, media_type=JSON_MEDIA_TYPE)


def _health() -> dict[str, str]:
    return {"status": "ok"}


app = FastAPI(title="NEUROS ingest floor")
app.get(HEALTH_PATH)(_health)


@app.post(READINGS_PATH, status_code=status.HTTP_201_CREATED)
async def ingest_floor(user_id: UserId, request: Request) -> Response:
    """Parse and validate the batch as the agent does, store nothing."""
    batch = await read_batch(request)
    return answer(len(batch.readings))


classic_app = FastAPI(title="NEUROS ingest floor (classic FastAPI body parameter)")
classic_app.get(HEALTH_PATH)(_health)


@classic_app.post(READINGS_PATH, status_code=status.HTTP_201_CREATED)
def ingest_classic(user_id: UserId, batch: ReadingsBatch) -> Response:
    """FastAPI parses the JSON into dicts, validates them and runs this in a thread."""
    return answer(len(batch.readings))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m stacktools.bench.floor",
        description="Serve the ingest floor with the agent's uvicorn options "
        "(NEUROS_HOST, NEUROS_PORT, NEUROS_LOG_LEVEL).",
    )
    parser.add_argument(
        "--classic",
        action="store_true",
        help="serve the variant with a 'batch: ReadingsBatch' body parameter and a sync def",
    )
    args = parser.parse_args(argv)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    uvicorn.run(classic_app if args.classic else app, **uvicorn_options(Settings()))


if __name__ == "__main__":
    main()
