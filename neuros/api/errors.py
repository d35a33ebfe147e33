"""Error responses: JSON ``detail`` naming the field, never a stack trace."""

import logging
import sqlite3
from typing import Any

import psycopg
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.responses import Response

from neuros.api.readings import INGEST_ROUTE_NAME
from neuros.metrics import Metrics, RejectReason
from neuros.store import StorageError

logger = logging.getLogger("neuros.errors")


def _is_ingest(request: Request) -> bool:
    return getattr(request.scope.get("route"), "name", None) == INGEST_ROUTE_NAME


def _readings_in(body: Any) -> int:
    readings = body.get("readings") if isinstance(body, dict) else None
    return len(readings) if isinstance(readings, list) and readings else 1


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    def count_rejected(request: Request, reason: RejectReason, readings: int) -> None:
        if _is_ingest(request):
            metrics.readings_rejected.labels(reason.value).inc(readings)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        malformed = any(e.get("type") == "json_invalid" for e in errors)
        count_rejected(
            request,
            RejectReason.MALFORMED if malformed else RejectReason.VALIDATION,
            _readings_in(exc.body),
        )
        # Only where and what: echoing "input" back could repeat a whole batch.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == status.HTTP_413_CONTENT_TOO_LARGE:
            count_rejected(request, RejectReason.TOO_LARGE, 1)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def storage_error(request: Request, exc: Exception) -> Response:
        logger.error("storage error on %s: %s", request.method, type(exc).__name__)
        return JSONResponse(
            {"detail": "storage unavailable; nothing was stored, retry later"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        logger.error("unhandled %s on %s", type(exc).__name__, request.method, exc_info=exc)
        return JSONResponse(
            {"detail": "internal error"}, status_code=status.HTTP_500_INTERNAL_SERVER_ERROR
        )

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(sqlite3.Error, storage_error)
    app.add_exception_handler(psycopg.Error, storage_error)
    app.add_exception_handler(StorageError, storage_error)
    app.add_exception_handler(Exception, unexpected_error)
