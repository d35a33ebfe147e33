"""The agent's Prometheus metrics, on an injectable registry.

Every label here is bounded by construction: route templates, HTTP methods and status
codes, fixed reasons, the three readiness bands. Never a user id or a reading value.
Names are the single source for dashboards and rules: ``scripts/check-stack`` imports
this module rather than retyping them.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from neuros.kpi import Readiness

PREFIX = "neuros"
M = TypeVar("M", Counter, Gauge)

# Includes the latency SLO threshold (prometheus/slo.yml must name one of these bounds).
HTTP_LATENCY_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
KPI_DURATION_BUCKETS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
HRV_BUCKETS_SECONDS = tuple(ms / 1000 for ms in (10, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200))
SLEEP_DEBT_BUCKETS_SECONDS = tuple(h * 3600.0 for h in (0, 1, 2, 4, 6, 8, 10, 15, 20, 30, 50))
RECOVERY_BUCKETS = (10.0, 20.0, 33.0, 40.0, 50.0, 60.0, 67.0, 80.0, 90.0, 100.0)


class RejectReason(StrEnum):
    VALIDATION = "validation"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    STORAGE = "storage"


class AuthFailure(StrEnum):
    """Why a request was refused (neuros.api.auth); the only label of auth failures."""

    MISSING = "missing"  # no Authorization header
    MALFORMED = "malformed"  # not "Bearer <token>"
    UNKNOWN = "unknown"  # no such token (or revoked)
    SCOPE = "scope"  # valid token without the route's scope
    USER = "user"  # valid token, user id outside its set


class ReloadResult(StrEnum):
    OK = "ok"
    ERROR = "error"


class DbOperation(StrEnum):
    INGEST = "ingest"
    READ = "read"
    PROBE = "probe"


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    http_requests: Counter
    http_request_duration: Histogram
    readings_accepted: Counter
    readings_rejected: Counter
    kpi_hrv_rmssd: Histogram
    kpi_sleep_debt: Histogram
    kpi_recovery_score: Histogram
    users_by_readiness: Gauge
    kpi_computation_duration: Histogram
    db_errors: Counter
    auth_failures: Counter
    auth_tokens: Gauge
    auth_reloads: Counter
    auth_last_reload_ok: Gauge


def build_metrics(registry: CollectorRegistry | None = None, *, version: str = "") -> Metrics:
    """Create every metric on ``registry`` (a fresh one by default, for tests)."""
    # "_created" series double the exposition and no rule or dashboard reads them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = registry if registry is not None else CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    Info(f"{PREFIX}_build", "Build of the running agent.", registry=registry).info(
        {"version": version}
    )

    def bounded(kind: type[M], name: str, doc: str, label: str, values: type[StrEnum]) -> M:
        """A metric with one label whose every value is exported from the start (0)."""
        metric = kind(f"{PREFIX}_{name}", doc, [label], registry=registry)
        for value in values:
            metric.labels(value.value)
        return metric

    users = bounded(
        Gauge,
        "users_by_readiness",
        "Users whose latest KPI snapshot is in each readiness band, read from the "
        "database: every replica exports the same figure (aggregate with max).",
        "readiness",
        Readiness,
    )
    rejected = bounded(
        Counter,
        "readings_rejected",
        "Readings in rejected batches, by bounded reason.",
        "reason",
        RejectReason,
    )
    db_errors = bounded(
        Counter, "db_errors", "Database operations that failed.", "operation", DbOperation
    )
    auth_failures = bounded(
        Counter,
        "auth_failures",
        "API requests refused by authentication or authorization, by bounded reason.",
        "reason",
        AuthFailure,
    )
    auth_reloads = bounded(
        Counter,
        "auth_token_reloads",
        "Loads of the API tokens file after start; an error keeps the previous tokens.",
        "result",
        ReloadResult,
    )
    return Metrics(
        registry=registry,
        http_requests=Counter(
            f"{PREFIX}_http_requests",
            "HTTP requests by route template, method and status code.",
            ["method", "route", "status"],
            registry=registry,
        ),
        http_request_duration=Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request duration by route template and method.",
            ["method", "route"],
            buckets=HTTP_LATENCY_BUCKETS_SECONDS,
            registry=registry,
        ),
        readings_accepted=Counter(
            f"{PREFIX}_readings_accepted",
            "Readings stored.",
            registry=registry,
        ),
        readings_rejected=rejected,
        kpi_hrv_rmssd=Histogram(
            f"{PREFIX}_kpi_hrv_rmssd_seconds",
            "HRV RMSSD of each computed KPI snapshot.",
            buckets=HRV_BUCKETS_SECONDS,
            registry=registry,
        ),
        kpi_sleep_debt=Histogram(
            f"{PREFIX}_kpi_sleep_debt_seconds",
            "Sleep debt over 14 days of each computed KPI snapshot.",
            buckets=SLEEP_DEBT_BUCKETS_SECONDS,
            registry=registry,
        ),
        kpi_recovery_score=Histogram(
            f"{PREFIX}_kpi_recovery_score",
            "Recovery score (0-100) of each computed KPI snapshot.",
            buckets=RECOVERY_BUCKETS,
            registry=registry,
        ),
        users_by_readiness=users,
        kpi_computation_duration=Histogram(
            f"{PREFIX}_kpi_computation_duration_seconds",
            "Time to read a user's KPI windows and compute the snapshot.",
            buckets=KPI_DURATION_BUCKETS_SECONDS,
            registry=registry,
        ),
        db_errors=db_errors,
        auth_failures=auth_failures,
        auth_tokens=Gauge(
            f"{PREFIX}_auth_tokens",
            "API tokens currently accepted.",
            registry=registry,
        ),
        auth_reloads=auth_reloads,
        auth_last_reload_ok=Gauge(
            f"{PREFIX}_auth_tokens_last_reload_successful",
            "1 if the last load of the API tokens file succeeded, 0 if the agent kept "
            "older tokens because the file is invalid.",
            registry=registry,
        ),
    )
