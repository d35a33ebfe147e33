"""The agent: stores readings, keeps KPI snapshots current, advises a protocol.

Glue between the HTTP layer, the store and the pure KPI/advice logic; spans and
domain metrics live here so the maths stays free of them.
"""

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from neuros.ingest import GroupCommitWriter, GroupLimits
from neuros.kpi import KpiSnapshot, Readiness, compute_from_daily, rmssd
from neuros.metrics import DbOperation, Metrics, RejectReason
from neuros.recommend import Advice, advise
from neuros.schemas import Reading
from neuros.store import ReadingRow, StorageError, Store, Transaction

# /ready answers 503 when the writer cannot commit a probe within this long.
READY_TIMEOUT_SECONDS = 2.0


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


@dataclass(frozen=True, slots=True)
class _Written:
    """What the writer reports of one stored batch."""

    snapshot: KpiSnapshot
    previous_band: str | None
    readings: int
    kpi_seconds: float
    kpi_span_ns: tuple[int, int]


class Agent:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        tracer: Tracer,
        *,
        sleep_need_hours: float,
        group_limits: GroupLimits | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.tracer = tracer
        self.sleep_need_hours = sleep_need_hours
        self.writer = GroupCommitWriter(store, group_limits)

    def start(self) -> None:
        self.store.open()
        counts = self.store.readiness_counts()
        for band in Readiness:
            self.metrics.users_by_readiness.labels(band.value).set(counts.get(band.value, 0))
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.close()
        self.store.close()

    async def ingest(self, user_id: str, readings: Sequence[Reading]) -> KpiSnapshot:
        """Store a batch atomically and return the user's fresh snapshot."""
        rows = [to_row(r) for r in readings]
        with self.tracer.start_as_current_span(
            "db.write", attributes={"db.system": "sqlite", "neuros.readings.count": len(rows)}
        ):
            try:
                written = await self.writer.submit(
                    lambda tx: self._write(tx, user_id, rows), self._committed, size=len(rows)
                )
            except StorageError:
                self.metrics.db_errors.labels(DbOperation.INGEST.value).inc()
                self.metrics.readings_rejected.labels(RejectReason.STORAGE.value).inc(len(rows))
                raise
            start_ns, end_ns = written.kpi_span_ns
            self.tracer.start_span("kpi.compute", start_time=start_ns).end(end_time=end_ns)
        return written.snapshot

    def _write(self, tx: Transaction, user_id: str, rows: Sequence[ReadingRow]) -> _Written:
        """Inside the group's transaction, before its COMMIT."""
        before = tx.head(user_id)
        head = tx.upsert_readings(user_id, rows, before)
        start_ns, start = time.time_ns(), time.perf_counter()
        inputs = tx.kpi_inputs(user_id, head)
        assert inputs is not None
        snapshot = compute_from_daily(inputs, self.sleep_need_hours)
        elapsed = time.perf_counter() - start
        previous = None if before is None else before.readiness
        tx.set_readiness(user_id, snapshot.readiness.value, previous)
        return _Written(
            snapshot, previous, len(rows), elapsed, (start_ns, start_ns + int(elapsed * 1e9))
        )

    def _committed(self, written: _Written) -> None:
        """On the writer thread, after the COMMIT, in commit order."""
        self._move_band(written.previous_band, written.snapshot.readiness.value)
        self.metrics.readings_accepted.inc(written.readings)
        self.metrics.kpi_computation_duration.observe(written.kpi_seconds)
        self._observe(written.snapshot)

    def snapshot(self, user_id: str) -> KpiSnapshot | None:
        try:
            with (
                self.tracer.start_as_current_span("db.read", attributes={"db.system": "sqlite"}),
                self.store.read() as tx,
            ):
                start = time.perf_counter()
                inputs = tx.kpi_inputs(user_id)
                snapshot = None
                if inputs is not None:
                    with self.tracer.start_as_current_span("kpi.compute"):
                        snapshot = compute_from_daily(inputs, self.sleep_need_hours)
                self.metrics.kpi_computation_duration.observe(time.perf_counter() - start)
                return snapshot
        except sqlite3.Error:
            self.metrics.db_errors.labels(DbOperation.READ.value).inc()
            raise

    def analyze(self, user_id: str) -> tuple[KpiSnapshot, Advice] | None:
        snapshot = self.snapshot(user_id)
        if snapshot is None:
            return None
        return snapshot, advise(snapshot)

    async def ready(self) -> bool:
        """A probe write commits through the writer, within a deadline."""
        try:
            await asyncio.wait_for(
                self.writer.submit(Transaction.probe, size=0), READY_TIMEOUT_SECONDS
            )
        except (StorageError, TimeoutError):
            self.metrics.db_errors.labels(DbOperation.PROBE.value).inc()
            return False
        return True

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
