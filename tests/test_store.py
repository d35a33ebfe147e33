"""SQLite storage: durability settings, migrations, bounded KPI reads."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from neuros.store import SCHEMA_VERSION, ReadingRow, Store

START = datetime(2020, 1, 1, 7, tzinfo=UTC)


def row(at: datetime, hrv: float | None = 40.0, sleep: float | None = 7.0) -> ReadingRow:
    return ReadingRow(
        recorded_at=at,
        rr_intervals_ms=None,
        reported_rmssd_ms=hrv,
        hrv_rmssd_ms=hrv,
        resting_hr_bpm=55.0,
        sleep_hours=sleep,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "nested" / "neuros.db")
    store.open()
    return store


def test_wal_full_sync_and_versioned_schema(store: Store, tmp_path: Path) -> None:
    conn = store._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    reopened = Store(tmp_path / "nested" / "neuros.db")
    reopened.open()  # migrating twice is a no-op
    rows = reopened._conn().execute("SELECT count(*) FROM schema_version").fetchone()
    assert rows[0] == SCHEMA_VERSION


def test_failed_transaction_rolls_back(store: Store) -> None:
    def write_then_fail() -> None:
        with store.write() as tx:
            tx.upsert_readings("u", [row(START)])
            raise sqlite3.IntegrityError("boom")

    with pytest.raises(sqlite3.IntegrityError):
        write_then_fail()
    with store.read() as tx:
        assert tx.kpi_inputs("u") is None


def _steps(store: Store, user: str) -> int:
    """SQLite VM instructions spent reading one user's KPI inputs."""
    conn = store._conn()
    count = 0

    def tick() -> int:
        nonlocal count
        count += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        with store.read() as tx:
            assert tx.kpi_inputs(user) is not None
    finally:
        conn.set_progress_handler(None, 1)
    return count


def test_kpi_reads_do_not_grow_with_history(store: Store) -> None:
    # Same last 15 days for both users; "veteran" also has 5 years of older readings.
    recent = [row(START + timedelta(days=2000 + d)) for d in range(15)]
    history = [row(START + timedelta(hours=6 * i)) for i in range(4 * 365 * 5)]
    with store.write() as tx:
        tx.upsert_readings("newcomer", recent)
        tx.upsert_readings("veteran", history + recent)
        # A crowd of other users must not cost anything either.
        for n in range(200):
            tx.upsert_readings(f"other-{n}", recent)
    newcomer, veteran = _steps(store, "newcomer"), _steps(store, "veteran")
    # 7,300 extra rows would cost tens of thousands of steps if any query scanned them.
    assert veteran <= newcomer * 1.2, (newcomer, veteran)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT max(recorded_at_us) FROM readings WHERE user_id = 'u'",
        "SELECT recorded_at_us, hrv_rmssd_ms FROM readings WHERE user_id = 'u' "
        "AND hrv_rmssd_ms IS NOT NULL ORDER BY recorded_at_us DESC LIMIT 1",
        "SELECT recorded_at_us, resting_hr_bpm FROM readings WHERE user_id = 'u' "
        "AND resting_hr_bpm IS NOT NULL ORDER BY recorded_at_us DESC LIMIT 1",
        "SELECT * FROM readings WHERE user_id = 'u' AND recorded_at_us BETWEEN 1 AND 2",
    ],
)
def test_kpi_queries_search_an_index(store: Store, sql: str) -> None:
    plan = " ".join(r[3] for r in store._conn().execute(f"EXPLAIN QUERY PLAN {sql}"))
    assert "SEARCH" in plan, plan
    assert "SCAN" not in plan, plan


def test_latest_hrv_may_be_older_than_the_window(store: Store) -> None:
    with store.write() as tx:
        tx.upsert_readings("u", [row(START, hrv=33.0, sleep=None)])
        tx.upsert_readings("u", [row(START + timedelta(days=60), hrv=None, sleep=6.0)])
    with store.read() as tx:
        inputs = tx.kpi_inputs("u")
    assert inputs is not None
    assert inputs.latest_hrv is not None
    assert inputs.latest_hrv.value == 33.0
    assert inputs.hrv == []  # outside the 14-day window
    assert [p.value for p in inputs.sleep] == [6.0]
