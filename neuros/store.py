"""Durable reading storage on SQLite (standard library only).

WAL with ``synchronous=FULL``: a reading is on disk before the 201 goes out, so it
survives ``kill -9``. KPI reads touch only the windows they need, through the primary
key and partial indexes, so their cost does not grow with a user's history.
"""

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from neuros.kpi import KpiInputs, Point, window_start

SCHEMA_VERSION = 1

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE readings (
        user_id           TEXT    NOT NULL,
        recorded_at_us    INTEGER NOT NULL,  -- UTC epoch microseconds: the reading's identity
        recorded_at       TEXT    NOT NULL,  -- as sent, offset included
        rr_intervals_ms   TEXT,              -- JSON array, kept verbatim
        reported_rmssd_ms REAL,
        hrv_rmssd_ms      REAL,              -- from RR when present, else the reported value
        resting_hr_bpm    REAL,
        sleep_hours       REAL,
        PRIMARY KEY (user_id, recorded_at_us)
    ) WITHOUT ROWID;
    CREATE INDEX readings_hrv ON readings (user_id, recorded_at_us)
        WHERE hrv_rmssd_ms IS NOT NULL;
    CREATE INDEX readings_resting_hr ON readings (user_id, recorded_at_us)
        WHERE resting_hr_bpm IS NOT NULL;
    CREATE TABLE user_state (
        user_id   TEXT PRIMARY KEY,
        readiness TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE ready_probe (id INTEGER PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL);
    """,
}


@dataclass(frozen=True, slots=True)
class ReadingRow:
    recorded_at: datetime
    rr_intervals_ms: Sequence[float] | None
    reported_rmssd_ms: float | None
    hrv_rmssd_ms: float | None
    resting_hr_bpm: float | None
    sleep_hours: float | None


def _to_us(at: datetime) -> int:
    delta = at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


class Transaction:
    """Queries run inside one explicit transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def upsert_readings(self, user_id: str, rows: Sequence[ReadingRow]) -> None:
        # Same user and instant is the same reading: re-sending replaces, never doubles.
        self._conn.executemany(
            """
            INSERT INTO readings (user_id, recorded_at_us, recorded_at, rr_intervals_ms,
                                  reported_rmssd_ms, hrv_rmssd_ms, resting_hr_bpm, sleep_hours)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (user_id, recorded_at_us) DO UPDATE SET
                recorded_at = excluded.recorded_at,
                rr_intervals_ms = excluded.rr_intervals_ms,
                reported_rmssd_ms = excluded.reported_rmssd_ms,
                hrv_rmssd_ms = excluded.hrv_rmssd_ms,
                resting_hr_bpm = excluded.resting_hr_bpm,
                sleep_hours = excluded.sleep_hours
            """,
            [
                (
                    user_id,
                    _to_us(r.recorded_at),
                    r.recorded_at.isoformat(),
                    None if r.rr_intervals_ms is None else json.dumps(list(r.rr_intervals_ms)),
                    r.reported_rmssd_ms,
                    r.hrv_rmssd_ms,
                    r.resting_hr_bpm,
                    r.sleep_hours,
                )
                for r in rows
            ],
        )

    def kpi_inputs(self, user_id: str) -> KpiInputs | None:
        row = self._conn.execute(
            "SELECT max(recorded_at_us) FROM readings WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is None or row[0] is None:
            return None
        as_of_us: int = row[0]
        as_of = _from_us(as_of_us)
        window = self._conn.execute(
            """
            SELECT recorded_at_us, hrv_rmssd_ms, resting_hr_bpm, sleep_hours FROM readings
            WHERE user_id = ? AND recorded_at_us BETWEEN ? AND ?
            """,
            (user_id, _to_us(window_start(as_of)), as_of_us),
        ).fetchall()
        hrv, resting_hr, sleep = [], [], []
        for at_us, hrv_ms, hr, slept in window:
            at = _from_us(at_us)
            if hrv_ms is not None:
                hrv.append(Point(at, hrv_ms))
            if hr is not None:
                resting_hr.append(Point(at, hr))
            if slept is not None:
                sleep.append(Point(at, slept))
        return KpiInputs(
            as_of=as_of,
            latest_hrv=self._latest(user_id, "hrv_rmssd_ms"),
            latest_resting_hr=self._latest(user_id, "resting_hr_bpm"),
            hrv=hrv,
            resting_hr=resting_hr,
            sleep=sleep,
        )

    def _latest(self, user_id: str, column: str) -> Point | None:
        # column is one of two literals above, never user input.
        row = self._conn.execute(
            f"SELECT recorded_at_us, {column} FROM readings "  # noqa: S608
            f"WHERE user_id = ? AND {column} IS NOT NULL "
            "ORDER BY recorded_at_us DESC LIMIT 1",
            (user_id,),
        ).fetchone()
        return None if row is None else Point(_from_us(row[0]), row[1])

    def set_readiness(self, user_id: str, readiness: str) -> str | None:
        """Record the user's band; return the previous one (None for a new user)."""
        row = self._conn.execute(
            "SELECT readiness FROM user_state WHERE user_id = ?", (user_id,)
        ).fetchone()
        self._conn.execute(
            "INSERT INTO user_state (user_id, readiness) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET readiness = excluded.readiness",
            (user_id, readiness),
        )
        return None if row is None else str(row[0])


class Store:
    """One SQLite file; one connection per thread, explicit transactions."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers queue here rather than spin on SQLITE_BUSY; it also keeps the
        # readiness-band transitions observed by the caller in commit order.
        self.write_lock = threading.RLock()

    def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        self._migrate(conn)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, isolation_level=None, check_same_thread=False, timeout=10.0
            )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._transaction(conn, immediate=True):
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            for version in sorted(v for v in _MIGRATIONS if v > current):
                # executescript() would commit mid-way; run statements one by one.
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @staticmethod
    @contextmanager
    def _transaction(conn: sqlite3.Connection, *, immediate: bool) -> Iterator[None]:
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        conn = self._conn()
        with self.write_lock, self._transaction(conn, immediate=True):
            yield Transaction(conn)

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        conn = self._conn()
        with self._transaction(conn, immediate=False):
            yield Transaction(conn)

    def schema_version(self) -> int:
        row = self._conn().execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0])

    def readiness_counts(self) -> dict[str, int]:
        rows = self._conn().execute(
            "SELECT readiness, count(*) FROM user_state GROUP BY readiness"
        ).fetchall()
        return {str(band): int(n) for band, n in rows}

    def probe_write(self) -> None:
        """Raise unless a transaction can be committed to disk."""
        conn = self._conn()
        with self._transaction(conn, immediate=True):
            conn.execute(
                "INSERT INTO ready_probe (id, at) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (datetime.now(UTC).isoformat(),),
            )
