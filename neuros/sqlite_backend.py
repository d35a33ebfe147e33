"""The SQLite backend: one file, writes through the group-commit writer.

Reads run on the event loop, synchronously: two indexed reads cost less than a
worker-thread hop (``neuros.store``).
"""

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from neuros.backend import Assess, Ingested
from neuros.ingest import GroupCommitWriter, GroupLimits
from neuros.kpi import DailyInputs
from neuros.store import ReadingRow, StorageError, Store, Transaction


def write_batch(
    tx: Transaction, user_id: str, rows: Sequence[ReadingRow], assess: Assess
) -> Ingested:
    """Inside the group's transaction, before its COMMIT."""
    before = tx.head(user_id)
    head = tx.upsert_readings(user_id, rows, before)
    inputs = tx.kpi_inputs(user_id, head)
    assert inputs is not None
    snapshot = assess(inputs)
    previous = None if before is None else before.readiness
    tx.set_readiness(user_id, snapshot.readiness.value, previous)
    return Ingested(snapshot, previous)


class SqliteBackend:
    system = "sqlite"

    def __init__(self, path: Path, limits: GroupLimits | None = None) -> None:
        self.store = Store(path)
        self.writer = GroupCommitWriter(self.store, limits)

    async def start(self) -> None:
        self.store.open()
        self.writer.start()

    async def stop(self) -> None:
        await self.writer.close()
        self.store.close()

    @property
    def schema_version(self) -> int:
        return self.store.schema_version()

    async def ingest(self, user_id: str, rows: Sequence[ReadingRow], assess: Assess) -> Ingested:
        return await self.writer.submit(
            lambda tx: write_batch(tx, user_id, rows, assess), size=len(rows)
        )

    async def kpi_inputs(self, user_id: str) -> DailyInputs | None:
        try:
            with self.store.read() as tx:
                return tx.kpi_inputs(user_id)
        except sqlite3.Error as exc:
            raise StorageError(type(exc).__name__) from exc

    async def probe(self) -> None:
        await self.writer.submit(Transaction.probe, size=0)

    async def readiness_counts(self) -> dict[str, int]:
        try:
            return self.store.readiness_counts()
        except sqlite3.Error as exc:
            raise StorageError(type(exc).__name__) from exc
