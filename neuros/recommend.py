"""Training advice from a KPI snapshot (pure, deterministic).

Rules, evaluated in order; the first one that matches decides:

1. sleep_debt_hours >= 10              -> prioritise_sleep
2. readiness is low (score <= 33)      -> rest
3. hrv_deviation_pct <= -20            -> active_recovery (HRV suppressed)
4. readiness is moderate               -> active_recovery
5. otherwise                           -> train_as_planned

Sleep debt comes first because a rest day does not repay it, and since debt also lowers
the recovery score, rule 2 would otherwise hide the actual cause. Rule 3 precedes the
readiness split so that a suppressed HRV is not masked by the other score terms.

Every piece of advice carries at least one reason; the recovery score and readiness
sentence is always the last one.
"""

from dataclasses import dataclass
from enum import StrEnum

from neuros.kpi import (
    HIGH_READINESS_MIN_SCORE,
    HRV_BASELINE_DAYS,
    LOW_READINESS_MAX_SCORE,
    SLEEP_DEBT_DAYS,
    KpiSnapshot,
    Readiness,
)

SLEEP_DEBT_PRIORITY_HOURS = 10.0
HRV_SUPPRESSED_PCT = -20.0


class Recommendation(StrEnum):
    REST = "rest"
    ACTIVE_RECOVERY = "active_recovery"
    TRAIN_AS_PLANNED = "train_as_planned"
    PRIORITISE_SLEEP = "prioritise_sleep"


@dataclass(frozen=True, slots=True)
class Advice:
    recommendation: Recommendation
    reasons: tuple[str, ...]


def _score_reason(snapshot: KpiSnapshot) -> str:
    band = {
        Readiness.HIGH: f">= {HIGH_READINESS_MIN_SCORE:g}",
        Readiness.LOW: f"<= {LOW_READINESS_MAX_SCORE:g}",
        Readiness.MODERATE: (
            f"between {LOW_READINESS_MAX_SCORE:g} and {HIGH_READINESS_MIN_SCORE:g}"
        ),
    }[snapshot.readiness]
    return (
        f"recovery score {snapshot.recovery_score:.1f}/100, readiness {snapshot.readiness} ({band})"
    )


def _hrv_suppressed_reason(snapshot: KpiSnapshot, deviation_pct: float) -> str:
    now = "n/a" if snapshot.hrv_rmssd_ms is None else f"{snapshot.hrv_rmssd_ms:.1f} ms"
    baseline = "n/a" if snapshot.hrv_baseline_ms is None else f"{snapshot.hrv_baseline_ms:.1f} ms"
    return (
        f"HRV (RMSSD) {now} is {-deviation_pct:.1f}% below its {HRV_BASELINE_DAYS}-day "
        f"baseline of {baseline} (<= {HRV_SUPPRESSED_PCT:g}%)"
    )


def advise(snapshot: KpiSnapshot) -> Advice:
    """Apply the module's rules in order; the first match wins."""
    score_reason = _score_reason(snapshot)
    if snapshot.sleep_debt_hours >= SLEEP_DEBT_PRIORITY_HOURS:
        debt_reason = (
            f"sleep debt {snapshot.sleep_debt_hours:.1f} h over {SLEEP_DEBT_DAYS} days "
            f"(>= {SLEEP_DEBT_PRIORITY_HOURS:g} h)"
        )
        return Advice(Recommendation.PRIORITISE_SLEEP, (debt_reason, score_reason))
    if snapshot.readiness is Readiness.LOW:
        return Advice(Recommendation.REST, (score_reason,))
    deviation = snapshot.hrv_deviation_pct
    if deviation is not None and deviation <= HRV_SUPPRESSED_PCT:
        hrv_reason = _hrv_suppressed_reason(snapshot, deviation)
        return Advice(Recommendation.ACTIVE_RECOVERY, (hrv_reason, score_reason))
    if snapshot.readiness is Readiness.MODERATE:
        return Advice(Recommendation.ACTIVE_RECOVERY, (score_reason,))
    return Advice(Recommendation.TRAIN_AS_PLANNED, (score_reason,))
