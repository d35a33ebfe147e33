"""Group commit: one writer owns the write connection.

Requests hand their work to the writer and await the outcome: no thread-pool hop per
request. The writer runs on the event loop. While one group's COMMIT (its fsync) runs
on the writer's commit thread, new work queues; when the COMMIT returns, everything
queued (bounded by batches and readings, after an optional wait) becomes the next
group, in one transaction with one fsync. The statements themselves run on the event
loop: they are short, and a second Python thread running them would trade the GIL with
the loop on every statement.

- A request is answered only after the transaction holding its work has committed.
- Each piece of work runs in a savepoint: work that fails alone (a constraint, a bug)
  is rolled back alone and gets its error; the rest of the group commits.
- A storage failure (I/O error, disk full, a failed COMMIT) fails every piece of work
  in the group with :class:`StorageError`, and nothing of the group is stored.
- ``committed`` callbacks run after the COMMIT, in commit order (readiness-band moves
  depend on that order).
"""

import asyncio
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from neuros.store import StorageError, Store, Transaction

logger = logging.getLogger("neuros.ingest")

T = TypeVar("T")

# Errors of one piece of work: its data broke a constraint. Any other sqlite3.Error is
# the database failing, and fails the whole group.
_WORK_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError)
# At ~1000 req/s a quarter second of WAL is a few MB: small checkpoints, often.
CHECKPOINT_INTERVAL_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class GroupLimits:
    max_batches: int = 256
    max_readings: int = 20_000
    # How long a group waits for more work once it has some; 0 takes only what is
    # queued (a COMMIT in flight already lets the next group gather).
    max_wait_seconds: float = 0.0
    # Work waiting for the writer beyond this is refused at once (503), not queued.
    max_pending: int = 10_000


@dataclass(slots=True)
class _Work(Generic[T]):
    run: Callable[[Transaction], T]
    committed: Callable[[T], None] | None
    size: int
    future: "asyncio.Future[T]"


_Outcome = tuple[_Work[Any], Any, BaseException | None]


class GroupCommitWriter:
    def __init__(self, store: Store, limits: GroupLimits | None = None) -> None:
        self._store = store
        self._limits = limits or GroupLimits()
        self._pending: deque[_Work[Any]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._committer: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._busy = False  # a group is being written or committed
        self._idle: asyncio.Event | None = None
        self._checkpointer: Checkpointer | None = None
        self.groups_committed = 0

    def start(self) -> None:
        """Open the write connection; call from the event loop that will submit."""
        self._loop = asyncio.get_running_loop()
        self._conn = self._store.connect()
        # Checkpoints run on a thread of their own (Checkpointer), not inside the
        # COMMIT that happens to cross the WAL threshold: on a large database a
        # checkpoint writes many scattered pages, and the whole group waited for it.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = Checkpointer(self._store)
        self._checkpointer.start()
        self._committer = ThreadPoolExecutor(1, thread_name_prefix="neuros-commit")
        self._idle = asyncio.Event()
        self._idle.set()

    async def close(self) -> None:
        """Stop accepting work, commit what is queued, close the connection."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._pending and not self._busy:
            self._schedule(loop)
        while self._busy or self._pending:
            assert self._idle is not None
            self._idle.clear()
            await self._idle.wait()
        if self._committer is not None:
            self._committer.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
        if self._checkpointer is not None:
            self._checkpointer.stop()

    @property
    def alive(self) -> bool:
        return self._loop is not None

    async def submit(
        self,
        run: Callable[[Transaction], T],
        committed: Callable[[T], None] | None = None,
        *,
        size: int = 1,
    ) -> T:
        """Run ``run`` in the next group; return its result once the group committed."""
        loop = self._loop
        if loop is None:
            raise StorageError("writer not running")
        if len(self._pending) >= self._limits.max_pending:
            raise StorageError("writer queue full")
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Work(run, committed, size, future))
        if not self._busy:
            self._busy = True
            self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # call_soon lets the requests already readable in this loop turn join the group.
        wait = self._limits.max_wait_seconds
        if wait > 0:
            loop.call_later(wait, self._write_group)
        else:
            loop.call_soon(self._write_group)

    def _take_group(self) -> list[_Work[Any]]:
        limits, pending = self._limits, self._pending
        group: list[_Work[Any]] = []
        readings = 0
        while pending and len(group) < limits.max_batches and readings < limits.max_readings:
            work = pending.popleft()
            group.append(work)
            readings += work.size
        return group

    def _write_group(self) -> None:
        """Run a group's work inside one transaction, then hand the COMMIT over."""
        self._busy = True
        group = self._take_group()
        if not group:
            self._done()
            return
        conn = self._conn
        assert conn is not None
        assert self._committer is not None
        outcomes: list[_Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(conn)
            for work in group:
                if work.future.cancelled():  # the client went away before we started
                    continue
                try:
                    with tx.savepoint():
                        outcomes.append((work, work.run(tx), None))
                except _WORK_ERRORS as exc:
                    outcomes.append((work, None, StorageError(type(exc).__name__)))
                except sqlite3.Error:
                    raise
                except Exception as exc:
                    outcomes.append((work, None, exc))
        except sqlite3.Error as exc:
            self._rollback(conn)
            self._fail(group, exc)
            return
        commit = asyncio.wrap_future(self._committer.submit(conn.execute, "COMMIT"))
        commit.add_done_callback(lambda done: self._committed(done, group, outcomes))

    def _committed(
        self, done: "asyncio.Future[Any]", group: list[_Work[Any]], outcomes: list[_Outcome]
    ) -> None:
        error = done.exception()
        if error is not None:
            assert self._conn is not None
            self._rollback(self._conn)
            self._fail(group, error)
            return
        self.groups_committed += 1
        for work, result, failure in outcomes:
            if failure is None and work.committed is not None:
                try:
                    work.committed(result)
                except Exception:
                    logger.exception("committed callback failed")
        _settle(outcomes)
        self._next()

    def _fail(self, group: list[_Work[Any]], error: BaseException) -> None:
        logger.error("group of %d rolled back: %s", len(group), type(error).__name__)
        _settle([(work, None, StorageError(type(error).__name__)) for work in group])
        self._next()

    def _next(self) -> None:
        if self._pending:
            loop = self._loop or asyncio.get_running_loop()
            self._schedule(loop)
        else:
            self._done()

    def _done(self) -> None:
        self._busy = False
        if self._idle is not None:
            self._idle.set()

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as exc:  # the next BEGIN will tell if the connection is gone
            logger.error("rollback failed: %s", type(exc).__name__)


def _settle(outcomes: list[_Outcome]) -> None:
    for work, result, error in outcomes:
        if work.future.done():  # the request was cancelled (client went away)
            continue
        if error is None:
            work.future.set_result(result)
        else:
            work.future.set_exception(error)


class Checkpointer:
    """Copies the WAL back into the database from its own thread and connection.

    PASSIVE checkpoints never block the writer: they copy what no reader still needs,
    and the WAL is reused from the start once all of it has been copied.
    """

    def __init__(self, store: Store, interval_seconds: float = CHECKPOINT_INTERVAL_SECONDS):
        self._store = store
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="neuros-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        conn = self._store.connect()
        try:
            while not self._stop.wait(self._interval):
                self._checkpoint(conn, "PASSIVE")
            # The writer is closed: leave a small WAL behind for the next start.
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error as exc:  # retried at the next interval
            logger.warning("checkpoint failed: %s", type(exc).__name__)
