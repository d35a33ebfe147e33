"""Durability under load: concurrent ingest into the real agent, SIGKILL, restart.

Writers post batches of new readings and batches that replace readings acknowledged
earlier, each writer owning its users. The agent is killed with SIGKILL while they
write; a new agent is started on the same SQLite file. Then:

* every acknowledged reading is in the ``readings`` table, holding the values of the
  last acknowledged batch that sent its instant;
* each batch that was sent but not acknowledged (in flight at the kill) is stored
  entirely or not at all;
* nothing that was never sent is stored;
* each user's KPIs are served and are as of the latest acknowledged reading or later.
"""

import math
import os
import random
import signal
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from enum import Enum
from itertools import pairwise
from pathlib import Path
from statistics import fmean

import httpx
import pytest

from tests.support.processes import LiveAgent, wait_until

StartAgent = Callable[..., LiveAgent]

WRITERS = 8
USERS_PER_WRITER = 3
KILL_AFTER_ACKNOWLEDGED = 300
# A ceiling only, so that a broken kill cannot make the writers run forever; the kill
# comes long before it (checked: every writer must have been cut off by the kill).
MAX_BATCHES_PER_WRITER = 1000
MAX_READINGS_PER_BATCH = 5
MAX_REPLACED_PER_BATCH = 3
REPLACE_SHARE = 0.25  # of the batches sent once a user has acknowledged readings
FIRST_INSTANT = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)  # between the new readings of one user
# The same instant may come back with another offset: identity is the instant.
OFFSETS: list[tzinfo] = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5.5))]
REL = 1e-6  # the engine may keep values on a fine fixed-point grid
CLIENT_TIMEOUT_SECONDS = 10.0
LOG_TAIL_CHARS = 3000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# What the readings table holds for one reading: hrv_rmssd_ms, resting_hr_bpm, sleep_hours.
Row = tuple[float | None, float | None, float | None]


@pytest.fixture(autouse=True)
def _no_inherited_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agents here get exactly the NEUROS_*/OTEL_* variables the fixture sets."""
    for name in list(os.environ):
        if name.startswith(("NEUROS_", "OTEL_")):
            monkeypatch.delenv(name)


def _epoch_us(at: datetime) -> int:
    delta = at.astimezone(UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _rmssd(rr_intervals_ms: tuple[float, ...]) -> float:
    return math.sqrt(fmean((b - a) ** 2 for a, b in pairwise(rr_intervals_ms)))


def _same(stored: Row | None, expected: Row | None) -> bool:
    """Column by column: both NULL, or both values within REL of each other."""
    if stored is None or expected is None:
        return stored is expected
    return all(
        (s is None and e is None)
        or (s is not None and e is not None and s == pytest.approx(e, rel=REL))
        for s, e in zip(stored, expected, strict=True)
    )


@dataclass(frozen=True)
class Sent:
    """One reading as posted."""

    at: datetime
    offset: tzinfo
    rr_intervals_ms: tuple[float, ...] | None
    resting_hr_bpm: float | None
    sleep_hours: float | None

    @property
    def at_us(self) -> int:
        return _epoch_us(self.at)

    def row(self) -> Row:
        hrv = None if self.rr_intervals_ms is None else _rmssd(self.rr_intervals_ms)
        return (hrv, self.resting_hr_bpm, self.sleep_hours)

    def body(self) -> dict[str, object]:
        recorded_at = self.at.astimezone(self.offset).isoformat()
        body: dict[str, object] = {"recorded_at": recorded_at.replace("+00:00", "Z")}
        if self.rr_intervals_ms is not None:
            body["rr_intervals_ms"] = list(self.rr_intervals_ms)
        if self.resting_hr_bpm is not None:
            body["resting_hr_bpm"] = self.resting_hr_bpm
        if self.sleep_hours is not None:
            body["sleep_hours"] = self.sleep_hours
        return body


class Outcome(Enum):
    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"  # 201
    UNKNOWN = "unknown"  # transport error or timeout: the kill came first
    REJECTED = "rejected"  # any other status: a failure of the test


@dataclass
class Batch:
    user: str
    readings: list[Sent]
    # Per instant, the last acknowledged row before this batch; None for a new instant.
    before: dict[int, Row | None]
    outcome: Outcome = Outcome.PENDING
    detail: str = ""


@dataclass
class Ledger:
    """Every batch, in the order sent (per user, that is the order of its writer)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: list[Batch] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        with self.lock:
            return sum(b.outcome is outcome for b in self.batches)

    def summary(self) -> str:
        with self.lock:
            counts = {o: sum(b.outcome is o for b in self.batches) for o in Outcome}
            replacing = sum(any(v is not None for v in b.before.values()) for b in self.batches)
            readings = sum(
                len(b.readings) for b in self.batches if b.outcome is Outcome.ACKNOWLEDGED
            )
        return (
            f"batches: {counts[Outcome.ACKNOWLEDGED]} acknowledged ({readings} readings), "
            f"{counts[Outcome.UNKNOWN]} unknown, {counts[Outcome.REJECTED]} rejected, "
            f"{counts[Outcome.PENDING]} pending; {replacing} sent were replacing batches"
        )


@dataclass
class UserState:
    next_index: int = 0
    acknowledged: dict[int, Sent] = field(default_factory=dict)  # at_us -> last acknowledged


def _values(rng: random.Random, at: datetime) -> Sent:
    kinds = rng.choice(
        [("rr",), ("hr",), ("sleep",), ("rr", "hr"), ("rr", "sleep"), ("hr", "sleep")]
        + [("rr", "hr", "sleep")] * 2
    )
    rr = None
    if "rr" in kinds:
        rr = tuple(float(rng.randrange(600, 1100)) for _ in range(rng.randint(2, 8)))
        while _rmssd(rr) < 1:  # nearly flat by chance: draw again
            rr = tuple(float(rng.randrange(600, 1100)) for _ in range(len(rr)))
    return Sent(
        at=at,
        offset=rng.choice(OFFSETS),
        rr_intervals_ms=rr,
        resting_hr_bpm=round(rng.uniform(40, 90), 1) if "hr" in kinds else None,
        sleep_hours=round(rng.uniform(1, 11), 2) if "sleep" in kinds else None,
    )


def _plan(rng: random.Random, user: str, state: UserState) -> Batch:
    """1-5 readings: new instants after the user's latest, and sometimes replacements of
    acknowledged instants with other values."""
    readings: list[Sent] = []
    before: dict[int, Row | None] = {}
    if state.acknowledged and rng.random() < REPLACE_SHARE:
        k = rng.randint(1, min(MAX_REPLACED_PER_BATCH, len(state.acknowledged)))
        for at_us in rng.sample(sorted(state.acknowledged), k):
            old = state.acknowledged[at_us]
            new = _values(rng, old.at)
            while _same(new.row(), old.row()):  # must be told apart after the kill
                new = _values(rng, old.at)
            readings.append(new)
            before[at_us] = old.row()
        fresh = rng.randint(0, MAX_READINGS_PER_BATCH - k)
    else:
        fresh = rng.randint(1, MAX_READINGS_PER_BATCH)
    for _ in range(fresh):
        new = _values(rng, FIRST_INSTANT + state.next_index * STEP)
        state.next_index += 1
        readings.append(new)
        before[new.at_us] = None
    rng.shuffle(readings)
    return Batch(user, readings, before)


def _users(writer: int) -> list[str]:
    return [f"dur-{writer * USERS_PER_WRITER + n}" for n in range(USERS_PER_WRITER)]


def _write(writer: int, agent: LiveAgent, ledger: Ledger, stop: threading.Event) -> None:
    """Post batches until the agent goes away (or ``stop``); each user's batches in order."""
    rng = random.Random(writer)  # noqa: S311 - test data, not secrets
    states = {user: UserState() for user in _users(writer)}
    with agent.client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        for _ in range(MAX_BATCHES_PER_WRITER):
            if stop.is_set():
                return
            user = rng.choice(list(states))
            batch = _plan(rng, user, states[user])
            with ledger.lock:
                ledger.batches.append(batch)
            body = {"readings": [r.body() for r in batch.readings]}
            try:
                response = client.post(f"/v1/users/{user}/readings", json=body)
            except httpx.TransportError as exc:
                # Killed before, during or after storing it; a later batch could race a
                # request the agent is still working on, so this writer stops here.
                with ledger.lock:
                    batch.outcome, batch.detail = Outcome.UNKNOWN, repr(exc)
                return
            if response.status_code != 201:
                with ledger.lock:
                    batch.outcome = Outcome.REJECTED
                    batch.detail = f"{response.status_code} {response.text[:300]}"
                return
            with ledger.lock:
                batch.outcome = Outcome.ACKNOWLEDGED
            for reading in batch.readings:
                states[user].acknowledged[reading.at_us] = reading


def _run_writer(writer: int, agent: LiveAgent, ledger: Ledger, stop: threading.Event) -> None:
    try:
        _write(writer, agent, ledger, stop)
    except Exception as exc:  # reported by the test, not lost in a thread
        with ledger.lock:
            ledger.crashes.append(f"writer {writer}: {exc!r}")


def _tail(agent: LiveAgent) -> str:
    return f"--- {agent.log_path.name} (tail) ---\n{agent.log()[-LOG_TAIL_CHARS:]}"


def _stored(db_path: Path) -> dict[tuple[str, int], Row]:
    with closing(sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT user_id, recorded_at_us, hrv_rmssd_ms, resting_hr_bpm, sleep_hours "
            "FROM readings WHERE user_id LIKE 'dur-%'"
        ).fetchall()
    return {(str(u), int(at)): (hrv, hr, sleep) for u, at, hrv, hr, sleep in rows}


def _instant(text: str) -> datetime:
    at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert at.utcoffset() is not None, f"as_of without an offset: {text!r}"
    return at


@pytest.mark.slow
def test_acknowledged_readings_survive_sigkill_under_concurrent_ingest_and_replace(
    live_agent: StartAgent, tmp_path: Path
) -> None:
    db_path = tmp_path / "durability.db"
    first = live_agent(db_path=db_path)
    ledger = Ledger()
    stop = threading.Event()
    writers = [
        threading.Thread(
            target=_run_writer,
            args=(n, first, ledger, stop),
            name=f"durability-writer-{n}",
            daemon=True,
        )
        for n in range(WRITERS)
    ]

    def context(*agents: LiveAgent) -> str:
        with ledger.lock:
            odd = [
                f"{b.user}: {b.outcome.value} {b.detail}"
                for b in ledger.batches
                if b.outcome in (Outcome.REJECTED, Outcome.PENDING)
            ]
            crashes = list(ledger.crashes)
        lines = [ledger.summary(), *odd[:10], *crashes, *(_tail(a) for a in agents)]
        return "\n".join(lines)

    for writer in writers:
        writer.start()
    try:
        wait_until(
            lambda: (
                ledger.count(Outcome.ACKNOWLEDGED) >= KILL_AFTER_ACKNOWLEDGED
                or not all(w.is_alive() for w in writers)
            ),
            timeout=60,
            what=f"{KILL_AFTER_ACKNOWLEDGED} acknowledged batches",
            details=lambda: context(first),
        )
        # Every writer still running: the kill lands while all of them post.
        assert all(w.is_alive() for w in writers), context(first)
        assert first.kill(signal.SIGKILL) == -signal.SIGKILL, context(first)
        wait_until(
            lambda: not any(w.is_alive() for w in writers),
            timeout=2 * CLIENT_TIMEOUT_SECONDS,
            what="the writers to notice the kill",
            details=lambda: context(first),
        )
    finally:
        stop.set()

    # Each writer ended on the one batch the kill cut off; nothing else went wrong.
    assert not ledger.crashes, context(first)
    assert ledger.count(Outcome.ACKNOWLEDGED) >= KILL_AFTER_ACKNOWLEDGED, context(first)
    assert ledger.count(Outcome.UNKNOWN) == WRITERS, context(first)
    assert ledger.count(Outcome.REJECTED) == ledger.count(Outcome.PENDING) == 0, context(first)

    second = live_agent(db_path=db_path)
    problems: list[str] = []

    # Expected content: the last acknowledged row of every acknowledged instant, and
    # the batch each writer had in flight (stored entirely or not at all).
    expected: dict[tuple[str, int], Row] = {}
    latest_acknowledged: dict[str, datetime] = {}
    latest_sent: dict[str, datetime] = {}
    in_flight: list[Batch] = []
    for batch in ledger.batches:
        for r in batch.readings:
            latest_sent[batch.user] = max(latest_sent.get(batch.user, r.at), r.at)
        if batch.outcome is Outcome.UNKNOWN:
            in_flight.append(batch)
            continue
        for r in batch.readings:
            expected[(batch.user, r.at_us)] = r.row()
            latest_acknowledged[batch.user] = max(latest_acknowledged.get(batch.user, r.at), r.at)

    # The API: KPIs served, as of the latest acknowledged reading or later (and of no
    # instant that was never sent).
    all_users = [user for writer in range(WRITERS) for user in _users(writer)]
    with second.client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        for user in all_users:
            got = client.get(f"/v1/users/{user}/kpis")
            if user not in latest_acknowledged:
                if got.status_code == 404 and user in latest_sent:
                    continue  # only its in-flight batch was sent, and it was lost whole
                if user not in latest_sent:
                    if got.status_code != 404:
                        problems.append(f"{user}: never sent to, got {got.status_code}")
                    continue
            if got.status_code != 200:
                problems.append(f"{user}: GET kpis {got.status_code} {got.text[:200]}")
                continue
            as_of = _instant(got.json()["as_of"])
            floor = latest_acknowledged.get(user, EPOCH)
            if not floor <= as_of <= latest_sent[user]:
                problems.append(
                    f"{user}: as_of {as_of.isoformat()} outside "
                    f"[{floor.isoformat()}, {latest_sent[user].isoformat()}]"
                )

    # The table, read after the restart (the new agent has recovered the WAL).
    stored = _stored(db_path)
    in_flight_keys = {(b.user, r.at_us) for b in in_flight for r in b.readings}
    for key, row in expected.items():
        if key in in_flight_keys:
            continue  # replaced by the in-flight batch, or not: checked below
        if key not in stored:
            problems.append(f"{key}: acknowledged, missing")
        elif not _same(stored[key], row):
            problems.append(f"{key}: stored {stored[key]}, last acknowledged {row}")
    applied = 0
    for batch in in_flight:
        states = []
        for r in batch.readings:
            key = (batch.user, r.at_us)
            now, new, old = stored.get(key), r.row(), batch.before[r.at_us]
            if _same(now, new):
                states.append("new")
            elif _same(now, old):
                states.append("old")
            else:
                problems.append(f"{key}: in flight, stored {now}, sent {new}, before {old}")
        if len(set(states)) > 1:
            problems.append(f"{batch.user}: in-flight batch half stored: {states}")
        applied += states[:1] == ["new"]
    sent_keys = {(b.user, r.at_us) for b in ledger.batches for r in b.readings}
    invented = sorted(set(stored) - sent_keys)
    if invented:
        problems.append(f"{len(invented)} stored readings never sent, e.g. {invented[:5]}")

    assert not problems, (
        f"{len(problems)} problems, first ones:\n"
        + "\n".join(problems[:20])
        + f"\n{context(first, second)}\n"
        + f"in-flight batches stored whole: {applied} of {len(in_flight)}"
    )
