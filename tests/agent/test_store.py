"""Storage: SQLite durability settings, migrations and bounded reads; on both backends
(SQLite and a real PostgreSQL), replacement without double counting, exact daily
totals and users per band, checked against a reference model."""

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuros import store as store_module
from neuros.backend import Backend, Ingested
from neuros.kpi import (
    DailyInputs,
    DayTotals,
    KpiInputs,
    KpiSnapshot,
    Point,
    compute_from_daily,
    compute_snapshot,
    quantize,
    summarize,
)
from neuros.postgres import PostgresBackend
from neuros.sqlite_backend import SqliteBackend
from neuros.store import SCHEMA_VERSION, ReadingRow, Store, Transaction

START = datetime(2020, 1, 1, 7, tzinfo=UTC)
NEED = 8.0


def row(
    at: datetime,
    hrv: float | None = 40.0,
    sleep: float | None = 7.0,
    resting_hr: float | None = 55.0,
) -> ReadingRow:
    return ReadingRow(
        recorded_at=at,
        rr_intervals_ms=None,
        reported_rmssd_ms=hrv,
        hrv_rmssd_ms=hrv,
        resting_hr_bpm=resting_hr,
        sleep_hours=sleep,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "nested" / "neuros.db")
    store.open()
    yield store
    store.close()


def write(store: Store, user: str, rows: list[ReadingRow]) -> None:
    with store.write() as tx:
        tx.upsert_readings(user, rows)


def test_wal_full_sync_and_versioned_schema(store: Store, tmp_path: Path) -> None:
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.connect().execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.schema_version() == SCHEMA_VERSION == 3
    store.close()
    reopened = Store(tmp_path / "nested" / "neuros.db")
    reopened.open()  # migrating twice is a no-op
    rows = reopened._conn().execute("SELECT count(*) FROM schema_version").fetchone()
    assert rows[0] == SCHEMA_VERSION
    reopened.close()


def test_failed_transaction_rolls_back_readings_and_totals(store: Store) -> None:
    def write_then_fail() -> None:
        with store.write() as tx:
            tx.upsert_readings("u", [row(START)])
            raise sqlite3.IntegrityError("boom")

    with pytest.raises(sqlite3.IntegrityError):
        write_then_fail()
    with store.read() as tx:
        assert tx.kpi_inputs("u") is None
    assert store._conn().execute("SELECT count(*) FROM daily_totals").fetchone()[0] == 0


def test_savepoint_undoes_only_its_own_work(store: Store) -> None:
    def fail_inside(tx: Transaction) -> None:
        with tx.savepoint():
            tx.upsert_readings("dropped", [row(START)])
            raise ValueError("bad batch")

    with store.write() as tx:
        tx.upsert_readings("kept", [row(START)])
        with pytest.raises(ValueError, match="bad batch"):
            fail_inside(tx)
    with store.read() as tx:
        assert tx.kpi_inputs("kept") is not None
        assert tx.kpi_inputs("dropped") is None


def _totals(store: Store, user: str) -> dict[int, tuple[int, ...]]:
    rows = store._conn().execute(
        "SELECT day, hrv_q, hrv_n, rhr_q, rhr_n, sleep_q, sleep_n FROM daily_totals "
        "WHERE user_id = ? ORDER BY day",
        (user,),
    )
    return {day: tuple(rest) for day, *rest in rows if any(rest)}


def test_replacement_moves_the_totals_exactly(store: Store) -> None:
    write(store, "u", [row(START, hrv=30.0, sleep=6.0, resting_hr=50.0)])
    # The same instant in another offset is the same reading: its values are replaced.
    same = START.astimezone(timezone(timedelta(hours=-5)))
    write(store, "u", [row(same, hrv=44.5, sleep=None, resting_hr=50.0)])
    day = (START - datetime(1970, 1, 1, tzinfo=UTC)).days
    q = 1 << 24
    assert _totals(store, "u") == {day: (int(44.5 * q), 1, 50 * q, 1, 0, 0)}
    # Within one batch the last reading of an instant wins.
    write(store, "u", [row(START, hrv=1.0), row(START, hrv=2.0, sleep=3.0)])
    assert _totals(store, "u") == {day: (2 * q, 1, 55 * q, 1, 3 * q, 1)}


def test_values_are_stored_on_the_grid(store: Store) -> None:
    write(store, "u", [row(START, hrv=0.1, sleep=1 / 3, resting_hr=55.123456789)])
    stored = (
        store._conn()
        .execute(
            "SELECT hrv_rmssd_ms, sleep_hours, resting_hr_bpm, reported_rmssd_ms FROM readings"
        )
        .fetchone()
    )
    assert stored[:3] == (quantize(0.1), quantize(1 / 3), quantize(55.123456789))
    assert stored[3] == 0.1  # the device's own figure is kept as sent
    assert abs(stored[0] - 0.1) < 2**-24


def _steps(store: Store, run: object) -> int:
    """SQLite VM instructions spent by ``run(tx)`` in one transaction."""
    conn = store._conn()
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        with store.write() as tx:
            run(tx)  # type: ignore[operator]
    finally:
        conn.set_progress_handler(None, 1)
    return count


def test_kpi_reads_do_not_grow_with_history(store: Store) -> None:
    # Same last 15 days for both users; "veteran" also has 5 years of older readings.
    recent = [row(START + timedelta(days=2000 + d)) for d in range(15)]
    history = [row(START + timedelta(hours=6 * i)) for i in range(4 * 365 * 5)]
    write(store, "newcomer", recent)
    write(store, "veteran", history + recent)
    # A crowd of other users must not cost anything either.
    for n in range(200):
        write(store, f"other-{n}", recent)
    newcomer = _steps(store, lambda tx: tx.kpi_inputs("newcomer"))
    veteran = _steps(store, lambda tx: tx.kpi_inputs("veteran"))
    # 7,300 extra rows would cost tens of thousands of steps if any query scanned them.
    assert veteran <= newcomer * 1.2, (newcomer, veteran)


def test_cost_does_not_grow_with_readings_per_day(store: Store) -> None:
    """A user with a reading every 5 minutes costs what a user with one a day costs,
    to ingest one more reading and to read the snapshot."""
    days = 15
    write(store, "sparse", [row(START + timedelta(days=d)) for d in range(days)])
    write(store, "dense", [row(START + timedelta(minutes=5 * i)) for i in range(288 * days)])
    end = START + timedelta(days=days)

    def ingest(user: str) -> int:
        return _steps(store, lambda tx: tx.kpi_inputs(user, tx.upsert_readings(user, [row(end)])))

    sparse, dense = ingest("sparse"), ingest("dense")
    assert dense <= sparse * 1.2, (sparse, dense)
    sparse_read = _steps(store, lambda tx: tx.kpi_inputs("sparse"))
    dense_read = _steps(store, lambda tx: tx.kpi_inputs("dense"))
    assert dense_read <= sparse_read * 1.2, (sparse_read, dense_read)
    # Replacing the latest reading (a re-send) stays bounded as well.
    again = _steps(store, lambda tx: tx.upsert_readings("dense", [row(end, hrv=10.0)]))
    assert again <= sparse * 1.2, (sparse, again)


def _plan(store: Store, sql: str, params: tuple[object, ...]) -> str:
    rows = store._conn().execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    return " | ".join(r[3] for r in rows)


def test_every_query_searches_an_index(store: Store) -> None:
    plans = {
        "head": _plan(store, store_module._HEAD_QUERY, ("u",)),
        "upsert": _plan(store, store_module._UPSERT_READING, ("u", 1, "", None, 1, 1, 1, 1)),
        "totals": _plan(store, store_module._ADD_TO_DAY, ("u", 1, 0, 0, 0, 0, 0, 0)),
        "window": _plan(store, store_module._WINDOW_QUERY, ("u", 1, 15)),
        "stored": _plan(store, store_module._STORED_VALUES, ("u", "[1, 2]")),
    }
    for name, plan in plans.items():
        assert " SCAN readings" not in f" {plan}", (name, plan)
        assert " SCAN daily_totals" not in f" {plan}", (name, plan)
    # The latest HRV and resting HR come from their partial indexes.
    assert "readings_hrv" in plans["head"], plans["head"]
    assert "readings_resting_hr" in plans["head"], plans["head"]


# The partial indexes the head query reads (neuros.store: "Covering partial indexes").
HEAD_INDEXES = {"readings_hrv": "hrv_rmssd_ms", "readings_resting_hr": "resting_hr_bpm"}


def test_latest_values_come_from_covering_partial_indexes(store: Store) -> None:
    """Read from the store's own schema, not a copy: each index covers what the head
    query reads and holds only the readings that have the value."""
    conn = store._conn()
    partial = {
        name: bool(flag) for _, name, _, _, flag in conn.execute("PRAGMA index_list(readings)")
    }
    for index, column in HEAD_INDEXES.items():
        assert partial.get(index) is True, f"{index} is missing or not partial: {partial}"
        columns = [row[2] for row in conn.execute(f"PRAGMA index_info({index})")]
        assert columns == ["user_id", "recorded_at_us", column]
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (index,)).fetchone()
        assert sql.split("WHERE", 1)[1].split() == [column, "IS", "NOT", "NULL"], sql
        plan = _plan(store, store_module._HEAD_QUERY, ("u",))
        assert f"USING COVERING INDEX {index} (user_id=?)" in plan, plan


def test_latest_hrv_costs_the_same_after_many_readings_without_one(store: Store) -> None:
    """What the partial indexes are for: a user whose last 3,000 readings carry no HRV
    (nor resting HR) finds the latest one as cheaply as a user whose last reading has
    it. A full index would walk back over the 3,000."""
    write(store, "fresh", [row(START + timedelta(minutes=i)) for i in range(2)])
    recent = [row(START + timedelta(minutes=i), hrv=None, resting_hr=None) for i in range(1, 3001)]
    write(store, "stale", [row(START), *recent])
    fresh = _steps(store, lambda tx: tx.head("fresh"))
    stale = _steps(store, lambda tx: tx.head("stale"))
    assert stale <= fresh * 1.2, (fresh, stale)
    with store.read() as tx:
        head = tx.head("stale")
    assert head is not None
    assert head.latest_hrv == Point(START, 40.0)


def test_latest_hrv_may_be_older_than_the_window(store: Store) -> None:
    write(store, "u", [row(START, hrv=33.0, sleep=None)])
    write(store, "u", [row(START + timedelta(days=60), hrv=None, sleep=6.0)])
    with store.read() as tx:
        inputs = tx.kpi_inputs("u")
    assert inputs is not None
    assert inputs.latest_hrv is not None
    assert inputs.latest_hrv.value == 33.0
    assert inputs.hrv == {}  # outside the 14-day window
    assert [t.total for t in inputs.sleep.values()] == [6.0]


def test_replacing_the_latest_reading_moves_the_head_back(store: Store) -> None:
    write(store, "u", [row(START, hrv=33.0), row(START + timedelta(hours=1), hrv=50.0)])
    with store.write() as tx:
        head = tx.upsert_readings("u", [row(START + timedelta(hours=1), hrv=None)])
    assert head.latest_hrv == Point(START, 33.0)
    assert head.as_of == START + timedelta(hours=1)


# --- the aggregate path equals the pure reference ---------------------------------

OFFSETS = [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-11, minutes=-30))]
BASE = datetime(2024, 2, 27, tzinfo=UTC)  # a leap day inside the generated range


@dataclass(frozen=True)
class Sent:
    user: str
    rows: list[ReadingRow]


values = st.floats(0, 500, allow_nan=False, allow_subnormal=False)


@st.composite
def readings(draw: st.DrawFn) -> ReadingRow:
    # Instants on a coarse grid so that replacements and shared days are frequent;
    # the offset changes how an instant is written, never which instant it is.
    minutes = draw(st.integers(0, 22 * 24 * 4)) * 15
    at = (BASE + timedelta(minutes=minutes)).astimezone(draw(st.sampled_from(OFFSETS)))
    hrv, rhr, sleep = draw(
        st.tuples(
            st.none() | values.filter(lambda v: v > 0),
            st.none() | st.floats(20, 250),
            st.none() | st.floats(0, 24),
        ).filter(lambda t: any(v is not None for v in t))
    )
    return ReadingRow(at, None, hrv, hrv, rhr, sleep)


histories = st.lists(
    st.builds(Sent, st.sampled_from(["a", "b"]), st.lists(readings(), min_size=1, max_size=6)),
    min_size=1,
    max_size=25,
)


def _reference(sent: list[Sent], user: str) -> KpiInputs | None:
    """The user's stored readings as a plain model would keep them, as KpiInputs."""
    latest: dict[datetime, ReadingRow] = {}
    for batch in sent:
        if batch.user == user:
            for r in batch.rows:
                latest[r.recorded_at.astimezone(UTC)] = r
    if not latest:
        return None

    def points(field: str) -> list[Point]:
        return [
            Point(at, quantize(value))
            for at, r in latest.items()
            if (value := getattr(r, field)) is not None
        ]

    hrv, rhr = points("hrv_rmssd_ms"), points("resting_hr_bpm")
    return KpiInputs(
        as_of=max(latest),
        latest_hrv=max(hrv, key=lambda p: p.at, default=None),
        latest_resting_hr=max(rhr, key=lambda p: p.at, default=None),
        hrv=hrv,
        resting_hr=rhr,
        sleep=points("sleep_hours"),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories, group_size=st.integers(1, 4))
def test_aggregate_path_equals_reference(
    tmp_path_factory: pytest.TempPathFactory, history: list[Sent], group_size: int
) -> None:
    """Random histories (replacements, out-of-order arrivals, offsets, day boundaries,
    several batches per transaction): the snapshot from the daily totals is the
    reference snapshot of the raw readings, to the bit."""
    store = Store(tmp_path_factory.mktemp("agg") / "neuros.db")
    store.open()
    try:
        for start in range(0, len(history), group_size):
            with store.write() as tx:
                for batch in history[start : start + group_size]:
                    # The head it returns (computed without a query when it can be)
                    # is the head a query finds.
                    assert tx.upsert_readings(batch.user, batch.rows) == tx.head(batch.user)
        for user in ("a", "b"):
            expected = _reference(history, user)
            with store.read() as tx:
                daily = tx.kpi_inputs(user)
            if expected is None:
                assert daily is None
                continue
            assert daily is not None
            assert daily == summarize(expected)
            assert compute_from_daily(daily, NEED) == compute_snapshot(expected, NEED)
    finally:
        store.close()


# --- migration of a version 1 database ----------------------------------------------


def test_version_1_database_migrates_and_backfills(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in store_module._MIGRATIONS[1].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    raw = [
        (START + timedelta(hours=5 * i), 40.0 + i / 7, 50.0 + i / 3, (i % 9) / 1.3)
        for i in range(100)
    ]
    for at, hrv, rhr, sleep in raw:
        conn.execute(
            "INSERT INTO readings VALUES (?, ?, ?, NULL, ?, ?, ?, ?)",
            ("old", store_module._to_us(at), at.isoformat(), hrv, hrv, rhr, sleep),
        )
    conn.execute("INSERT INTO user_state VALUES ('old', 'high')")
    conn.close()

    store = Store(path)
    store.open()
    try:
        assert store.schema_version() == SCHEMA_VERSION
        expected = KpiInputs(
            as_of=raw[-1][0],
            latest_hrv=Point(raw[-1][0], quantize(raw[-1][1])),
            latest_resting_hr=Point(raw[-1][0], quantize(raw[-1][2])),
            hrv=[Point(at, quantize(hrv)) for at, hrv, _, _ in raw],
            resting_hr=[Point(at, quantize(rhr)) for at, _, rhr, _ in raw],
            sleep=[Point(at, quantize(sleep)) for at, _, _, sleep in raw],
        )
        with store.read() as tx:
            daily = tx.kpi_inputs("old")
            head = tx.head("old")
        assert daily == summarize(expected)
        assert compute_from_daily(daily, NEED) == compute_snapshot(expected, NEED)
        assert head is not None
        assert head.readiness == "high"
        assert store.readiness_counts() == {"high": 1}
    finally:
        store.close()


# --- both backends, through the interface the agent uses ----------------------------


@dataclass
class Running:
    """A started backend and the event loop it lives on."""

    backend: Backend
    runner: asyncio.Runner

    def ingest(self, user: str, rows: list[ReadingRow]) -> Ingested:
        return self.runner.run(self.backend.ingest(user, rows, _assess))

    def inputs(self, user: str) -> DailyInputs | None:
        return self.runner.run(self.backend.kpi_inputs(user))

    def counts(self) -> dict[str, int]:
        return self.runner.run(self.backend.readiness_counts())


def _assess(inputs: DailyInputs) -> KpiSnapshot:
    return compute_from_daily(inputs, NEED)


@pytest.fixture(params=["sqlite", "postgresql"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Running]:
    backend: Backend
    if request.param == "sqlite":
        backend = SqliteBackend(tmp_path / "neuros.db")
    else:
        backend = PostgresBackend(request.getfixturevalue("pg_url"))
    with asyncio.Runner() as runner:
        runner.run(backend.start())
        yield Running(backend, runner)
        runner.run(backend.stop())


def _day_totals(inputs: DailyInputs | None) -> dict[str, Mapping[date, DayTotals]]:
    assert inputs is not None
    return {"hrv": inputs.hrv, "resting_hr": inputs.resting_hr, "sleep": inputs.sleep}


def test_backends_replace_a_resent_reading_and_keep_totals_exact(running: Running) -> None:
    running.ingest("u", [row(START, hrv=30.0, sleep=6.0, resting_hr=50.0)])
    same = START.astimezone(timezone(timedelta(hours=-5)))
    running.ingest("u", [row(same, hrv=44.5, sleep=None, resting_hr=50.0)])
    day = START.date()
    assert _day_totals(running.inputs("u")) == {
        "hrv": {day: DayTotals(44.5, 1)},
        "resting_hr": {day: DayTotals(50.0, 1)},
        "sleep": {},
    }
    # Within one batch the last reading of an instant wins; re-sent twice, same totals.
    for _ in range(2):
        running.ingest("u", [row(START, hrv=1.0), row(START, hrv=2.0, sleep=3.0)])
    assert _day_totals(running.inputs("u")) == {
        "hrv": {day: DayTotals(2.0, 1)},
        "resting_hr": {day: DayTotals(55.0, 1)},
        "sleep": {day: DayTotals(3.0, 1)},
    }
    assert running.inputs("nobody") is None


def test_backends_count_users_per_band(running: Running) -> None:
    assert running.counts() == {}
    first = running.ingest("u1", [row(START, sleep=6.0)])
    assert first.previous_band is None
    band = first.snapshot.readiness.value
    assert running.counts() == {band: 1}
    nights = [row(START + timedelta(days=d), sleep=0.0) for d in range(1, 15)]
    moved = running.ingest("u1", nights)
    assert moved.previous_band == band
    assert moved.snapshot.readiness.value == "low"
    running.ingest("u2", [row(START, sleep=6.0)])
    assert running.counts() == {"low": 1, band: 1}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(history=histories)
def test_backends_equal_the_reference(running: Running, history: list[Sent]) -> None:
    """Random histories through the agent's interface, on each backend: the stored
    inputs are the reference model's, to the bit. Fresh user ids per example."""
    prefix = uuid.uuid4().hex[:8]
    for batch in history:
        running.ingest(f"{prefix}-{batch.user}", batch.rows)
    for user in ("a", "b"):
        expected = _reference(history, user)
        daily = running.inputs(f"{prefix}-{user}")
        if expected is None:
            assert daily is None
            continue
        assert daily == summarize(expected)
        assert compute_from_daily(daily, NEED) == compute_snapshot(expected, NEED)
