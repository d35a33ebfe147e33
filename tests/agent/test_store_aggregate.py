"""The ingest engine's aggregate maths, shared by both backends (neuros.store): how a
batch moves the per-day totals, the head after a batch, the window a snapshot reads and
the per-band user counts. Pure functions, checked by hand without a database (the
database paths are in tests/agent/test_store.py)."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from neuros.kpi import QUANTA_PER_UNIT, DailyInputs, DayTotals, Point, window_start
from neuros.store import (
    US_PER_DAY,
    ReadingRow,
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

Q = QUANTA_PER_UNIT
START = datetime(2020, 1, 1, 7, tzinfo=UTC)
START_US = 1_577_862_000_000_000  # 2020-01-01T07:00Z in epoch microseconds
START_DAY = 18_262  # 2020-01-01 in days since 1970-01-01


def row(
    at: datetime = START,
    hrv: float | None = 40.0,
    resting_hr: float | None = 55.0,
    sleep: float | None = 7.0,
    rr: list[float] | None = None,
) -> ReadingRow:
    return ReadingRow(at, rr, hrv, hrv, resting_hr, sleep)


# --- instants and quanta ------------------------------------------------------------


def test_instants_are_epoch_microseconds_in_utc() -> None:
    assert to_us(START) == START_US
    assert START_US // US_PER_DAY == START_DAY
    same = START.astimezone(timezone(timedelta(hours=-5)))  # another offset, same instant
    assert to_us(same) == START_US
    precise = START + timedelta(days=3, seconds=5, microseconds=7)
    assert to_us(precise) == START_US + 3 * US_PER_DAY + 5_000_007
    assert to_us(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert from_us(START_US) == START
    assert from_us(to_us(precise)) == precise
    assert from_us(0).tzinfo is UTC


def test_quanta_or_none() -> None:
    assert quanta_or_none(None) is None
    assert quanta_or_none(1.5) == 3 * Q // 2
    assert quanta_or_none(0.0) == 0


# --- plan_upsert: the rows and how the day totals move -------------------------------


def test_new_readings_add_their_values_and_counts_per_day() -> None:
    next_day = START + timedelta(days=1)
    rows = [row(), row(START + timedelta(hours=1), hrv=None, sleep=1.5), row(next_day)]
    keys = [to_us(r.recorded_at) for r in rows]
    current: dict[int, Values] = {}
    params, deltas = plan_upsert("u", keys, rows, current)
    assert deltas == {
        START_DAY: [40 * Q, 1, 110 * Q, 2, 17 * Q // 2, 2],
        START_DAY + 1: [40 * Q, 1, 55 * Q, 1, 7 * Q, 1],
    }
    assert current == {
        keys[0]: (40 * Q, 55 * Q, 7 * Q),
        keys[1]: (None, 55 * Q, 3 * Q // 2),
        keys[2]: (40 * Q, 55 * Q, 7 * Q),
    }
    assert params[0] == ("u", keys[0], START.isoformat(), None, 40.0, 40.0, 55.0, 7.0)
    assert params[1] == ("u", keys[1], rows[1].recorded_at.isoformat(), None, None, None, 55.0, 1.5)


def test_a_replaced_reading_takes_its_old_values_out() -> None:
    key = to_us(START)
    current: dict[int, Values] = {key: (30 * Q, 50 * Q, 6 * Q)}
    new = row(hrv=44.5, resting_hr=50.0, sleep=None)
    _, deltas = plan_upsert("u", [key], [new], current)
    # hrv 30 -> 44.5 (count unchanged), resting HR unchanged, sleep 6 -> none (count -1).
    assert deltas == {START_DAY: [29 * Q // 2, 0, 0, 0, -6 * Q, -1]}
    assert current == {key: (89 * Q // 2, 50 * Q, None)}


def test_within_a_batch_the_last_reading_of_an_instant_wins() -> None:
    key = to_us(START)
    current: dict[int, Values] = {}
    rows = [row(hrv=1.0, sleep=None), row(hrv=2.0, sleep=3.0)]
    _, deltas = plan_upsert("u", [key, key], rows, current)
    assert deltas == {START_DAY: [2 * Q, 1, 55 * Q, 1, 3 * Q, 1]}
    assert current == {key: (2 * Q, 55 * Q, 3 * Q)}


def test_values_are_stored_on_the_grid_and_rr_intervals_as_json() -> None:
    params, _ = plan_upsert("u", [START_US], [row(hrv=0.1, rr=[800.0, 812.5])], {})
    (_, _, _, rr, reported, hrv, _, _) = params[0]
    assert rr == "[800.0,812.5]"
    assert reported == 0.1  # the device's own figure, as sent
    assert hrv == round(0.1 * Q) / Q != 0.1


def test_a_batch_needs_one_key_per_row() -> None:
    with pytest.raises(ValueError, match="zip"):
        plan_upsert("u", [START_US], [row(), row()], {})


# --- the head: latest instant, latest HRV and resting HR ------------------------------


def _head(at: datetime = START, hrv: float | None = 40.0, rhr: float | None = 55.0) -> UserHead:
    return UserHead(
        at,
        None if hrv is None else Point(at, hrv),
        None if rhr is None else Point(at, rhr),
        "high",
    )


def test_only_keys_up_to_the_head_may_replace_a_stored_reading() -> None:
    head = _head()
    assert not replaces_stored(None, [START_US])
    assert replaces_stored(head, [START_US])  # the latest reading itself
    assert replaces_stored(head, [START_US + 10, START_US - 1])  # the earliest counts
    assert not replaces_stored(head, [START_US + 1, START_US + 10])


def test_a_new_user_gets_a_head_from_its_first_batch() -> None:
    keys = [START_US, START_US + 10, START_US + 5]
    values: dict[int, Values] = {
        keys[0]: (10 * Q, 50 * Q, None),
        keys[1]: (None, 60 * Q, 8 * Q),  # the latest instant, without HRV
        keys[2]: (20 * Q, None, None),  # the latest HRV, though not last in the batch
    }
    head = advance_head(None, keys, values)
    assert head == UserHead(
        from_us(keys[1]), Point(from_us(keys[2]), 20.0), Point(from_us(keys[1]), 60.0), None
    )


def test_the_head_keeps_what_a_batch_does_not_replace() -> None:
    later = START_US + 60_000_000
    head = advance_head(_head(), [later], {later: (None, None, 8 * Q)})
    assert head == UserHead(from_us(later), Point(START, 40.0), Point(START, 55.0), "high")
    newer = advance_head(head, [later + 1], {later + 1: (41 * Q, None, None)})
    assert newer.latest_hrv == Point(from_us(later + 1), 41.0)
    assert newer.latest_resting_hr == Point(START, 55.0)
    assert newer.readiness == "high"


def test_the_first_instant_of_the_epoch_is_a_value_like_any_other() -> None:
    head = advance_head(None, [0], {0: (5 * Q, 6 * Q, None)})
    assert head.as_of == from_us(0)
    assert head.latest_hrv == Point(from_us(0), 5.0)
    assert head.latest_resting_hr == Point(from_us(0), 6.0)


# --- the window a snapshot reads, and its rows as KPI inputs ---------------------------


def test_window_bounds_are_the_15_days_up_to_the_heads_day() -> None:
    head = _head(START + timedelta(hours=20))  # 2020-01-02 03:00 UTC
    first, last = window_bounds(head)
    day = to_us(head.as_of) // US_PER_DAY
    assert (first, last) == (day - 14, day)
    # Day numbers, bound as SQL integers.
    assert [type(first), type(last)] == [int, int]
    assert first == to_us(window_start(head.as_of)) // US_PER_DAY


def test_window_rows_become_per_day_totals() -> None:
    head = _head()
    rows = [
        (START_DAY, 80 * Q, 2, 0, 0, 15 * Q, 2),  # HRV and sleep, no resting HR
        (START_DAY - 1, 0, 0, 55 * Q, 1, 0, 0),  # resting HR only
        (START_DAY - 2, 0, 0, 0, 0, 0, 0),  # everything taken out again
    ]
    inputs = inputs_from_days(head, rows)
    today, yesterday = date(2020, 1, 1), date(2019, 12, 31)
    assert inputs == DailyInputs(
        as_of=START,
        latest_hrv=Point(START, 40.0),
        latest_resting_hr=Point(START, 55.0),
        hrv={today: DayTotals(80.0, 2)},
        resting_hr={yesterday: DayTotals(55.0, 1)},
        sleep={today: DayTotals(15.0, 2)},
    )


# --- users per readiness band -------------------------------------------------------


@pytest.mark.parametrize(
    ("readiness", "previous", "moves"),
    [
        ("high", None, [("high", 1)]),
        ("high", "high", []),
        ("low", "high", [("high", -1), ("low", 1)]),
        ("high", "low", [("high", 1), ("low", -1)]),
        ("moderate", "low", [("low", -1), ("moderate", 1)]),
    ],
)
def test_band_moves(readiness: str, previous: str | None, moves: list[tuple[str, int]]) -> None:
    assert band_moves(readiness, previous) == moves
