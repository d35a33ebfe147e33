"""Health KPIs derived from biometric readings (pure domain logic, no I/O).

Calendar arithmetic uses UTC days only; "today" is the UTC day of ``as_of``.

hrv_rmssd_ms
    Value of the latest RMSSD reading, or None.
hrv_baseline_ms
    Mean of the *daily* mean RMSSD over the 7 UTC days strictly before today. Days
    without data are skipped; None when none of them has data.
hrv_deviation_pct
    ``(hrv_rmssd_ms - hrv_baseline_ms) / hrv_baseline_ms * 100``; None when either is
    None or the baseline is not positive.
sleep_debt_hours
    Sum over the 14 UTC days up to and including today of
    ``max(0, sleep_need_hours - hours slept that day)``, where several readings on one
    day are added up and a day without any sleep reading adds 0.
resting_hr_bpm, resting_hr_baseline_bpm
    As for HRV: the latest reading, and the mean of daily means over the 7 UTC days
    strictly before today.
recovery_score
    ::

        score = 60
                + 0.8 * clamp(hrv_deviation_pct, -50, 50)
                - 2.0 * clamp(resting_hr_bpm - resting_hr_baseline_bpm, 0, 20)
                - 2.0 * clamp(sleep_debt_hours, 0, 20)

    clamped to [0, 100] and rounded to 1 decimal; a term whose input is None adds 0.
readiness
    high when score >= 67, low when score <= 33, moderate otherwise. It is derived from
    the rounded score so that the two never disagree when displayed.

Window points outside their window or recorded after ``as_of`` are ignored, so callers
may pass a superset (see :func:`window_start`).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from itertools import pairwise
from statistics import fmean

HRV_BASELINE_DAYS = 7
SLEEP_DEBT_DAYS = 14
RESTING_HR_BASELINE_DAYS = 7

BASE_SCORE = 60.0
HRV_WEIGHT = 0.8
HRV_DEVIATION_CAP_PCT = 50.0
RESTING_HR_WEIGHT = 2.0
RESTING_HR_EXCESS_CAP_BPM = 20.0
SLEEP_DEBT_WEIGHT = 2.0
SLEEP_DEBT_CAP_HOURS = 20.0
MIN_SCORE = 0.0
MAX_SCORE = 100.0
HIGH_READINESS_MIN_SCORE = 67.0
LOW_READINESS_MAX_SCORE = 33.0

_LOOKBACK_DAYS = max(HRV_BASELINE_DAYS, SLEEP_DEBT_DAYS, RESTING_HR_BASELINE_DAYS)


class Readiness(StrEnum):
    HIGH = "high"
    MODERATE = "moderate"
    LOW = "low"


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")


def _utc_day(value: datetime) -> date:
    return value.astimezone(UTC).date()


@dataclass(frozen=True, slots=True)
class Point:
    """One observation."""

    at: datetime
    value: float

    def __post_init__(self) -> None:
        _require_aware(self.at, "Point.at")
        if not math.isfinite(self.value):
            raise ValueError(f"Point.value must be finite, got {self.value}")


@dataclass(frozen=True, slots=True)
class KpiInputs:
    """Readings for one user, as of their latest reading of any kind."""

    as_of: datetime
    latest_hrv: Point | None
    latest_resting_hr: Point | None
    hrv: Sequence[Point]
    resting_hr: Sequence[Point]
    sleep: Sequence[Point]

    def __post_init__(self) -> None:
        _require_aware(self.as_of, "as_of")
        # as_of is the latest reading of any kind, so a later "latest" is a caller bug
        # that would otherwise surface as a silently wrong current value.
        for name, latest in (
            ("latest_hrv", self.latest_hrv),
            ("latest_resting_hr", self.latest_resting_hr),
        ):
            if latest is not None and latest.at > self.as_of:
                raise ValueError(f"{name} is recorded after as_of")


@dataclass(frozen=True, slots=True)
class KpiSnapshot:
    hrv_rmssd_ms: float | None
    hrv_baseline_ms: float | None
    hrv_deviation_pct: float | None
    sleep_debt_hours: float
    resting_hr_bpm: float | None
    resting_hr_baseline_bpm: float | None
    recovery_score: float
    readiness: Readiness
    as_of: datetime


def rmssd(rr_intervals_ms: Sequence[float]) -> float:
    """Root mean square of successive RR-interval differences, in ms."""
    if len(rr_intervals_ms) < 2:
        raise ValueError("RMSSD needs at least 2 RR intervals")
    return math.sqrt(fmean((b - a) ** 2 for a, b in pairwise(rr_intervals_ms)))


def window_start(as_of: datetime) -> datetime:
    """UTC midnight 14 days before the UTC day of ``as_of``.

    Every window of :func:`compute_snapshot` lies within ``[window_start(as_of), as_of]``,
    so storage can fetch just that range.
    """
    _require_aware(as_of, "as_of")
    first_day = _utc_day(as_of) - timedelta(days=_LOOKBACK_DAYS)
    return datetime.combine(first_day, time.min, tzinfo=UTC)


def _values_by_day(points: Iterable[Point], days: Iterable[date]) -> dict[date, list[float]]:
    wanted = set(days)
    by_day: dict[date, list[float]] = {}
    for point in points:
        day = _utc_day(point.at)
        if day in wanted:
            by_day.setdefault(day, []).append(point.value)
    return dict(sorted(by_day.items()))


def daily_means(points: Iterable[Point], days: Iterable[date]) -> dict[date, float]:
    """Mean value per UTC day, for those of ``days`` that have data."""
    return {day: fmean(values) for day, values in _values_by_day(points, days).items()}


def _days_before(today: date, count: int) -> list[date]:
    return [today - timedelta(days=offset) for offset in range(1, count + 1)]


def _baseline(points: Iterable[Point], today: date, days: int) -> float | None:
    means = daily_means(points, _days_before(today, days))
    return fmean(means.values()) if means else None


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def recovery_score(
    hrv_deviation_pct: float | None,
    resting_hr_excess_bpm: float | None,
    sleep_debt_hours: float,
) -> float:
    """Score in [0, 100], 1 decimal; see the module docstring for the formula."""
    score = BASE_SCORE - SLEEP_DEBT_WEIGHT * _clamp(sleep_debt_hours, 0.0, SLEEP_DEBT_CAP_HOURS)
    if hrv_deviation_pct is not None:
        score += HRV_WEIGHT * _clamp(
            hrv_deviation_pct, -HRV_DEVIATION_CAP_PCT, HRV_DEVIATION_CAP_PCT
        )
    if resting_hr_excess_bpm is not None:
        score -= RESTING_HR_WEIGHT * _clamp(resting_hr_excess_bpm, 0.0, RESTING_HR_EXCESS_CAP_BPM)
    return round(_clamp(score, MIN_SCORE, MAX_SCORE), 1)


def readiness_for(score: float) -> Readiness:
    if score >= HIGH_READINESS_MIN_SCORE:
        return Readiness.HIGH
    if score <= LOW_READINESS_MAX_SCORE:
        return Readiness.LOW
    return Readiness.MODERATE


def compute_snapshot(inputs: KpiInputs, sleep_need_hours: float) -> KpiSnapshot:
    """KPIs for ``inputs`` as defined in the module docstring."""
    if not math.isfinite(sleep_need_hours) or sleep_need_hours < 0:
        raise ValueError(f"sleep_need_hours must be finite and >= 0, got {sleep_need_hours}")
    as_of = inputs.as_of
    today = _utc_day(as_of)

    def until_as_of(points: Sequence[Point]) -> list[Point]:
        return [point for point in points if point.at <= as_of]

    hrv_now = inputs.latest_hrv.value if inputs.latest_hrv is not None else None
    hrv_baseline = _baseline(until_as_of(inputs.hrv), today, HRV_BASELINE_DAYS)
    hrv_deviation: float | None = None
    # Relative change is undefined against a zero baseline (all-constant RR intervals).
    if hrv_now is not None and hrv_baseline is not None and hrv_baseline > 0:
        hrv_deviation = (hrv_now - hrv_baseline) / hrv_baseline * 100

    rhr_now = inputs.latest_resting_hr.value if inputs.latest_resting_hr is not None else None
    rhr_baseline = _baseline(until_as_of(inputs.resting_hr), today, RESTING_HR_BASELINE_DAYS)
    rhr_excess = None if rhr_now is None or rhr_baseline is None else rhr_now - rhr_baseline

    sleep_days = [today - timedelta(days=offset) for offset in range(SLEEP_DEBT_DAYS)]
    # A day with no sleep reading is missing data, not a night without sleep: it adds 0.
    slept = _values_by_day(until_as_of(inputs.sleep), sleep_days)
    sleep_debt = math.fsum(
        max(0.0, sleep_need_hours - math.fsum(hours)) for hours in slept.values()
    )

    score = recovery_score(hrv_deviation, rhr_excess, sleep_debt)
    return KpiSnapshot(
        hrv_rmssd_ms=hrv_now,
        hrv_baseline_ms=hrv_baseline,
        hrv_deviation_pct=hrv_deviation,
        sleep_debt_hours=sleep_debt,
        resting_hr_bpm=rhr_now,
        resting_hr_baseline_bpm=rhr_baseline,
        recovery_score=score,
        readiness=readiness_for(score),
        as_of=as_of,
    )
