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

Every window statistic is a function of per-day totals (sum and count of a day's
values), so :func:`compute_snapshot` first reduces the points to :class:`DailyInputs`
and :func:`compute_from_daily` does the rest. Storage that keeps those totals as it
ingests can serve a snapshot from at most 15 rows a user (see ``neuros.store``).
Measurements live on a fixed-point grid (:data:`QUANTA_PER_UNIT`): on it every value
is an exact float and every sum an exact integer number of quanta, so totals kept
incrementally, replacements subtracted, equal :func:`math.fsum` of the raw values bit
for bit, and both paths give the same snapshot.
"""

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
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

# 2**-24 of a unit: 6e-8 ms, bpm or hours, far below any device's resolution. Values up
# to 2**29 units stay exact floats, and a day's sum of them fits a 64-bit integer for
# over a billion readings.
QUANTA_PER_UNIT = 1 << 24


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
        _check_latest(self.as_of, self.latest_hrv, self.latest_resting_hr)


@dataclass(frozen=True, slots=True)
class DayTotals:
    """Sum (:func:`math.fsum`) and count of one measurement's values on one UTC day."""

    total: float
    count: int

    @property
    def mean(self) -> float:
        return self.total / self.count


@dataclass(frozen=True, slots=True)
class DailyInputs:
    """:class:`KpiInputs` reduced to per-day totals over :func:`window_days`.

    Days without a value of that measurement are absent (or have a count of 0).
    """

    as_of: datetime
    latest_hrv: Point | None
    latest_resting_hr: Point | None
    hrv: Mapping[date, DayTotals]
    resting_hr: Mapping[date, DayTotals]
    sleep: Mapping[date, DayTotals]

    def __post_init__(self) -> None:
        _check_latest(self.as_of, self.latest_hrv, self.latest_resting_hr)


def _check_latest(as_of: datetime, latest_hrv: Point | None, latest_rhr: Point | None) -> None:
    _require_aware(as_of, "as_of")
    # as_of is the latest reading of any kind, so a later "latest" is a caller bug
    # that would otherwise surface as a silently wrong current value.
    for name, latest in (("latest_hrv", latest_hrv), ("latest_resting_hr", latest_rhr)):
        if latest is not None and latest.at > as_of:
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


def to_quanta(value: float) -> int:
    """``value`` as a whole number of quanta (nearest grid point)."""
    return round(value * QUANTA_PER_UNIT)


def from_quanta(quanta: int) -> float:
    """The float nearest to ``quanta`` quanta (exact below 2**53 quanta)."""
    return quanta / QUANTA_PER_UNIT


def quantize(value: float) -> float:
    """``value`` on the measurement grid."""
    return from_quanta(to_quanta(value))


def rmssd(rr_intervals_ms: Sequence[float]) -> float:
    """Root mean square of successive RR-interval differences, in ms."""
    if len(rr_intervals_ms) < 2:
        raise ValueError("RMSSD needs at least 2 RR intervals")
    # map over C operators: about half the time of a comprehension over pairwise().
    diffs = list(map(operator.sub, rr_intervals_ms[1:], rr_intervals_ms[:-1]))
    return math.sqrt(math.fsum(map(operator.mul, diffs, diffs)) / len(diffs))


def window_start(as_of: datetime) -> datetime:
    """UTC midnight 14 days before the UTC day of ``as_of``.

    Every window of :func:`compute_snapshot` lies within ``[window_start(as_of), as_of]``,
    so storage can fetch just that range.
    """
    _require_aware(as_of, "as_of")
    first_day = _utc_day(as_of) - timedelta(days=_LOOKBACK_DAYS)
    return datetime.combine(first_day, time.min, tzinfo=UTC)


def utc_day(value: datetime) -> date:
    """The UTC calendar day of an aware instant."""
    _require_aware(value, "value")
    return _utc_day(value)


def window_days(as_of: datetime) -> list[date]:
    """The UTC days any KPI of a snapshot as of ``as_of`` reads, oldest first."""
    today = utc_day(as_of)
    return [today - timedelta(days=offset) for offset in range(_LOOKBACK_DAYS, -1, -1)]


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


def _baseline(days: Mapping[date, DayTotals], today: date, count: int) -> float | None:
    """Mean of the daily means over the ``count`` days before ``today``."""
    first = today - timedelta(days=count)
    means = [totals.mean for day, totals in days.items() if first <= day < today and totals.count]
    return fmean(means) if means else None


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


def summarize(inputs: KpiInputs) -> DailyInputs:
    """Reduce raw points to the per-day totals of the snapshot's windows."""
    as_of = inputs.as_of
    days = window_days(as_of)

    def totals(points: Sequence[Point]) -> dict[date, DayTotals]:
        by_day = _values_by_day((p for p in points if p.at <= as_of), days)
        return {day: DayTotals(math.fsum(values), len(values)) for day, values in by_day.items()}

    return DailyInputs(
        as_of=as_of,
        latest_hrv=inputs.latest_hrv,
        latest_resting_hr=inputs.latest_resting_hr,
        hrv=totals(inputs.hrv),
        resting_hr=totals(inputs.resting_hr),
        sleep=totals(inputs.sleep),
    )


def compute_snapshot(inputs: KpiInputs, sleep_need_hours: float) -> KpiSnapshot:
    """KPIs for ``inputs`` as defined in the module docstring (the reference path)."""
    return compute_from_daily(summarize(inputs), sleep_need_hours)


def compute_from_daily(inputs: DailyInputs, sleep_need_hours: float) -> KpiSnapshot:
    """KPIs from per-day totals; equal to :func:`compute_snapshot` on the raw points."""
    if not math.isfinite(sleep_need_hours) or sleep_need_hours < 0:
        raise ValueError(f"sleep_need_hours must be finite and >= 0, got {sleep_need_hours}")
    as_of = inputs.as_of
    today = _utc_day(as_of)

    hrv_now = inputs.latest_hrv.value if inputs.latest_hrv is not None else None
    hrv_baseline = _baseline(inputs.hrv, today, HRV_BASELINE_DAYS)
    hrv_deviation: float | None = None
    # Relative change is undefined against a zero baseline (all-constant RR intervals).
    if hrv_now is not None and hrv_baseline is not None and hrv_baseline > 0:
        hrv_deviation = (hrv_now - hrv_baseline) / hrv_baseline * 100

    rhr_now = inputs.latest_resting_hr.value if inputs.latest_resting_hr is not None else None
    rhr_baseline = _baseline(inputs.resting_hr, today, RESTING_HR_BASELINE_DAYS)
    rhr_excess = None if rhr_now is None or rhr_baseline is None else rhr_now - rhr_baseline

    # A day with no sleep reading is missing data, not a night without sleep: it adds 0.
    first_sleep_day = today - timedelta(days=SLEEP_DEBT_DAYS - 1)
    sleep_debt = math.fsum(
        max(0.0, sleep_need_hours - totals.total)
        for day, totals in inputs.sleep.items()
        if first_sleep_day <= day <= today and totals.count
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
