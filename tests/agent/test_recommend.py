"""Each rule of neuros.recommend.advise, in order, plus precedence and boundaries."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuros.kpi import KpiSnapshot, Readiness, readiness_for
from neuros.recommend import (
    HRV_SUPPRESSED_PCT,
    SLEEP_DEBT_PRIORITY_HOURS,
    Advice,
    Recommendation,
    advise,
)

AS_OF = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


def snap(
    score: float,
    *,
    sleep_debt_hours: float = 0.0,
    hrv_deviation_pct: float | None = None,
    hrv_rmssd_ms: float | None = None,
    hrv_baseline_ms: float | None = None,
) -> KpiSnapshot:
    return KpiSnapshot(
        hrv_rmssd_ms=hrv_rmssd_ms,
        hrv_baseline_ms=hrv_baseline_ms,
        hrv_deviation_pct=hrv_deviation_pct,
        sleep_debt_hours=sleep_debt_hours,
        resting_hr_bpm=None,
        resting_hr_baseline_bpm=None,
        recovery_score=score,
        readiness=readiness_for(score),
        as_of=AS_OF,
    )


def test_thresholds() -> None:
    assert SLEEP_DEBT_PRIORITY_HOURS == 10.0
    assert HRV_SUPPRESSED_PCT == -20.0


def test_rule1_sleep_debt_prioritises_sleep_even_when_readiness_is_low() -> None:
    # 60 - 2 * 11.5 = 37 would be moderate; use a low score to show rule 1 beats rule 2.
    advice = advise(snap(20.0, sleep_debt_hours=11.5, hrv_deviation_pct=-40.0))
    assert advice == Advice(
        Recommendation.PRIORITISE_SLEEP,
        (
            "sleep debt 11.5 h over 14 days (>= 10 h)",
            "recovery score 20.0/100, readiness low (<= 33)",
        ),
    )


def test_rule1_boundary_is_inclusive() -> None:
    assert advise(snap(80.0, sleep_debt_hours=10.0)).recommendation is (
        Recommendation.PRIORITISE_SLEEP
    )
    assert advise(snap(80.0, sleep_debt_hours=9.9)).recommendation is (
        Recommendation.TRAIN_AS_PLANNED
    )


def test_rule2_low_readiness_rests() -> None:
    advice = advise(snap(33.0, hrv_deviation_pct=-30.0))
    assert advice == Advice(
        Recommendation.REST, ("recovery score 33.0/100, readiness low (<= 33)",)
    )


def test_rule3_suppressed_hrv_overrides_high_readiness() -> None:
    # HRV 40 vs baseline 50 -> -20 % exactly (inclusive); the score is still high.
    advice = advise(snap(70.0, hrv_deviation_pct=-20.0, hrv_rmssd_ms=40.0, hrv_baseline_ms=50.0))
    assert advice == Advice(
        Recommendation.ACTIVE_RECOVERY,
        (
            "HRV (RMSSD) 40.0 ms is 20.0% below its 7-day baseline of 50.0 ms (<= -20%)",
            "recovery score 70.0/100, readiness high (>= 67)",
        ),
    )


def test_rule3_not_hit_just_above_threshold() -> None:
    advice = advise(snap(70.0, hrv_deviation_pct=-19.9))
    assert advice.recommendation is Recommendation.TRAIN_AS_PLANNED


def test_rule4_moderate_readiness_active_recovery() -> None:
    advice = advise(snap(50.0, hrv_deviation_pct=-5.0))
    assert advice == Advice(
        Recommendation.ACTIVE_RECOVERY,
        ("recovery score 50.0/100, readiness moderate (between 33 and 67)",),
    )


def test_rule5_high_readiness_trains_as_planned() -> None:
    advice = advise(snap(67.0, hrv_deviation_pct=None))
    assert advice == Advice(
        Recommendation.TRAIN_AS_PLANNED,
        ("recovery score 67.0/100, readiness high (>= 67)",),
    )


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (66.9, Recommendation.ACTIVE_RECOVERY),
        (67.0, Recommendation.TRAIN_AS_PLANNED),
        (33.1, Recommendation.ACTIVE_RECOVERY),
        (33.0, Recommendation.REST),
    ],
)
def test_readiness_boundaries(score: float, expected: Recommendation) -> None:
    assert advise(snap(score)).recommendation is expected


def test_readiness_field_is_what_counts() -> None:
    # advise trusts the snapshot's readiness rather than re-deriving it from the score.
    moderate = replace(snap(90.0), readiness=Readiness.MODERATE)
    assert advise(moderate).recommendation is Recommendation.ACTIVE_RECOVERY


@given(
    score=st.floats(0.0, 100.0),
    debt=st.floats(0.0, 50.0),
    dev=st.one_of(st.none(), st.floats(-100.0, 100.0)),
)
def test_always_a_reason_ending_with_the_score(
    score: float, debt: float, dev: float | None
) -> None:
    score = round(score, 1)
    advice = advise(snap(score, sleep_debt_hours=debt, hrv_deviation_pct=dev))
    assert advice.reasons
    assert advice.reasons[-1].startswith(f"recovery score {score:.1f}/100, readiness ")
    assert advise(snap(score, sleep_debt_hours=debt, hrv_deviation_pct=dev)) == advice


def test_rule3_without_current_or_baseline_values_says_so() -> None:
    # A snapshot may carry a deviation with neither figure (built by hand, or by an
    # older agent): the reason says "n/a" rather than inventing one.
    advice = advise(snap(70.0, hrv_deviation_pct=-25.0))
    assert advice.reasons[0] == (
        "HRV (RMSSD) n/a is 25.0% below its 7-day baseline of n/a (<= -20%)"
    )
