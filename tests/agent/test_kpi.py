"""Hand-computed checks of the KPI definitions in neuros.kpi."""

import math
import time as clock
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuros.kpi import (
    HRV_BASELINE_DAYS,
    QUANTA_PER_UNIT,
    RESTING_HR_BASELINE_DAYS,
    SLEEP_DEBT_DAYS,
    DailyInputs,
    DayTotals,
    KpiInputs,
    KpiSnapshot,
    Point,
    Readiness,
    compute_from_daily,
    compute_snapshot,
    daily_means,
    from_quanta,
    quantize,
    readiness_for,
    recovery_score,
    rmssd,
    summarize,
    to_quanta,
    utc_day,
    window_days,
    window_start,
)

PLUS3 = timezone(timedelta(hours=3))
MINUS2 = timezone(timedelta(hours=-2))
AS_OF = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)  # "today" is 2026-03-10 (UTC)
NEED = 8.0


def at(day: int, hour: int = 12, month: int = 3, tz: timezone = UTC) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=tz)


def pt(day: int, value: float, hour: int = 12, month: int = 3, tz: timezone = UTC) -> Point:
    return Point(at(day, hour, month, tz), value)


def snapshot(
    *,
    as_of: datetime = AS_OF,
    latest_hrv: float | None = None,
    latest_resting_hr: float | None = None,
    hrv: Sequence[Point] = (),
    resting_hr: Sequence[Point] = (),
    sleep: Sequence[Point] = (),
    need: float = NEED,
) -> KpiSnapshot:
    inputs = KpiInputs(
        as_of=as_of,
        latest_hrv=None if latest_hrv is None else Point(as_of, latest_hrv),
        latest_resting_hr=None if latest_resting_hr is None else Point(as_of, latest_resting_hr),
        hrv=hrv,
        resting_hr=resting_hr,
        sleep=sleep,
    )
    return compute_snapshot(inputs, need)


# --- rmssd ---------------------------------------------------------------


def test_rmssd_hand_computed() -> None:
    # diffs 10, -20, 15, -10 -> squares 100, 400, 225, 100 -> sum 825 -> mean 825/4 = 206.25
    # sqrt(206.25) = 14.36140...
    assert rmssd([800, 810, 790, 805, 795]) == pytest.approx(math.sqrt(206.25))
    assert round(rmssd([800, 810, 790, 805, 795]), 4) == 14.3614


def test_rmssd_two_values_and_constant() -> None:
    assert rmssd([1000, 970]) == pytest.approx(30.0)  # one diff -30 -> sqrt(900)
    assert rmssd([900, 900, 900]) == 0.0


@pytest.mark.parametrize("rr", [[], [800]])
def test_rmssd_needs_two_values(rr: list[float]) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        rmssd(rr)


# --- window_start / daily_means ------------------------------------------


def test_window_constants() -> None:
    assert (HRV_BASELINE_DAYS, SLEEP_DEBT_DAYS, RESTING_HR_BASELINE_DAYS) == (7, 14, 7)


def test_window_start_is_utc_midnight_14_days_before() -> None:
    assert window_start(AS_OF) == datetime(2026, 2, 24, tzinfo=UTC)  # 2026-03-10 - 14 days
    # 2026-03-10T01:00+03:00 is 2026-03-09T22:00Z, so the UTC day is 03-09 -> 02-23
    assert window_start(at(10, 1, tz=PLUS3)) == datetime(2026, 2, 23, tzinfo=UTC)


def test_window_start_covers_every_window() -> None:
    today = AS_OF.date()
    earliest_sleep_day = today - timedelta(days=SLEEP_DEBT_DAYS - 1)  # today counts as a day
    earliest_baseline_day = today - timedelta(days=max(HRV_BASELINE_DAYS, RESTING_HR_BASELINE_DAYS))
    earliest = min(earliest_sleep_day, earliest_baseline_day)
    assert window_start(AS_OF) <= datetime.combine(earliest, time.min, tzinfo=UTC)


def test_daily_means_per_utc_day_only_requested_days() -> None:
    points = [
        pt(8, 50.0),
        pt(8, 70.0),  # 03-08: (50 + 70) / 2 = 60
        pt(10, 40.0, hour=1, tz=PLUS3),  # 03-09T22:00Z -> 03-09: 40
        pt(7, 99.0),  # not requested
    ]
    days = [date(2026, 3, 8), date(2026, 3, 9), date(2026, 3, 6)]  # 03-06 has no data
    assert daily_means(points, days) == {date(2026, 3, 8): 60.0, date(2026, 3, 9): 40.0}


# --- validation ------------------------------------------------------------


def test_naive_datetimes_rejected() -> None:
    naive = datetime(2026, 3, 10, 8, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        Point(naive, 1.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        window_start(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        KpiInputs(naive, None, None, (), (), ())


def test_non_finite_value_and_bad_sleep_need_rejected() -> None:
    with pytest.raises(ValueError, match="finite"):
        Point(AS_OF, math.nan)
    inputs = KpiInputs(AS_OF, None, None, (), (), ())
    with pytest.raises(ValueError, match="sleep_need_hours"):
        compute_snapshot(inputs, -1.0)


def test_latest_after_as_of_rejected() -> None:
    later = Point(AS_OF + timedelta(minutes=1), 50.0)
    with pytest.raises(ValueError, match="latest_hrv"):
        KpiInputs(AS_OF, later, None, (), (), ())


# --- compute_snapshot: full worked example ----------------------------------


def test_worked_example() -> None:
    # today = 03-10; baseline days 03-03..03-09; sleep days 02-25..03-10.
    hrv = [
        pt(8, 50.0),
        pt(8, 70.0),  # 03-08 daily mean 60
        pt(9, 40.0),  # 03-09 daily mean 40
        pt(5, 50.0),  # 03-05 daily mean 50
        pt(2, 1000.0),  # 03-02: 8 days before today, outside the baseline
        pt(10, 1000.0, hour=7),  # today: not part of the baseline
    ]
    # baseline = mean of daily means (60 + 40 + 50) / 3 = 50
    # (a mean of raw points would be (50+70+40+50)/4 = 52.5)
    # deviation = (45 - 50) / 50 * 100 = -10 %
    resting_hr = [pt(9, 55.0), pt(8, 57.0), pt(1, 90.0)]  # 03-01 outside -> baseline 56
    # resting HR excess = 60 - 56 = 4 bpm
    sleep = [
        pt(10, 6.0, hour=6),
        pt(10, 1.0, hour=7),  # 03-10 total 7 h -> debt 8 - 7 = 1
        pt(9, 5.0),  # 03-09 -> debt 3
        pt(8, 9.0),  # 03-08 surplus -> debt 0 (does not offset other days)
        pt(25, 6.0, month=2),  # 02-25, first day of the window -> debt 2
        pt(24, 0.0, month=2),  # 02-24, outside the window -> ignored
        pt(10, 0.0, hour=9),  # after as_of (08:00) -> ignored
    ]
    # other 10 days have no sleep data -> add 0; debt = 1 + 3 + 0 + 2 = 6
    snap = snapshot(
        latest_hrv=45.0, latest_resting_hr=60.0, hrv=hrv, resting_hr=resting_hr, sleep=sleep
    )
    assert snap.hrv_rmssd_ms == 45.0
    assert snap.hrv_baseline_ms == pytest.approx(50.0)
    assert snap.hrv_deviation_pct == pytest.approx(-10.0)
    assert snap.resting_hr_bpm == 60.0
    assert snap.resting_hr_baseline_bpm == pytest.approx(56.0)
    assert snap.sleep_debt_hours == pytest.approx(6.0)
    # score = 60 + 0.8 * (-10) - 2 * 4 - 2 * 6 = 60 - 8 - 8 - 12 = 32 -> low (<= 33)
    assert snap.recovery_score == 32.0
    assert snap.readiness is Readiness.LOW
    assert snap.as_of == AS_OF


def test_no_data_at_all() -> None:
    snap = snapshot()
    assert snap.hrv_rmssd_ms is None
    assert snap.hrv_baseline_ms is None
    assert snap.hrv_deviation_pct is None
    assert snap.resting_hr_bpm is None
    assert snap.resting_hr_baseline_bpm is None
    assert snap.sleep_debt_hours == 0.0
    assert isinstance(snap.sleep_debt_hours, float)
    assert snap.recovery_score == 60.0  # every term contributes 0
    assert snap.readiness is Readiness.MODERATE


def test_no_prior_data_means_no_baseline_or_deviation() -> None:
    # Only today's readings exist: current values, but nothing before today.
    snap = snapshot(
        latest_hrv=45.0,
        latest_resting_hr=60.0,
        hrv=[pt(10, 45.0, hour=7)],
        resting_hr=[pt(10, 60.0, hour=7)],
    )
    assert snap.hrv_rmssd_ms == 45.0
    assert snap.hrv_baseline_ms is None
    assert snap.hrv_deviation_pct is None
    assert snap.resting_hr_baseline_bpm is None
    assert snap.recovery_score == 60.0


def test_baseline_without_current_value() -> None:
    snap = snapshot(hrv=[pt(9, 50.0)], resting_hr=[pt(9, 55.0)])
    assert snap.hrv_baseline_ms == 50.0
    assert snap.hrv_deviation_pct is None
    assert snap.resting_hr_baseline_bpm == 55.0
    assert snap.recovery_score == 60.0


def test_zero_baseline_gives_no_deviation() -> None:
    snap = snapshot(latest_hrv=30.0, hrv=[pt(9, 0.0)])
    assert snap.hrv_baseline_ms == 0.0
    assert snap.hrv_deviation_pct is None


def test_baseline_window_edges() -> None:
    # 03-03 is the 7th day before 03-10 (inside); 03-02 is the 8th (outside).
    snap = snapshot(latest_hrv=40.0, hrv=[pt(3, 40.0, hour=0), pt(2, 80.0, hour=23)])
    assert snap.hrv_baseline_ms == 40.0
    assert snap.hrv_deviation_pct == 0.0


def test_baseline_days_follow_utc_not_local_time() -> None:
    hrv = [
        # 2026-03-10T01:00+03:00 == 2026-03-09T22:00Z -> UTC day 03-09, inside the baseline
        pt(10, 40.0, hour=1, tz=PLUS3),
        # 2026-03-09T23:00-02:00 == 2026-03-10T01:00Z -> today in UTC, not in the baseline
        pt(9, 1000.0, hour=23, tz=MINUS2),
    ]
    snap = snapshot(latest_hrv=50.0, hrv=hrv)
    assert snap.hrv_baseline_ms == 40.0
    assert snap.hrv_deviation_pct == pytest.approx(25.0)  # (50 - 40) / 40 * 100


def test_as_of_with_offset_uses_its_utc_day() -> None:
    # as_of 2026-03-10T01:00+03:00 is 2026-03-09T22:00Z: today is 03-09, so a reading on
    # 03-09 UTC is "today" (not baseline) and 03-08 is in the baseline.
    as_of = at(10, 1, tz=PLUS3)
    snap = snapshot(as_of=as_of, latest_hrv=60.0, hrv=[pt(9, 1000.0, hour=3), pt(8, 50.0)])
    assert snap.hrv_baseline_ms == 50.0
    assert snap.as_of == as_of


def test_days_without_sleep_add_zero() -> None:
    # One night of 5 h in 14 days: debt 8 - 5 = 3, not 3 + 13 * 8.
    snap = snapshot(sleep=[pt(4, 5.0)])
    assert snap.sleep_debt_hours == pytest.approx(3.0)


def test_multiple_sleep_readings_on_one_day_are_summed() -> None:
    # 4.5 + 2.0 + 1.0 = 7.5 h -> debt 0.5; a mean would give 2.5 h -> debt 5.5
    sleep = [pt(9, 4.5, hour=6), pt(9, 2.0, hour=8), pt(9, 1.0, hour=15)]
    assert snapshot(sleep=sleep).sleep_debt_hours == pytest.approx(0.5)


def test_sleep_day_boundaries_in_utc() -> None:
    sleep = [
        # 2026-02-25T01:00+03:00 == 02-24T22:00Z: before the first window day -> ignored
        pt(25, 0.0, hour=1, month=2, tz=PLUS3),
        # 2026-03-10T07:00+03:00 == 03-10T04:00Z: today, before as_of -> debt 8 - 3 = 5
        pt(10, 3.0, hour=7, tz=PLUS3),
        # 2026-03-10T07:00-02:00 == 03-10T09:00Z: after as_of (08:00Z) -> ignored
        pt(10, 0.0, hour=7, tz=MINUS2),
    ]
    assert snapshot(sleep=sleep).sleep_debt_hours == pytest.approx(5.0)


def test_points_after_as_of_ignored_in_every_series() -> None:
    late = AS_OF + timedelta(hours=1)
    snap = snapshot(
        hrv=[Point(late, 10.0)], resting_hr=[Point(late, 10.0)], sleep=[Point(late, 0.0)]
    )
    assert snap.hrv_baseline_ms is None
    assert snap.resting_hr_baseline_bpm is None
    assert snap.sleep_debt_hours == 0.0


def test_resting_hr_below_baseline_is_not_rewarded() -> None:
    # excess = 50 - 60 = -10 -> clamped to 0
    snap = snapshot(latest_resting_hr=50.0, resting_hr=[pt(9, 60.0)])
    assert snap.recovery_score == 60.0


# --- recovery score and readiness ------------------------------------------


def test_recovery_score_terms_and_caps() -> None:
    assert recovery_score(None, None, 0.0) == 60.0
    assert recovery_score(10.0, None, 0.0) == 68.0  # 60 + 0.8 * 10
    assert recovery_score(80.0, None, 0.0) == 100.0  # capped at +50 -> 60 + 40
    assert recovery_score(-80.0, None, 0.0) == 20.0  # capped at -50 -> 60 - 40
    assert recovery_score(None, 5.0, 0.0) == 50.0  # 60 - 2 * 5
    assert recovery_score(None, 30.0, 0.0) == 20.0  # capped at 20 -> 60 - 40
    assert recovery_score(None, None, 25.0) == 20.0  # capped at 20 -> 60 - 40
    # 60 - 40 - 40 - 40 = -60 -> clamped to 0
    assert recovery_score(-80.0, 30.0, 25.0) == 0.0
    # 60 + 0.8 * 1.23 = 60.984 -> 61.0 (one decimal)
    assert recovery_score(1.23, None, 0.0) == 61.0


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (100.0, Readiness.HIGH),
        (67.0, Readiness.HIGH),
        (66.9, Readiness.MODERATE),
        (50.0, Readiness.MODERATE),
        (33.1, Readiness.MODERATE),
        (33.0, Readiness.LOW),
        (0.0, Readiness.LOW),
    ],
)
def test_readiness_boundaries(score: float, expected: Readiness) -> None:
    assert readiness_for(score) is expected


def test_snapshot_exactly_at_67_is_high() -> None:
    # baseline 80, latest 87 -> deviation 7 / 80 * 100 = 8.75 % -> 60 + 0.8 * 8.75 = 67.0
    snap = snapshot(latest_hrv=87.0, hrv=[pt(9, 80.0)])
    assert snap.hrv_deviation_pct == pytest.approx(8.75)
    assert snap.recovery_score == 67.0
    assert snap.readiness is Readiness.HIGH


def test_snapshot_exactly_at_33_is_low() -> None:
    # debt (8 - 0) + (8 - 2.5) = 13.5 h -> 60 - 2 * 13.5 = 33.0
    snap = snapshot(sleep=[pt(9, 0.0), pt(8, 2.5)])
    assert snap.sleep_debt_hours == pytest.approx(13.5)
    assert snap.recovery_score == 33.0
    assert snap.readiness is Readiness.LOW


# --- monotonicity (hypothesis) ---------------------------------------------

values = st.floats(min_value=20.0, max_value=200.0, allow_nan=False)
bpm = st.floats(min_value=35.0, max_value=120.0, allow_nan=False)
hours = st.floats(min_value=0.0, max_value=12.0, allow_nan=False)


@given(baseline=values, a=values, b=values)
def test_score_non_decreasing_in_hrv(baseline: float, a: float, b: float) -> None:
    low, high = sorted((a, b))
    history = [pt(9, baseline)]
    s_low = snapshot(latest_hrv=low, hrv=history)
    s_high = snapshot(latest_hrv=high, hrv=history)
    assert s_low.recovery_score <= s_high.recovery_score


@given(baseline=bpm, a=bpm, b=bpm)
def test_score_non_increasing_in_resting_hr(baseline: float, a: float, b: float) -> None:
    low, high = sorted((a, b))
    history = [pt(9, baseline)]
    s_low = snapshot(latest_resting_hr=low, resting_hr=history)
    s_high = snapshot(latest_resting_hr=high, resting_hr=history)
    assert s_low.recovery_score >= s_high.recovery_score


@given(
    nights=st.lists(hours, min_size=1, max_size=SLEEP_DEBT_DAYS),
    index=st.integers(min_value=0),
    cut=st.floats(min_value=0.0, max_value=12.0, allow_nan=False),
    hrv_now=st.one_of(st.none(), values),
)
def test_score_non_increasing_in_sleep_debt(
    nights: list[float], index: int, cut: float, hrv_now: float | None
) -> None:
    # Sleeping less on one night can only raise the debt and lower (or keep) the score.
    def sleep(per_night: list[float]) -> list[Point]:
        return [Point(AS_OF - timedelta(days=i), h) for i, h in enumerate(per_night)]

    less = list(nights)
    i = index % len(nights)
    less[i] = max(0.0, less[i] - cut)
    history = [pt(9, 60.0)]
    more_sleep = snapshot(sleep=sleep(nights), latest_hrv=hrv_now, hrv=history)
    less_sleep = snapshot(sleep=sleep(less), latest_hrv=hrv_now, hrv=history)
    assert less_sleep.sleep_debt_hours >= more_sleep.sleep_debt_hours
    assert less_sleep.recovery_score <= more_sleep.recovery_score


@given(
    dev=st.one_of(st.none(), st.floats(-200, 200)),
    excess=st.one_of(st.none(), st.floats(-50, 50)),
    debt=st.floats(0, 100),
)
def test_score_in_range_with_one_decimal(
    dev: float | None, excess: float | None, debt: float
) -> None:
    score = recovery_score(dev, excess, debt)
    assert 0.0 <= score <= 100.0
    assert score == round(score, 1)


# --- edges the mutation tester found (docs/mutation-testing.md) -------------------


def test_recovery_score_keeps_one_decimal() -> None:
    # 60 + 0.8 * 0.07 = 60.056 -> 60.1: neither 60 (no decimal) nor 60.06 (two).
    assert recovery_score(0.07, None, 0.0) == 60.1
    assert recovery_score(2.0, None, 0.0) == 61.6  # 60 + 1.6
    assert recovery_score(None, 0.25, 0.0) == 59.5  # 60 - 2 * 0.25
    # A whole snapshot: baseline 40, latest 41.3 -> +3.25 % -> 60 + 2.6 = 62.6.
    snap = snapshot(latest_hrv=41.3, hrv=[pt(9, 40.0)])
    assert snap.recovery_score == 62.6
    assert snap.readiness is Readiness.MODERATE


def test_a_point_at_as_of_counts() -> None:
    """Points recorded exactly at ``as_of`` are in; only later ones are out."""
    inputs = KpiInputs(AS_OF, None, None, hrv=(), resting_hr=(), sleep=[Point(AS_OF, 5.0)])
    assert summarize(inputs).sleep == {AS_OF.date(): DayTotals(5.0, 1)}
    assert compute_snapshot(inputs, NEED).sleep_debt_hours == 3.0


@pytest.mark.parametrize("need", [0.0, 0.5])
def test_any_finite_non_negative_sleep_need_is_accepted(need: float) -> None:
    # One night of 0.25 h: a need of 0 owes nothing, a need of 0.5 owes 0.25 h.
    snap = snapshot(sleep=[pt(9, 0.25)], need=need)
    assert snap.sleep_debt_hours == max(0.0, need - 0.25)


@pytest.mark.parametrize("need", [-1.0, -1e-9, math.nan, math.inf, -math.inf])
def test_a_bad_sleep_need_is_refused_by_both_paths(need: float) -> None:
    inputs = KpiInputs(AS_OF, None, None, (), (), ())
    message = rf"^sleep_need_hours must be finite and >= 0, got {need}$"
    with pytest.raises(ValueError, match=message):
        compute_snapshot(inputs, need)
    with pytest.raises(ValueError, match=message):
        compute_from_daily(summarize(inputs), need)


def test_a_baseline_below_one_still_gives_a_deviation() -> None:
    # Only a baseline of exactly 0 is undefined: 0.5 -> 1.0 is +100 % (capped at +50).
    snap = snapshot(latest_hrv=1.0, hrv=[pt(9, 0.5)])
    assert snap.hrv_deviation_pct == 100.0
    assert snap.recovery_score == 100.0


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: as good as naive."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


def test_a_tzinfo_without_offset_is_naive() -> None:
    with pytest.raises(ValueError, match=r"^Point\.at must be timezone-aware, got naive "):
        Point(datetime(2026, 3, 10, tzinfo=_NoOffset()), 1.0)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda d: Point(d, 1.0), "Point.at"),
        (lambda d: KpiInputs(d, None, None, (), (), ()), "as_of"),
        (lambda d: DailyInputs(d, None, None, {}, {}, {}), "as_of"),
        (window_start, "as_of"),
        (utc_day, "value"),
    ],
)
def test_naive_datetimes_are_named_in_the_error(call: object, name: str) -> None:
    naive = datetime(2026, 3, 10, 8, 0)
    with pytest.raises(ValueError, match=rf"^{name} must be timezone-aware, got naive "):
        call(naive)  # type: ignore[operator]


@pytest.mark.parametrize("kind", [KpiInputs, DailyInputs])
@pytest.mark.parametrize("field", ["latest_hrv", "latest_resting_hr"])
def test_a_latest_reading_after_as_of_is_refused(kind: type, field: str) -> None:
    later = Point(AS_OF + timedelta(seconds=1), 50.0)
    latest = {"latest_hrv": None, "latest_resting_hr": None, field: later}
    empty: tuple[()] | dict[date, DayTotals] = () if kind is KpiInputs else {}
    with pytest.raises(ValueError, match=rf"^{field} is recorded after as_of$"):
        kind(AS_OF, latest["latest_hrv"], latest["latest_resting_hr"], empty, empty, empty)
    # At as_of itself it is the latest reading of all: fine.
    at = {**latest, field: Point(AS_OF, 50.0)}
    kind(AS_OF, at["latest_hrv"], at["latest_resting_hr"], empty, empty, empty)


def test_rmssd_error_message() -> None:
    with pytest.raises(ValueError, match=r"^RMSSD needs at least 2 RR intervals$"):
        rmssd([800.0])


def test_window_days_are_the_15_utc_days_up_to_today() -> None:
    days = window_days(AS_OF)
    assert len(days) == SLEEP_DEBT_DAYS + 1
    assert days[0] == date(2026, 2, 24)
    assert days[-1] == date(2026, 3, 10)
    assert days == sorted(days)
    assert days[0] == window_start(AS_OF).date()


@pytest.fixture
def tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is UTC+9 for the test."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    clock.tzset()
    yield
    monkeypatch.undo()
    clock.tzset()


@pytest.mark.usefixtures("tokyo")
def test_utc_days_do_not_follow_the_local_time_zone() -> None:
    late = datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # 2026-03-11 05:00 in Tokyo
    assert late.astimezone().date() == date(2026, 3, 11)  # the zone did change
    assert utc_day(late) == date(2026, 3, 10)
    assert window_start(late) == datetime(2026, 2, 24, tzinfo=UTC)
    assert window_days(late)[-1] == date(2026, 3, 10)
    # A sleep reading of that evening counts for 03-10, today, in a snapshot as of then.
    snap = snapshot(as_of=late, sleep=[Point(late - timedelta(hours=1), 6.0)])
    assert snap.sleep_debt_hours == 2.0


def test_quanta_grid() -> None:
    assert QUANTA_PER_UNIT == 2**24
    assert to_quanta(1.5) == 3 * 2**23
    assert to_quanta(2.0**-25) in (0, 1)  # half a quantum rounds to a neighbour
    assert to_quanta(3 * 2.0**-25) == 2  # 1.5 quanta -> 2 (round half to even)
    assert from_quanta(2**24) == 1.0
    assert from_quanta(3) == 3 / 2**24
    assert quantize(1 / 3) * 2**24 == round(2**24 / 3)
    assert abs(quantize(0.1) - 0.1) <= 2.0**-25
    assert quantize(quantize(0.1)) == quantize(0.1)
