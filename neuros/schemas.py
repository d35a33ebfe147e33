"""Request and response bodies of the public API."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from neuros.kpi import KpiSnapshot, Readiness
from neuros.recommend import Recommendation

USER_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_READINGS_PER_BATCH = 1000

# RFC 3339 date-time with a mandatory offset ("Z" or "+hh:mm").
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)

# Strict: JSON true/false or "60" are not numbers.
RrInterval = Annotated[float, Field(strict=True, ge=250, le=2500)]
EARLIEST_READING = datetime(1970, 1, 1, tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(days=1)


class Reading(BaseModel):
    """One biometric reading. At least one measurement besides ``recorded_at``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    recorded_at: AwareDatetime = Field(
        description="RFC 3339 timestamp with offset, e.g. 2026-03-01T07:00:00+01:00"
    )
    rr_intervals_ms: Annotated[list[RrInterval], Field(min_length=2, max_length=20000)] | None = (
        Field(default=None, description="RR intervals in ms, each in [250, 2500]")
    )
    hrv_rmssd_ms: Annotated[float, Field(strict=True, gt=0, le=500)] | None = Field(
        default=None, description="RMSSD reported by the device, in ms"
    )
    resting_hr_bpm: Annotated[float, Field(strict=True, ge=20, le=250)] | None = None
    sleep_hours: Annotated[float, Field(strict=True, ge=0, le=24)] | None = None

    @field_validator("recorded_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        if not isinstance(value, str) or not _RFC3339.match(value):
            raise ValueError("must be an RFC 3339 date-time string with an offset")
        return value

    @field_validator("recorded_at", mode="after")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        try:
            at = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("is out of range") from None
        if at < EARLIEST_READING:
            raise ValueError("must not be before 1970-01-01T00:00:00Z")
        if at > datetime.now(UTC) + MAX_CLOCK_SKEW:
            raise ValueError("must not be more than a day in the future")
        return value

    @model_validator(mode="after")
    def _has_measurement(self) -> Self:
        if (
            self.rr_intervals_ms is None
            and self.hrv_rmssd_ms is None
            and self.resting_hr_bpm is None
            and self.sleep_hours is None
        ):
            raise ValueError(
                "needs at least one of rr_intervals_ms, hrv_rmssd_ms, resting_hr_bpm, sleep_hours"
            )
        return self


class ReadingsBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    readings: list[Reading] = Field(min_length=1, max_length=MAX_READINGS_PER_BATCH)


class Kpis(BaseModel):
    hrv_rmssd_ms: float | None
    hrv_baseline_ms: float | None
    hrv_deviation_pct: float | None
    sleep_debt_hours: float
    resting_hr_bpm: float | None
    resting_hr_baseline_bpm: float | None
    recovery_score: float = Field(ge=0, le=100)
    readiness: Readiness
    as_of: datetime

    @classmethod
    def of(cls, snapshot: KpiSnapshot) -> "Kpis":
        return cls(
            hrv_rmssd_ms=snapshot.hrv_rmssd_ms,
            hrv_baseline_ms=snapshot.hrv_baseline_ms,
            hrv_deviation_pct=snapshot.hrv_deviation_pct,
            sleep_debt_hours=snapshot.sleep_debt_hours,
            resting_hr_bpm=snapshot.resting_hr_bpm,
            resting_hr_baseline_bpm=snapshot.resting_hr_baseline_bpm,
            recovery_score=snapshot.recovery_score,
            readiness=snapshot.readiness,
            as_of=snapshot.as_of,
        )


class IngestResult(BaseModel):
    accepted: int
    kpis: Kpis


class Analysis(BaseModel):
    recommendation: Recommendation
    reasons: list[str]
    kpis: Kpis


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    detail: str | list[ErrorItem]
