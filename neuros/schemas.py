"""Request and response bodies of the public API."""

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
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
MEASUREMENTS = ("rr_intervals_ms", "hrv_rmssd_ms", "resting_hr_bpm", "sleep_hours")

# --- OpenAPI declaration of ``recorded_at`` ------------------------------------------
# What ``_RFC3339`` and pydantic's datetime parser accept together, as one pattern a
# JSON Schema validator evaluates the same way (ASCII digits, no lookaround): a real
# calendar day of year 0001-9999, hour 00-23, minute and second 00-59 (no leap second),
# 1 to 9 fraction digits, and "Z" or an offset of at most +-23:59. The separator may be
# "T", "t" or a space (RFC 3339 section 5.6, note), which is why the declaration has no
# ``format: date-time``: that format forbids the space the server accepts.
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_DATE = (
    f"(?:{_YEAR}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    "|02-(?:0[1-9]|1[0-9]|2[0-8]))"
    f"|{_LEAP_YEAR}-02-29)"
)
_TIME = "(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{1,9})?"
_OFFSET = "(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
RECORDED_AT_PATTERN = f"^{_DATE}[Tt ]{_TIME}{_OFFSET}$"
# The time bounds depend on the server's clock, which JSON Schema cannot refer to; they
# are stated machine-readably as vendor extensions (and in words in the description).
EARLIEST_READING_EXTENSION = "x-earliest"  # an RFC 3339 instant
MAX_FUTURE_EXTENSION = "x-max-future"  # an ISO 8601 duration after the server's clock
_EARLIEST_TEXT = EARLIEST_READING.isoformat().replace("+00:00", "Z")
assert not MAX_CLOCK_SKEW % timedelta(days=1), "x-max-future is declared in whole days"
_MAX_FUTURE_TEXT = f"P{MAX_CLOCK_SKEW.days}D"
RECORDED_AT_SCHEMA: dict[str, Any] = {
    "type": "string",
    "pattern": RECORDED_AT_PATTERN,
    EARLIEST_READING_EXTENSION: _EARLIEST_TEXT,
    MAX_FUTURE_EXTENSION: _MAX_FUTURE_TEXT,
    "description": (
        "RFC 3339 date-time with a mandatory offset, e.g. 2026-03-01T07:00:00+01:00 "
        "('T', 't' or a space between date and time; 'Z', 'z' or +hh:mm; up to 9 "
        "fraction digits, no leap second). As an instant, whatever the offset, it must "
        f"not be before {_EARLIEST_TEXT} ({EARLIEST_READING_EXTENSION}) nor later than "
        f"the server's clock plus {_MAX_FUTURE_TEXT} ({MAX_FUTURE_EXTENSION})."
    ),
    "examples": ["2026-03-01T07:00:00+01:00"],
}


def _measurement_present(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


_AT_LEAST_ONE_MEASUREMENT: dict[str, Any] = {
    "anyOf": [_measurement_present(name) for name in MEASUREMENTS],
}


class Reading(BaseModel):
    """One biometric reading. At least one measurement besides ``recorded_at``."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        # "At least one measurement": one branch per measurement, present and not null.
        json_schema_extra=_AT_LEAST_ONE_MEASUREMENT,
    )

    recorded_at: Annotated[AwareDatetime, WithJsonSchema(RECORDED_AT_SCHEMA)]
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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "description": (
                "1 to 1000 readings, stored all or nothing. A body larger than "
                "NEUROS_MAX_BODY_BYTES is refused with 413 whatever it holds."
            ),
            "examples": [
                {
                    "readings": [
                        {
                            "recorded_at": "2026-03-01T07:00:00+01:00",
                            "rr_intervals_ms": [800, 810, 790, 805, 795],
                            "resting_hr_bpm": 52,
                            "sleep_hours": 7.5,
                        }
                    ]
                }
            ],
        },
    )

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


class Status(BaseModel):
    status: str


# The answer of every route to a storage failure (neuros.api.errors.storage_error).
STORAGE_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "Storage unavailable; nothing was stored. Retry after Retry-After",
        "headers": {
            "Retry-After": {
                "description": "Seconds to wait before retrying",
                "required": True,
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    }
}
