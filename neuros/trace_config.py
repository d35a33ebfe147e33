"""Sampler and resource of the lean tracer (neuros.spans), from the ``OTEL_*`` variables."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from urllib.parse import unquote

from opentelemetry.trace import SpanContext

logger = logging.getLogger(__name__)

DEFAULT_SERVICE_NAME = "neuros"
SDK_NAME = "neuros.spans"
ID_MASK_64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Sampler:
    """The spec's samplers as two numbers: a span with no parent (or with one that
    ``respect_parent`` ignores) is sampled iff its trace id's low 64 bits < ``bound``."""

    name: str
    respect_parent: bool
    bound: int

    def should_sample(self, parent: SpanContext | None, trace_id: int) -> bool:
        if parent is not None and parent.is_valid and self.respect_parent:
            return parent.trace_flags.sampled
        return (trace_id & ID_MASK_64) < self.bound


_ALWAYS = 1 << 64


def _ratio_bound(arg: str | None) -> int:
    try:
        rate = float(arg) if arg not in (None, "") else 1.0
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        logger.warning("OTEL_TRACES_SAMPLER_ARG=%r is not a ratio in [0, 1]; using 1.0", arg)
        rate = 1.0
    return round(rate * _ALWAYS)


def sampler_from_env(environ: Mapping[str, str]) -> Sampler:
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    arg = environ.get("OTEL_TRACES_SAMPLER_ARG")
    match name:
        case "always_on" | "parentbased_always_on":
            bound = _ALWAYS
        case "always_off" | "parentbased_always_off":
            bound = 0
        case "traceidratio" | "parentbased_traceidratio":
            bound = _ratio_bound(arg)
        case _:
            logger.warning("OTEL_TRACES_SAMPLER=%r is unknown; using parentbased_always_on", name)
            name, bound = "parentbased_always_on", _ALWAYS
    return Sampler(name, name.startswith("parentbased_"), bound)


def _sdk_version() -> str:
    try:
        return version("neuros")
    except PackageNotFoundError:
        return "unknown"


def resource_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,...``, values percent-encoded), then
    ``OTEL_SERVICE_NAME``, over the defaults."""
    attributes = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": SDK_NAME,
        "telemetry.sdk.version": _sdk_version(),
        "service.name": DEFAULT_SERVICE_NAME,
    }
    for item in environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, value = item.partition("=")
        if not item.strip():
            continue
        if not sep or not key.strip():
            logger.warning("OTEL_RESOURCE_ATTRIBUTES: ignoring %r (want key=value)", item)
            continue
        attributes[key.strip()] = unquote(value.strip())
    service_name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if service_name:
        attributes["service.name"] = service_name
    return attributes
