"""The agent's lean tracer with an in-memory exporter: spans a test can read back."""

from __future__ import annotations

from neuros.spans import LeanSpan, LeanTracerProvider
from neuros.trace_config import sampler_from_env

RESOURCE = {"service.name": "encoding-test", "deployment.environment": "test"}


class Collected:
    """An exporter that keeps ended spans in memory."""

    def __init__(self) -> None:
        self.spans: list[LeanSpan] = []

    def submit(self, span: LeanSpan) -> None:
        self.spans.append(span)

    def force_flush(self, timeout: float) -> bool:
        return True

    def shutdown(self, timeout: float) -> bool:
        return True


def lean(
    sampler: str = "always_on", arg: str | None = None
) -> tuple[LeanTracerProvider, Collected]:
    collected = Collected()
    env = {"OTEL_TRACES_SAMPLER": sampler} | ({"OTEL_TRACES_SAMPLER_ARG": arg} if arg else {})
    provider = LeanTracerProvider(
        sampler=sampler_from_env(env), resource=RESOURCE, exporter=collected
    )
    return provider, collected
