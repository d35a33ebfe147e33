"""Request count and latency per route template, with trace exemplars."""

import time

from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from neuros.metrics import Metrics
from neuros.middleware.routes import method_label, route_template
from neuros.middleware.status import StatusRecordingSend


def _trace_exemplar() -> dict[str, str] | None:
    context = trace.get_current_span().get_span_context()
    if context.is_valid and context.trace_flags.sampled:
        return {"trace_id": format(context.trace_id, "032x")}
    return None


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        recording = StatusRecordingSend(send)
        start = time.perf_counter()
        try:
            await self.app(scope, receive, recording)
        finally:
            elapsed = time.perf_counter() - start
            method, route = method_label(scope), route_template(scope)
            self.metrics.http_requests.labels(method, route, str(recording.status)).inc()
            # Runs inside the OTel server span, so the exemplar names this request's trace.
            self.metrics.http_request_duration.labels(method, route).observe(
                elapsed, exemplar=_trace_exemplar()
            )
