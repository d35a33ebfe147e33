"""Group commit: grouping, per-batch isolation, group-wide storage failures, order."""

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from neuros.ingest import GroupCommitWriter, GroupLimits
from neuros.store import ReadingRow, StorageError, Store, Transaction

AT = datetime(2025, 1, 1, 7, tzinfo=UTC)


def reading(minutes: int = 0) -> ReadingRow:
    return ReadingRow(AT + timedelta(minutes=minutes), None, 40.0, 40.0, 55.0, 7.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "neuros.db")
    store.open()
    yield store
    store.close()


def stored_users(store: Store) -> set[str]:
    rows = store.connect().execute("SELECT DISTINCT user_id FROM readings").fetchall()
    return {str(r[0]) for r in rows}


def write(user: str, minutes: int = 0) -> Callable[[Transaction], str]:
    def run(tx: Transaction) -> str:
        tx.upsert_readings(user, [reading(minutes)])
        return user

    return run


def run_writer(
    store: Store,
    limits: GroupLimits,
    body: Callable[[GroupCommitWriter], Any],
) -> tuple[Any, GroupCommitWriter]:
    """Run ``body(writer)`` on a fresh event loop with a started writer."""

    async def main() -> tuple[Any, GroupCommitWriter]:
        writer = GroupCommitWriter(store, limits)
        writer.start()
        try:
            return await body(writer), writer
        finally:
            await writer.close()

    return asyncio.run(main())


def test_concurrent_batches_share_groups_bounded_by_size(store: Store) -> None:
    async def acknowledged(writer: GroupCommitWriter, user: str) -> str:
        result = await writer.submit(write(user))
        # Acknowledged means committed: another connection sees it already.
        assert user in stored_users(store)
        return result

    async def body(writer: GroupCommitWriter) -> list[str]:
        return await asyncio.gather(*(acknowledged(writer, f"u{n}") for n in range(10)))

    results, writer = run_writer(store, GroupLimits(max_batches=4), body)
    assert results == [f"u{n}" for n in range(10)]
    assert stored_users(store) == {f"u{n}" for n in range(10)}
    # 10 batches submitted at once, at most 4 a group: 3 groups, not 10 commits.
    assert writer.groups_committed == 3


def test_a_batch_that_fails_alone_gets_its_error_and_the_rest_commits(store: Store) -> None:
    store.connect().execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.user_id = 'bad' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )

    def explode(tx: Transaction) -> str:
        tx.upsert_readings("bug", [reading()])
        raise ValueError("a bug in one batch")

    async def body(writer: GroupCommitWriter) -> list[Any]:
        jobs = [write("good-1"), write("bad"), explode, write("good-2")]
        return await asyncio.gather(*(writer.submit(j) for j in jobs), return_exceptions=True)

    results, writer = run_writer(store, GroupLimits(), body)
    assert results[0] == "good-1"
    assert results[3] == "good-2"
    assert isinstance(results[1], StorageError)
    assert isinstance(results[2], ValueError)
    assert writer.groups_committed == 1
    assert stored_users(store) == {"good-1", "good-2"}


class FailingConnection:
    """The writer's connection, failing one kind of statement like a full disk."""

    def __init__(self, conn: sqlite3.Connection, fail_on: str) -> None:
        self._conn = conn
        self._fail_on = fail_on

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.strip().startswith(self._fail_on):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.strip().startswith(self._fail_on):
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.executemany(sql, *args)

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def close(self) -> None:
        self._conn.close()


@pytest.mark.parametrize("fail_on", ["COMMIT", "INSERT INTO daily_totals"])
def test_a_storage_failure_fails_the_whole_group_and_stores_nothing(
    store: Store, fail_on: str
) -> None:
    async def body(writer: GroupCommitWriter) -> list[Any]:
        writer._conn = FailingConnection(writer._conn, fail_on)  # type: ignore[arg-type, assignment]
        jobs = [writer.submit(write(f"u{n}")) for n in range(5)]
        failed = await asyncio.gather(*jobs, return_exceptions=True)
        # The writer recovers: the next group commits.
        writer._conn = writer._conn._conn  # type: ignore[union-attr]
        return [*failed, await writer.submit(write("after"))]

    results, _ = run_writer(store, GroupLimits(), body)
    assert all(isinstance(r, StorageError) for r in results[:5]), results
    assert results[5] == "after"
    assert stored_users(store) == {"after"}


def test_committed_callbacks_run_after_commit_in_commit_order(store: Store) -> None:
    seen: list[tuple[str, bool]] = []

    def committed(user: str) -> None:
        # Visible to another connection: the COMMIT has happened.
        seen.append((user, user in stored_users(store)))

    async def body(writer: GroupCommitWriter) -> None:
        await asyncio.gather(
            *(writer.submit(write(f"u{n}"), committed) for n in range(6)),
            return_exceptions=True,
        )

    run_writer(store, GroupLimits(max_batches=2), body)
    assert seen == [(f"u{n}", True) for n in range(6)]


def test_a_full_queue_refuses_at_once(store: Store) -> None:
    async def body(writer: GroupCommitWriter) -> list[Any]:
        jobs = [writer.submit(write(f"u{n}")) for n in range(4)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results, _ = run_writer(store, GroupLimits(max_batches=1, max_pending=2), body)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, StorageError)]
    assert accepted, results
    assert refused, results
    assert len(accepted) + len(refused) == 4


def test_close_commits_what_is_queued_then_refuses(store: Store) -> None:
    async def body(writer: GroupCommitWriter) -> Any:
        pending = [asyncio.ensure_future(writer.submit(write(f"u{n}"))) for n in range(3)]
        await asyncio.sleep(0)  # submitted, not yet committed
        await writer.close()
        with pytest.raises(StorageError):
            await writer.submit(write("late"))
        return await asyncio.gather(*pending)

    results, _ = run_writer(store, GroupLimits(), body)
    assert results == ["u0", "u1", "u2"]
    assert stored_users(store) == {"u0", "u1", "u2"}
