"""Prometheus exposition: text format, or OpenMetrics (with exemplars) on request."""

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

router = APIRouter(tags=["metrics"])

_EXPOSITION = {"type": "string"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format; OpenMetrics (with trace exemplars) "
            "when Accept asks for application/openmetrics-text",
            "content": {
                "text/plain; version=0.0.4; charset=utf-8": {"schema": _EXPOSITION},
                "application/openmetrics-text; version=1.0.0; charset=utf-8": {
                    "schema": _EXPOSITION
                },
            },
        }
    },
)
def metrics(request: Request) -> Response:
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(request.app.state.metrics.registry), media_type=content_type)
