"""The PostgreSQL backend: psycopg 3, asynchronous, over a connection pool.

One transaction per ingest. There is no group-commit writer here: PostgreSQL already
flushes the WAL of concurrent commits together (one fsync covers every commit record
written before it), which is its own group commit. ``synchronous_commit`` stays on,
so a 201 means the batch is on the server's disk.

Several replicas share the database. An ingest first takes a transaction-scoped
advisory lock on its user (``pg_advisory_xact_lock``): batches of one user run one
after the other whichever replica received them, so a re-sent reading is seen as
stored and replaces it, and the band read before the write is the band replaced. Day
totals and users per band move by ``ON CONFLICT ... DO UPDATE`` arithmetic, exact
under concurrent writers. The isolation level stays READ COMMITTED: each statement
after the lock sees what the previous holder committed.
"""

import logging
import zlib
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from neuros.backend import Assess, Ingested
from neuros.kpi import DailyInputs, Point
from neuros.postgres_schema import MIGRATION_LOCK, MIGRATIONS
from neuros.postgres_url import check_scheme
from neuros.store import (
    ReadingRow,
    StorageError,
    UserHead,
    Values,
    advance_head,
    band_moves,
    from_us,
    inputs_from_days,
    plan_upsert,
    quanta_or_none,
    replaces_stored,
    to_us,
    window_bounds,
)

logger = logging.getLogger("neuros.postgres")

# Shards of the users-per-band counters (neuros.postgres_schema).
COUNT_SHARDS = 16
# How long a request waits for a pooled connection before failing with 503.
POOL_TIMEOUT_SECONDS = 5.0

_Cursor = psycopg.AsyncCursor[TupleRow]

_LOCK_USER = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"

# Latest instant, latest HRV and resting HR (each one index look-up), and band.
_HEAD_QUERY = """
    SELECT m.at, h.at, h.v, r.at, r.v,
           (SELECT readiness FROM user_state WHERE user_id = %(u)s)
    FROM (SELECT max(recorded_at_us) AS at FROM readings WHERE user_id = %(u)s) m
    LEFT JOIN LATERAL (
        SELECT recorded_at_us AS at, hrv_rmssd_ms AS v FROM readings
        WHERE user_id = %(u)s AND hrv_rmssd_ms IS NOT NULL
        ORDER BY recorded_at_us DESC LIMIT 1) h ON true
    LEFT JOIN LATERAL (
        SELECT recorded_at_us AS at, resting_hr_bpm AS v FROM readings
        WHERE user_id = %(u)s AND resting_hr_bpm IS NOT NULL
        ORDER BY recorded_at_us DESC LIMIT 1) r ON true
"""

_STORED_VALUES = """
    SELECT recorded_at_us, hrv_rmssd_ms, resting_hr_bpm, sleep_hours FROM readings
    WHERE user_id = %s AND recorded_at_us = ANY(%s::bigint[])
"""

_UPSERT_READING = """
    INSERT INTO readings (user_id, recorded_at_us, recorded_at, rr_intervals_ms,
                          reported_rmssd_ms, hrv_rmssd_ms, resting_hr_bpm, sleep_hours)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (user_id, recorded_at_us) DO UPDATE SET
        recorded_at = EXCLUDED.recorded_at,
        rr_intervals_ms = EXCLUDED.rr_intervals_ms,
        reported_rmssd_ms = EXCLUDED.reported_rmssd_ms,
        hrv_rmssd_ms = EXCLUDED.hrv_rmssd_ms,
        resting_hr_bpm = EXCLUDED.resting_hr_bpm,
        sleep_hours = EXCLUDED.sleep_hours
"""

_ADD_TO_DAY = """
    INSERT INTO daily_totals (user_id, day, hrv_q, hrv_n, rhr_q, rhr_n, sleep_q, sleep_n)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (user_id, day) DO UPDATE SET
        hrv_q = daily_totals.hrv_q + EXCLUDED.hrv_q,
        hrv_n = daily_totals.hrv_n + EXCLUDED.hrv_n,
        rhr_q = daily_totals.rhr_q + EXCLUDED.rhr_q,
        rhr_n = daily_totals.rhr_n + EXCLUDED.rhr_n,
        sleep_q = daily_totals.sleep_q + EXCLUDED.sleep_q,
        sleep_n = daily_totals.sleep_n + EXCLUDED.sleep_n
"""

_WINDOW_QUERY = """
    SELECT day, hrv_q, hrv_n, rhr_q, rhr_n, sleep_q, sleep_n FROM daily_totals
    WHERE user_id = %s AND day BETWEEN %s AND %s
"""

_SET_BAND = """
    INSERT INTO user_state (user_id, readiness) VALUES (%s, %s)
    ON CONFLICT (user_id) DO UPDATE SET readiness = EXCLUDED.readiness
"""

_MOVE_BAND = """
    INSERT INTO readiness_counts (readiness, shard, users) VALUES (%s, %s, %s)
    ON CONFLICT (readiness, shard) DO UPDATE SET users = readiness_counts.users + EXCLUDED.users
"""

_PROBE = """
    INSERT INTO ready_probe (id, at) VALUES (1, now())
    ON CONFLICT (id) DO UPDATE SET at = EXCLUDED.at
"""


def check_reachable(url: str, timeout_seconds: int = 5) -> None:
    """Connect once (at start, before serving); raises ``psycopg.Error``."""
    with psycopg.connect(url, connect_timeout=timeout_seconds):
        pass


def _head(row: tuple[Any, ...]) -> UserHead | None:
    as_of, hrv_at, hrv, rhr_at, rhr, readiness = row
    if as_of is None:
        return None
    return UserHead(
        from_us(as_of),
        None if hrv_at is None else Point(from_us(hrv_at), hrv),
        None if rhr_at is None else Point(from_us(rhr_at), rhr),
        readiness,
    )


def _shard(user_id: str) -> int:
    return zlib.crc32(user_id.encode()) % COUNT_SHARDS


class PostgresBackend:
    system = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        check_scheme(url)
        self._pool = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=POOL_TIMEOUT_SECONDS,
            kwargs={"autocommit": True},
            name="neuros",
        )
        self._version = 0

    async def start(self) -> None:
        await self._pool.open(wait=True, timeout=POOL_TIMEOUT_SECONDS * 2)
        try:
            self._version = await self._migrate()
        except BaseException:
            await self._pool.close()
            raise

    async def stop(self) -> None:
        await self._pool.close()

    @property
    def schema_version(self) -> int:
        return self._version

    async def _migrate(self) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            # Replicas starting at once: the first migrates, the others wait, then
            # find the versions applied.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            for version in sorted(v for v in MIGRATIONS if v > current):
                for statement in MIGRATIONS[version]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
                current = version
            return current

    async def ingest(self, user_id: str, rows: Sequence[ReadingRow], assess: Assess) -> Ingested:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor()
                await cur.execute(_LOCK_USER, (user_id,))
                before = await self._head(cur, user_id)
                head = await self._upsert(cur, user_id, rows, before)
                inputs = await self._inputs(cur, user_id, head)
                snapshot = assess(inputs)
                previous = None if before is None else before.readiness
                moves = band_moves(snapshot.readiness.value, previous)
                if moves:
                    await cur.execute(_SET_BAND, (user_id, snapshot.readiness.value))
                    shard = _shard(user_id)
                    await cur.executemany(
                        _MOVE_BAND, [(band, shard, delta) for band, delta in moves]
                    )
        except psycopg.Error as exc:
            raise StorageError(type(exc).__name__) from exc
        return Ingested(snapshot, previous)

    @staticmethod
    async def _head(cur: _Cursor, user_id: str) -> UserHead | None:
        await cur.execute(_HEAD_QUERY, {"u": user_id})
        row = await cur.fetchone()
        assert row is not None  # the aggregate always yields a row
        return _head(row)

    async def _upsert(
        self, cur: _Cursor, user_id: str, rows: Sequence[ReadingRow], head: UserHead | None
    ) -> UserHead:
        keys = [to_us(r.recorded_at) for r in rows]
        replacing = replaces_stored(head, keys)
        current: dict[int, Values] = {}
        if replacing:
            await cur.execute(_STORED_VALUES, (user_id, keys))
            current = {
                us: (quanta_or_none(hrv), quanta_or_none(hr), quanta_or_none(slept))
                for us, hrv, hr, slept in await cur.fetchall()
            }
        params, deltas = plan_upsert(user_id, keys, rows, current)
        await cur.executemany(_UPSERT_READING, params)
        await cur.executemany(
            _ADD_TO_DAY, [(user_id, day, *delta) for day, delta in deltas.items()]
        )
        if replacing:
            fresh = await self._head(cur, user_id)
            assert fresh is not None  # it has the rows just written
            return fresh
        return advance_head(head, keys, current)

    @staticmethod
    async def _inputs(cur: _Cursor, user_id: str, head: UserHead) -> DailyInputs:
        await cur.execute(_WINDOW_QUERY, (user_id, *window_bounds(head)))
        return inputs_from_days(head, await cur.fetchall())

    async def kpi_inputs(self, user_id: str) -> DailyInputs | None:
        try:
            # One snapshot for both reads: a concurrent ingest is seen whole or not.
            async with self._pool.connection() as conn, conn.transaction():
                cur = conn.cursor()
                await cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                head = await self._head(cur, user_id)
                if head is None:
                    return None
                return await self._inputs(cur, user_id, head)
        except psycopg.Error as exc:
            raise StorageError(type(exc).__name__) from exc

    async def probe(self) -> None:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute(_PROBE)
        except psycopg.Error as exc:
            raise StorageError(type(exc).__name__) from exc

    async def readiness_counts(self) -> dict[str, int]:
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT readiness, sum(users) FROM readiness_counts GROUP BY readiness"
                )
                return {str(band): int(n) for band, n in await cur.fetchall() if n}
        except psycopg.Error as exc:
            raise StorageError(type(exc).__name__) from exc
