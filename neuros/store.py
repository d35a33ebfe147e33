"""Durable reading storage on SQLite (standard library only).

WAL with ``synchronous=FULL``: a reading is on disk before the 201 goes out, so it
survives ``kill -9``. Each ingest keeps per-user, per-UTC-day totals (sum in quanta
and count of each measurement, see ``neuros.kpi``) in the same transaction, so a KPI
snapshot reads at most 15 of those rows plus three index look-ups: its cost depends
neither on a user's history nor on how many readings a day holds.
"""

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydantic_core import to_json

from neuros.kpi import (
    DailyInputs,
    DayTotals,
    Point,
    from_quanta,
    to_quanta,
    window_days,
    window_start,
)

SCHEMA_VERSION = 3
US_PER_DAY = 86_400_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = _EPOCH.date()


class StorageError(Exception):
    """The store could not commit: nothing of the affected batches was stored."""


# Version 2: readings move to a rowid table (a 2 KB row of RR intervals fits its page
# there; in a WITHOUT ROWID b-tree it spilled into overflow pages, ~5 KB a reading),
# values move onto the measurement grid, and per-day totals are backfilled.
_SCHEMA_V2 = """
    CREATE TABLE readings_v2 (
        id                INTEGER PRIMARY KEY,
        user_id           TEXT    NOT NULL,
        recorded_at_us    INTEGER NOT NULL,  -- UTC epoch microseconds: the reading's identity
        recorded_at       TEXT    NOT NULL,  -- as sent, offset included
        rr_intervals_ms   TEXT,              -- JSON array, as validated
        reported_rmssd_ms REAL,              -- as sent by the device
        hrv_rmssd_ms      REAL,              -- from RR when present, else the reported value
        resting_hr_bpm    REAL,
        sleep_hours       REAL
    );
    INSERT INTO readings_v2 (user_id, recorded_at_us, recorded_at, rr_intervals_ms,
                             reported_rmssd_ms, hrv_rmssd_ms, resting_hr_bpm, sleep_hours)
        SELECT user_id, recorded_at_us, recorded_at, rr_intervals_ms, reported_rmssd_ms,
               neuros_quantize(hrv_rmssd_ms), neuros_quantize(resting_hr_bpm),
               neuros_quantize(sleep_hours)
        FROM readings ORDER BY user_id, recorded_at_us;
    DROP TABLE readings;
    ALTER TABLE readings_v2 RENAME TO readings;
    CREATE UNIQUE INDEX readings_key ON readings (user_id, recorded_at_us);
    -- Covering partial indexes: the latest HRV or resting HR is one index look-up,
    -- however many readings without it came since.
    CREATE INDEX readings_hrv ON readings (user_id, recorded_at_us, hrv_rmssd_ms)
        WHERE hrv_rmssd_ms IS NOT NULL;
    CREATE INDEX readings_resting_hr ON readings (user_id, recorded_at_us, resting_hr_bpm)
        WHERE resting_hr_bpm IS NOT NULL;
    CREATE TABLE daily_totals (
        user_id TEXT    NOT NULL,
        day     INTEGER NOT NULL,            -- UTC days since 1970-01-01
        hrv_q   INTEGER NOT NULL DEFAULT 0,  -- sum of hrv_rmssd_ms, in quanta
        hrv_n   INTEGER NOT NULL DEFAULT 0,
        rhr_q   INTEGER NOT NULL DEFAULT 0,  -- sum of resting_hr_bpm, in quanta
        rhr_n   INTEGER NOT NULL DEFAULT 0,
        sleep_q INTEGER NOT NULL DEFAULT 0,  -- sum of sleep_hours, in quanta
        sleep_n INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (user_id, day),
        -- SQLite would turn an overflowing integer sum into a REAL: refuse it.
        CHECK (typeof(hrv_q) = 'integer' AND typeof(rhr_q) = 'integer'
               AND typeof(sleep_q) = 'integer')
    ) WITHOUT ROWID;
    INSERT INTO daily_totals
        SELECT user_id, recorded_at_us / 86400000000,
               coalesce(sum(neuros_quanta(hrv_rmssd_ms)), 0), count(hrv_rmssd_ms),
               coalesce(sum(neuros_quanta(resting_hr_bpm)), 0), count(resting_hr_bpm),
               coalesce(sum(neuros_quanta(sleep_hours)), 0), count(sleep_hours)
        FROM readings GROUP BY user_id, recorded_at_us / 86400000000
"""

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
    2: _SCHEMA_V2,
    # Version 3: users per readiness band, kept in the transaction that moves a user
    # between bands, so a population gauge reads three rows (neuros.agent).
    3: """
    CREATE TABLE readiness_counts (
        readiness TEXT PRIMARY KEY,
        users     INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO readiness_counts SELECT readiness, count(*) FROM user_state GROUP BY readiness
    """,
}


def _quanta_or_none(value: float | None) -> int | None:
    return None if value is None else to_quanta(value)


def _quantize_or_none(value: float | None) -> float | None:
    return None if value is None else from_quanta(to_quanta(value))


@dataclass(frozen=True, slots=True)
class ReadingRow:
    recorded_at: datetime
    rr_intervals_ms: Sequence[float] | None
    reported_rmssd_ms: float | None
    hrv_rmssd_ms: float | None
    resting_hr_bpm: float | None
    sleep_hours: float | None


def _to_us(at: datetime) -> int:
    delta = at.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


to_us, from_us = _to_us, _from_us
quanta_or_none = _quanta_or_none


def _day_number(day: date) -> int:
    return (day - _EPOCH_DAY).days


# Measurements in the order of the daily_totals columns: (hrv, resting HR, sleep).
Values = tuple[int | None, int | None, int | None]
_EPOCH_ORDINAL = _EPOCH_DAY.toordinal()
_WINDOW_DAYS = len(window_days(_EPOCH))

# One round trip: the latest instant (kind 0), latest HRV (1) and resting HR (2), each
# through its own index, and the readiness band (3).
_HEAD_QUERY = """
    SELECT 0, max(recorded_at_us), NULL FROM readings WHERE user_id = ?1
    UNION ALL SELECT * FROM (
        SELECT 1, recorded_at_us, hrv_rmssd_ms FROM readings INDEXED BY readings_hrv
        WHERE user_id = ?1 AND hrv_rmssd_ms IS NOT NULL ORDER BY recorded_at_us DESC LIMIT 1)
    UNION ALL SELECT * FROM (
        SELECT 2, recorded_at_us, resting_hr_bpm FROM readings INDEXED BY readings_resting_hr
        WHERE user_id = ?1 AND resting_hr_bpm IS NOT NULL ORDER BY recorded_at_us DESC LIMIT 1)
    UNION ALL SELECT 3, NULL, readiness FROM user_state WHERE user_id = ?1
"""

_STORED_VALUES = """
    SELECT recorded_at_us, hrv_rmssd_ms, resting_hr_bpm, sleep_hours FROM readings
    WHERE user_id = ? AND recorded_at_us IN (SELECT value FROM json_each(?))
"""

_WINDOW_QUERY = """
    SELECT day, hrv_q, hrv_n, rhr_q, rhr_n, sleep_q, sleep_n FROM daily_totals
    WHERE user_id = ? AND day BETWEEN ? AND ?
"""

_UPSERT_READING = """
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
"""

# ON CONFLICT arithmetic: a day's totals move by exactly what the batch changed.
_ADD_TO_DAY = """
    INSERT INTO daily_totals (user_id, day, hrv_q, hrv_n, rhr_q, rhr_n, sleep_q, sleep_n)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (user_id, day) DO UPDATE SET
        hrv_q = hrv_q + excluded.hrv_q, hrv_n = hrv_n + excluded.hrv_n,
        rhr_q = rhr_q + excluded.rhr_q, rhr_n = rhr_n + excluded.rhr_n,
        sleep_q = sleep_q + excluded.sleep_q, sleep_n = sleep_n + excluded.sleep_n
"""


def replaces_stored(head: "UserHead | None", keys: Sequence[int]) -> bool:
    """Whether any of ``keys`` may name a stored reading (none is later than the head)."""
    return head is not None and min(keys) <= _to_us(head.as_of)


def plan_upsert(
    user_id: str, keys: Sequence[int], rows: Sequence[ReadingRow], current: dict[int, Values]
) -> tuple[list[tuple[object, ...]], dict[int, list[int]]]:
    """The reading rows to upsert and, per day, how each daily total moves (sum in quanta
    and count of each measurement): new values in, replaced values out. ``current``
    holds the stored values of the keys being replaced; it ends up holding the new ones.
    """
    deltas: dict[int, list[int]] = {}
    params: list[tuple[object, ...]] = []
    for us, r in zip(keys, rows, strict=True):
        new = (
            _quanta_or_none(r.hrv_rmssd_ms),
            _quanta_or_none(r.resting_hr_bpm),
            _quanta_or_none(r.sleep_hours),
        )
        delta = deltas.setdefault(us // US_PER_DAY, [0] * 6)
        old = current.get(us)
        for i, value in enumerate(new):
            if value is not None:
                delta[2 * i] += value
                delta[2 * i + 1] += 1
            if old is not None and (previous := old[i]) is not None:
                delta[2 * i] -= previous
                delta[2 * i + 1] -= 1
        current[us] = new
        params.append(
            (
                user_id,
                us,
                r.recorded_at.isoformat(),
                None if r.rr_intervals_ms is None else to_json(r.rr_intervals_ms).decode(),
                r.reported_rmssd_ms,
                *(None if q is None else from_quanta(q) for q in new),
            )
        )
    return params, deltas


def window_bounds(head: "UserHead") -> tuple[int, int]:
    """First and last day number of the daily totals a snapshot as of ``head`` reads."""
    first_day = _to_us(window_start(head.as_of)) // US_PER_DAY
    return first_day, first_day + _WINDOW_DAYS - 1


def inputs_from_days(
    head: "UserHead", days: Iterable[tuple[int, int, int, int, int, int, int]]
) -> DailyInputs:
    """KPI inputs from the head and the window's daily_totals rows."""
    hrv: dict[date, DayTotals] = {}
    resting_hr: dict[date, DayTotals] = {}
    sleep: dict[date, DayTotals] = {}
    for day, hrv_q, hrv_n, rhr_q, rhr_n, sleep_q, sleep_n in days:
        when = date.fromordinal(_EPOCH_ORDINAL + day)
        if hrv_n:
            hrv[when] = DayTotals(from_quanta(hrv_q), hrv_n)
        if rhr_n:
            resting_hr[when] = DayTotals(from_quanta(rhr_q), rhr_n)
        if sleep_n:
            sleep[when] = DayTotals(from_quanta(sleep_q), sleep_n)
    return DailyInputs(
        as_of=head.as_of,
        latest_hrv=head.latest_hrv,
        latest_resting_hr=head.latest_resting_hr,
        hrv=hrv,
        resting_hr=resting_hr,
        sleep=sleep,
    )


def band_moves(readiness: str, previous: str | None) -> list[tuple[str, int]]:
    """How users per band move when a user goes from ``previous`` to ``readiness``,
    sorted by band (a fixed lock order for concurrent writers)."""
    if previous == readiness:
        return []
    moves = [(readiness, 1)] if previous is None else [(readiness, 1), (previous, -1)]
    return sorted(moves)


_MOVE_BAND = """
    INSERT INTO readiness_counts (readiness, users) VALUES (?, ?)
    ON CONFLICT (readiness) DO UPDATE SET users = users + excluded.users
"""


@dataclass(frozen=True, slots=True)
class UserHead:
    """What a user's snapshot needs besides the daily totals."""

    as_of: datetime
    latest_hrv: Point | None
    latest_resting_hr: Point | None
    readiness: str | None


def advance_head(head: UserHead | None, keys: Sequence[int], values: dict[int, Values]) -> UserHead:
    """``head`` (None: a new user) after storing ``values`` at ``keys``, all later than
    anything stored before."""
    if head is None:
        head = UserHead(_EPOCH, None, None, None)
    latest: list[Point | None] = [head.latest_hrv, head.latest_resting_hr]
    newest: list[int] = [-1, -1]
    for us in keys:
        for i in (0, 1):
            quanta = values[us][i]
            if quanta is not None and us > newest[i]:
                newest[i] = us
                latest[i] = Point(_from_us(us), from_quanta(quanta))
    return UserHead(_from_us(max(keys)), latest[0], latest[1], head.readiness)


class Transaction:
    """Queries run inside one explicit transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """All or nothing inside the enclosing transaction."""
        self._conn.execute("SAVEPOINT batch")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO batch")
            self._conn.execute("RELEASE batch")
            raise
        self._conn.execute("RELEASE batch")

    def head(self, user_id: str) -> UserHead | None:
        """The user's latest reading instant, latest HRV and resting HR, and band."""
        as_of_us = None
        latest: dict[int, Point] = {}
        readiness = None
        for kind, at_us, value in self._conn.execute(_HEAD_QUERY, (user_id,)):
            if kind == 0:
                as_of_us = at_us
            elif kind == 3:
                readiness = str(value)
            else:
                latest[kind] = Point(_from_us(at_us), value)
        if as_of_us is None:
            return None
        return UserHead(_from_us(as_of_us), latest.get(1), latest.get(2), readiness)

    def upsert_readings(
        self, user_id: str, rows: Sequence[ReadingRow], head: UserHead | None = None
    ) -> UserHead:
        """Store ``rows``, adjust the user's daily totals to match exactly, and return
        the user's new head (``head``, if given, must be the current one).

        Same user and instant is the same reading: re-sending replaces it (also within
        one batch, where the last one wins), and its old values leave the totals.
        """
        if head is None:
            head = self.head(user_id)
        keys = [_to_us(r.recorded_at) for r in rows]
        # Only a key at or before the latest reading can replace a stored one.
        replacing = replaces_stored(head, keys)
        current: dict[int, Values] = self._stored_values(user_id, keys) if replacing else {}
        params, deltas = plan_upsert(user_id, keys, rows, current)
        self._conn.executemany(_UPSERT_READING, params)
        self._conn.executemany(
            _ADD_TO_DAY, [(user_id, day, *delta) for day, delta in deltas.items()]
        )
        if replacing:
            fresh = self.head(user_id)
            assert fresh is not None  # it has the rows just written
            return fresh
        # Every new instant is later than anything stored: the head moves forward.
        return advance_head(head, keys, current)

    def _stored_values(self, user_id: str, keys: Sequence[int]) -> dict[int, Values]:
        """The stored values, in quanta, of those of ``keys`` the user already has."""
        rows = self._conn.execute(_STORED_VALUES, (user_id, to_json(keys).decode())).fetchall()
        return {
            us: (_quanta_or_none(hrv), _quanta_or_none(hr), _quanta_or_none(slept))
            for us, hrv, hr, slept in rows
        }

    def kpi_inputs(self, user_id: str, head: UserHead | None = None) -> DailyInputs | None:
        """The user's KPI inputs as of their latest reading, from the daily totals."""
        if head is None:
            head = self.head(user_id)
            if head is None:
                return None
        rows = self._conn.execute(_WINDOW_QUERY, (user_id, *window_bounds(head)))
        return inputs_from_days(head, rows)

    def set_readiness(self, user_id: str, readiness: str, previous: str | None) -> None:
        """Record the user's band, which was ``previous`` (None for a new user)."""
        moves = band_moves(readiness, previous)
        if moves:
            self._conn.execute(
                "INSERT INTO user_state (user_id, readiness) VALUES (?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET readiness = excluded.readiness",
                (user_id, readiness),
            )
            self._conn.executemany(_MOVE_BAND, moves)

    def probe(self) -> None:
        """A write that proves a transaction can be committed."""
        self._conn.execute(
            "INSERT INTO ready_probe (id, at) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            (datetime.now(UTC).isoformat(),),
        )


class Store:
    """One SQLite file; one connection per thread, explicit transactions.

    Writes come from one writer (``neuros.ingest``) on a connection of its own; reads
    may come from any thread, and WAL lets them run beside the writer.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

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
        """This thread's connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.connect()
            self._local.conn = conn
        return conn

    def connect(self) -> sqlite3.Connection:
        """A new connection, closed with the store; usable from one thread at a time."""
        conn = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._connections.append(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        functions: dict[str, Callable[[float | None], float | None]] = {
            "neuros_quanta": _quanta_or_none,
            "neuros_quantize": _quantize_or_none,
        }
        for name, function in functions.items():
            conn.create_function(name, 1, function, deterministic=True)
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
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (I/O error, disk full) can leave the transaction open.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def write(self) -> Iterator[Transaction]:
        """One write transaction, committed (one fsync) when the block ends."""
        conn = self._conn()
        with self._transaction(conn, immediate=True):
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
        rows = self._conn().execute("SELECT readiness, users FROM readiness_counts").fetchall()
        return {str(band): int(n) for band, n in rows if n}
