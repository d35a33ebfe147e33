"""The agent: stores readings, keeps KPI snapshots current, advises a protocol.

Glue between the HTTP layer, the store and the pure KPI/advice logic; spans and
domain metrics live here so the maths stays free of them.
"""

import sqlite3
import time
from collections.abc import Sequence

from opentelemetry.trace import Tracer

from neuros.kpi import KpiSnapshot, Readiness, compute_snapshot, rmssd
from neuros.metrics import DbOperation, Metrics, RejectReason
from neuros.recommend import Advice, advise
from neuros.schemas import Reading
from neuros.store import ReadingRow, Store, Transaction


def to_row(reading: Reading) -> ReadingRow:
    rr = reading.rr_intervals_ms
    computed = rmssd(rr) if rr is not None else None
    return ReadingRow(
        recorded_at=reading.recorded_at,
        rr_intervals_ms=rr,
        reported_rmssd_ms=reading.hrv_rmssd_ms,
        hrv_rmssd_ms=computed if computed is not None else reading.hrv_rmssd_ms,
        resting_hr_bpm=reading.resting_hr_bpm,
        sleep_hours=reading.sleep_hours,
    )


class Agent:
    def __init__(
        self, store: Store, metrics: Metrics, tracer: Tracer, *, sleep_need_hours: float
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.tracer = tracer
        self.sleep_need_hours = sleep_need_hours

    def start(self) -> None:
        self.store.open()
        counts = self.store.readiness_counts()
        for band in Readiness:
            self.metrics.users_by_readiness.labels(band.value).set(counts.get(band.value, 0))

    def ingest(self, user_id: str, readings: Sequence[Reading]) -> KpiSnapshot:
        """Store a batch atomically and return the user's fresh snapshot."""
        rows = [to_row(r) for r in readings]
        try:
            with self.tracer.start_as_current_span("db.write") as span:
                span.set_attribute("db.system", "sqlite")
                span.set_attribute("neuros.readings.count", len(rows))
                # The lock spans commit and gauge update, so band moves apply in order.
                with self.store.write_lock:
                    with self.store.write() as tx:
                        tx.upsert_readings(user_id, rows)
                        snapshot = self._compute(tx, user_id)
                        if snapshot is None:  # impossible right after a non-empty upsert
                            raise sqlite3.IntegrityError("no readings visible after upsert")
                        previous = tx.set_readiness(user_id, snapshot.readiness.value)
                    self._move_band(previous, snapshot.readiness.value)
        except sqlite3.Error:
            self.metrics.db_errors.labels(DbOperation.INGEST.value).inc()
            self.metrics.readings_rejected.labels(RejectReason.STORAGE.value).inc(len(rows))
            raise
        self.metrics.readings_accepted.inc(len(rows))
        self._observe(snapshot)
        return snapshot

    def snapshot(self, user_id: str) -> KpiSnapshot | None:
        try:
            with self.tracer.start_as_current_span("db.read") as span:
                span.set_attribute("db.system", "sqlite")
                with self.store.read() as tx:
                    return self._compute(tx, user_id)
        except sqlite3.Error:
            self.metrics.db_errors.labels(DbOperation.READ.value).inc()
            raise

    def analyze(self, user_id: str) -> tuple[KpiSnapshot, Advice] | None:
        snapshot = self.snapshot(user_id)
        if snapshot is None:
            return None
        return snapshot, advise(snapshot)

    def ready(self) -> bool:
        try:
            self.store.probe_write()
        except sqlite3.Error:
            self.metrics.db_errors.labels(DbOperation.PROBE.value).inc()
            return False
        return True

    def _compute(self, tx: Transaction, user_id: str) -> KpiSnapshot | None:
        """Read the user's KPI windows and compute; timed as one KPI computation."""
        start = time.perf_counter()
        inputs = tx.kpi_inputs(user_id)
        snapshot = None
        if inputs is not None:
            with self.tracer.start_as_current_span("kpi.compute"):
                snapshot = compute_snapshot(inputs, self.sleep_need_hours)
        self.metrics.kpi_computation_duration.observe(time.perf_counter() - start)
        return snapshot

    def _move_band(self, previous: str | None, current: str) -> None:
        if previous == current:
            return
        if previous is not None:
            self.metrics.users_by_readiness.labels(previous).dec()
        self.metrics.users_by_readiness.labels(current).inc()

    def _observe(self, snapshot: KpiSnapshot) -> None:
        if snapshot.hrv_rmssd_ms is not None:
            self.metrics.kpi_hrv_rmssd.observe(snapshot.hrv_rmssd_ms / 1000)
        self.metrics.kpi_sleep_debt.observe(snapshot.sleep_debt_hours * 3600)
        self.metrics.kpi_recovery_score.observe(snapshot.recovery_score)
