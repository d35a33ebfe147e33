"""The agent: stores readings, keeps KPI snapshots current, advises a protocol.

Glue between the HTTP layer, the storage backend (``neuros.backend``) and the pure
KPI/advice logic; spans and domain metrics live here so the maths stays free of them.

Users per readiness band is a population gauge: it is read from the database (which
every replica writes), never counted in this process, so each replica exports the
same figure and dashboards take ``max`` across instances. A background task refreshes
it every ``population_refresh_seconds``, and at once after this replica moved a user
between bands.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from opentelemetry.trace import Tracer

from neuros.backend import Backend
from neuros.kpi import DailyInputs, KpiSnapshot, Readiness, compute_from_daily, rmssd
from neuros.metrics import DbOperation, Metrics, RejectReason
from neuros.recommend import Advice, advise
from neuros.schemas import Reading
from neuros.store import ReadingRow, StorageError

logger = logging.getLogger("neuros.agent")

# /ready answers 503 when the backend cannot commit a probe within this long.
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


class Agent:
    def __init__(
        self,
        backend: Backend,
        metrics: Metrics,
        tracer: Tracer,
        *,
        sleep_need_hours: float,
        population_refresh_seconds: float = 5.0,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.tracer = tracer
        self.sleep_need_hours = sleep_need_hours
        self._refresh_every = population_refresh_seconds
        self._refresh_now: asyncio.Event | None = None
        self._refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.backend.start()
        await self.refresh_population()
        self._refresh_now = asyncio.Event()
        self._refresher = asyncio.create_task(self._refresh_population_forever())

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.backend.stop()

    async def ingest(self, user_id: str, readings: Sequence[Reading]) -> KpiSnapshot:
        """Store a batch atomically and return the user's fresh snapshot."""
        rows = [to_row(r) for r in readings]
        timing: list[tuple[int, float]] = []

        def assess(inputs: DailyInputs) -> KpiSnapshot:
            start_ns, start = time.time_ns(), time.perf_counter()
            snapshot = compute_from_daily(inputs, self.sleep_need_hours)
            timing.append((start_ns, time.perf_counter() - start))
            return snapshot

        with self.tracer.start_as_current_span(
            "db.write",
            attributes={"db.system": self.backend.system, "neuros.readings.count": len(rows)},
        ):
            try:
                written = await self.backend.ingest(user_id, rows, assess)
            except StorageError:
                self.metrics.db_errors.labels(DbOperation.INGEST.value).inc()
                self.metrics.readings_rejected.labels(RejectReason.STORAGE.value).inc(len(rows))
                raise
            start_ns, elapsed = timing[-1]
            self.tracer.start_span("kpi.compute", start_time=start_ns).end(
                end_time=start_ns + int(elapsed * 1e9)
            )
        snapshot = written.snapshot
        if written.previous_band != snapshot.readiness.value and self._refresh_now is not None:
            self._refresh_now.set()
        self.metrics.readings_accepted.inc(len(rows))
        self.metrics.kpi_computation_duration.observe(elapsed)
        self._observe(snapshot)
        return snapshot

    async def snapshot(self, user_id: str) -> KpiSnapshot | None:
        with self.tracer.start_as_current_span(
            "db.read", attributes={"db.system": self.backend.system}
        ):
            start = time.perf_counter()
            try:
                inputs = await self.backend.kpi_inputs(user_id)
            except StorageError:
                self.metrics.db_errors.labels(DbOperation.READ.value).inc()
                raise
            snapshot = None
            if inputs is not None:
                with self.tracer.start_as_current_span("kpi.compute"):
                    snapshot = compute_from_daily(inputs, self.sleep_need_hours)
            self.metrics.kpi_computation_duration.observe(time.perf_counter() - start)
            return snapshot

    async def analyze(self, user_id: str) -> tuple[KpiSnapshot, Advice] | None:
        snapshot = await self.snapshot(user_id)
        if snapshot is None:
            return None
        return snapshot, advise(snapshot)

    async def ready(self) -> bool:
        """A probe write commits, within a deadline."""
        try:
            await asyncio.wait_for(self.backend.probe(), READY_TIMEOUT_SECONDS)
        except (StorageError, TimeoutError):
            self.metrics.db_errors.labels(DbOperation.PROBE.value).inc()
            return False
        return True

    async def refresh_population(self) -> None:
        """Set the users-per-band gauge from the database."""
        counts = await self.backend.readiness_counts()
        for band in Readiness:
            self.metrics.users_by_readiness.labels(band.value).set(counts.get(band.value, 0))

    async def _refresh_population_forever(self) -> None:
        assert self._refresh_now is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), self._refresh_every)
            self._refresh_now.clear()
            try:
                await self.refresh_population()
            except StorageError:
                # The gauge keeps its last value; /ready reports the database.
                self.metrics.db_errors.labels(DbOperation.READ.value).inc()
            except Exception:
                logger.exception("population refresh")

    def _observe(self, snapshot: KpiSnapshot) -> None:
        if snapshot.hrv_rmssd_ms is not None:
            self.metrics.kpi_hrv_rmssd.observe(snapshot.hrv_rmssd_ms / 1000)
        self.metrics.kpi_sleep_debt.observe(snapshot.sleep_debt_hours * 3600)
        self.metrics.kpi_recovery_score.observe(snapshot.recovery_score)
