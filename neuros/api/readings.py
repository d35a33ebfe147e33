"""Ingest of biometric readings.

The body is read once and validated from bytes on the event loop (pydantic's
``validate_json``, no intermediate Python objects), and the batch goes straight to the
agent's writer: no thread-pool hop. FastAPI would parse JSON into dicts first and run
a sync route in a worker thread; the request body is therefore declared in the OpenAPI
document by ``body_schema`` rather than by a parameter.
"""

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from neuros.api.auth import AUTH_RESPONSES
from neuros.api.deps import WRITE_READINGS, ReadingsWriter, UserId
from neuros.schemas import STORAGE_UNAVAILABLE, ErrorBody, IngestResult, Kpis, ReadingsBatch

INGEST_ROUTE_NAME = "ingest_readings"
JSON_MEDIA_TYPE = "application/json"

router = APIRouter(prefix="/v1/users/{user_id}", tags=["readings"])


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (
        media.startswith("application/") and media.endswith("+json")
    )


def _parsed_or_none(body: bytes) -> Any:
    """The body as JSON, for error accounting only; None if it is not JSON."""
    try:
        return json.loads(body)
    except ValueError:
        return None


async def read_batch(request: Request) -> ReadingsBatch:
    """The request's batch, validated from its bytes; 422 naming each bad field."""
    content_type = request.headers.get("content-type")
    body = await request.body()
    if content_type is not None and not _is_json(content_type):
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, detail=f"body must be {JSON_MEDIA_TYPE}"
        )
    try:
        return ReadingsBatch.model_validate_json(body)
    except ValidationError as exc:
        errors = [
            {"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise RequestValidationError(errors, body=_parsed_or_none(body)) from None


def add_body_schemas(components: dict[str, Any]) -> None:
    """Put ``ReadingsBatch`` (and what it refers to) into OpenAPI ``components``."""
    schema = ReadingsBatch.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas = components.setdefault("schemas", {})
    schemas.update(schema.pop("$defs", {}))
    schemas["ReadingsBatch"] = schema


def body_schema() -> dict[str, Any]:
    """``openapi_extra`` declaring the ``ReadingsBatch`` body this route validates."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                JSON_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ReadingsBatch"}}
            },
        }
    }


@router.post(
    "/readings",
    name=INGEST_ROUTE_NAME,
    status_code=status.HTTP_201_CREATED,
    response_model=IngestResult,
    responses={
        201: {
            "description": "The batch was stored; the user's KPIs after it",
            # Once a batch is stored, the user's KPIs and advice exist (no 404).
            "links": {
                "GetKpis": {
                    "operationId": "get_kpis_v1_users__user_id__kpis_get",
                    "parameters": {"user_id": "$request.path.user_id"},
                },
                "Analyze": {
                    "operationId": "analyze_v1_users__user_id__analyze_post",
                    "parameters": {"user_id": "$request.path.user_id"},
                },
            },
        },
        413: {
            "model": ErrorBody,
            "description": "Body larger than NEUROS_MAX_BODY_BYTES; nothing was stored",
        },
        415: {
            "model": ErrorBody,
            "description": "Content-Type is neither application/json nor application/*+json",
        },
        422: {
            "model": ErrorBody,
            "description": "Invalid user id or batch, each problem named by loc; "
            "nothing was stored",
        },
        **AUTH_RESPONSES,
        **STORAGE_UNAVAILABLE,
    },
    openapi_extra={**body_schema(), **WRITE_READINGS.openapi()},
)
async def ingest_readings(user_id: UserId, request: Request, agent: ReadingsWriter) -> Response:
    """Store 1 to 1000 readings, all or nothing, and return the user's fresh KPIs.
    Needs a token with scope ``readings:write`` for this user.

    A reading is identified by user and ``recorded_at`` (the instant, whatever the
    offset): sending it again replaces it and never counts twice.
    """
    batch = await read_batch(request)
    snapshot = await agent.ingest(user_id, batch.readings)
    result = IngestResult(accepted=len(batch.readings), kpis=Kpis.of(snapshot))
    return Response(
        result.model_dump_json(), status_code=status.HTTP_201_CREATED, media_type=JSON_MEDIA_TYPE
    )
