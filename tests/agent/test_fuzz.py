"""Generated bad input never makes the agent answer 5xx, nor store part of a batch.

Two layers: schemathesis drives every operation of the OpenAPI schema with positive
and negative data (plus its boundary-value coverage phase), checking that no response
is a server error; hypothesis then throws arbitrary JSON and near-valid batches at the
ingest route and checks that a rejected batch leaves nothing behind.
"""

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

# Imported for its schemathesis ``map_case`` hook: positive cases keep ``recorded_at``
# within the document's x-earliest / x-max-future bounds, so they get as far as storage.
import tests.support.contract_hooks  # noqa: F401
from neuros.auth.admin_token import bearer
from neuros.config import Settings
from neuros.main import create_app
from tests.support.agent import InProcess, add_token, openapi_document

SCHEMATHESIS_MAX_EXAMPLES = 100
HYPOTHESIS_MAX_EXAMPLES = 150


def _build_app(db_path: Path, tokens_file: Path) -> FastAPI:
    # No span processor: spans are recorded (the path-redaction hook runs) and dropped.
    return create_app(
        Settings(db_path=db_path, api_tokens_file=tokens_file),
        registry=CollectorRegistry(),
        tracer_provider=TracerProvider(),
    )


# The schema is read once, at collection. Each test then sends its cases to an app of
# its own.
schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=SCHEMATHESIS_MAX_EXAMPLES,
    # Reproducible in CI, and no example database written into the repository.
    deterministic=True,
    # Every case carries a valid token (FuzzTarget.headers), so that the generated data
    # reaches validation and storage rather than stopping at the 401.
    with_security_parameters=False,
)


INGEST = "POST /v1/users/{user_id}/readings"


@dataclass
class FuzzTarget:
    app: FastAPI
    headers: dict[str, str]
    # (operation, generation mode, status) of every case sent
    seen: Counter[tuple[str, str, int]] = field(default_factory=Counter)


@pytest.fixture
def fuzz_target(tmp_path: Path) -> Iterator[FuzzTarget]:
    tokens_file = tmp_path / "tokens.yml"
    token = add_token(tokens_file)
    target = FuzzTarget(_build_app(tmp_path / "fuzz.db", tokens_file), bearer(token))
    try:
        yield target
    finally:
        # schemathesis starts the app's lifespan on the first call and keeps it running.
        asgi.shutdown_lifespans()
    # A run that never reached the app, or never got past validation, proves nothing.
    assert target.seen, "schemathesis sent no request"
    refused = {key: n for key, n in target.seen.items() if key[2] in (401, 403)}
    assert not refused, f"cases sent without a valid token: {refused}"
    ingest = {(mode, status) for (label, mode, status) in target.seen if label == INGEST}
    if ingest:
        assert ("positive", 201) in ingest, ingest
        assert any(mode == "negative" and 400 <= s < 500 for mode, s in ingest), ingest


@schema.parametrize()
@settings(
    deadline=None,
    # The cases share the test's app on purpose: it carries state from one to the next.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_operation_answers_5xx_to_generated_input(case: Any, fuzz_target: FuzzTarget) -> None:
    response = case.call_and_validate(
        app=fuzz_target.app, headers=fuzz_target.headers, checks=[not_a_server_error]
    )
    mode = str(case.meta.generation.mode) if case.meta is not None else "explicit"
    fuzz_target.seen[(case.operation.label, mode, response.status_code)] += 1


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("sleep_hours", True),
        ("sleep_hours", False),
        ("hrv_rmssd_ms", True),
        ("sleep_hours", "7.5"),
        ("resting_hr_bpm", "60"),
        ("rr_intervals_ms", ["800", "810"]),
    ],
)
def test_measurements_must_be_json_numbers(app: InProcess, name: str, value: object) -> None:
    """The schema says ``number``: a boolean is not 1 h of sleep, nor a string a heart rate."""
    body = {"readings": [{"recorded_at": "2026-11-20T07:00:00Z", name: value}]}
    response = app.client.post("/v1/users/u/readings", json=body)
    assert response.status_code == 422, response.json()
    assert response.json()["detail"][0]["loc"][:4] == ["body", "readings", 0, name]
    assert app.client.get("/v1/users/u/kpis").status_code == 404


@pytest.mark.parametrize(
    "recorded_at",
    [
        "9999-12-31T23:59:59-23:59",  # after datetime.max once in UTC
        "0001-01-01T00:00:00+00:01",  # before datetime.min once in UTC
        "0001-01-05T00:00:00Z",  # its 14-day KPI window starts before datetime.min
    ],
)
def test_timestamps_at_the_edge_of_the_calendar_are_422(app: InProcess, recorded_at: str) -> None:
    """Well-formed RFC 3339, but no instant the agent can store or compute a window for."""
    body = {"readings": [{"recorded_at": recorded_at, "sleep_hours": 7}]}
    response = app.client.post("/v1/users/u/readings", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][:4] == ["body", "readings", 0, "recorded_at"]
    assert app.client.get("/v1/users/u/kpis").status_code == 404


# --- hypothesis: arbitrary JSON, and batches that are almost right ------------------

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and ±Infinity too: Python's json emits them, the app must cope
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=15), children, max_size=5)
    ),
    max_leaves=25,
)

MEASUREMENTS = ("rr_intervals_ms", "hrv_rmssd_ms", "resting_hr_bpm", "sleep_hours")
OFFSETS = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "recorded_at": st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS
    ).map(datetime.isoformat),
    "rr_intervals_ms": st.lists(st.floats(min_value=250, max_value=2500), min_size=2, max_size=6),
    "hrv_rmssd_ms": st.floats(min_value=0, max_value=500, exclude_min=True),
    "resting_hr_bpm": st.floats(min_value=20, max_value=250),
    "sleep_hours": st.floats(min_value=0, max_value=24),
}
BAD_TIMESTAMPS = st.sampled_from(
    [
        "2026-11-20T07:00:00",  # no offset
        "2026-11-20T07:00:00+24:00",  # offset out of range
        "2026-02-30T07:00:00Z",  # no such day
        "2026-11-20T24:00:00Z",
        "9999-12-31T23:59:59-23:59",  # past datetime.max once in UTC
        "0001-01-01T00:00:00+23:59",  # before datetime.min once in UTC
        "0001-01-05T00:00:00Z",  # its 14-day KPI window starts before datetime.min
        "20 Nov 2026",
        "",
    ]
)
BAD_NUMBERS = st.one_of(
    st.sampled_from([-1e-9, -0.0, 1e308, 2**64, -(2**64)]),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not math.isfinite(x)),
    st.floats(min_value=2501),
    JSON_VALUES,
)
BAD: dict[str, st.SearchStrategy[Any]] = {
    "recorded_at": BAD_TIMESTAMPS | JSON_VALUES,
    "rr_intervals_ms": st.one_of(
        st.lists(st.floats(min_value=250, max_value=2500), max_size=1),
        st.lists(BAD_NUMBERS, min_size=2, max_size=4),
        JSON_VALUES,
    ),
    "hrv_rmssd_ms": BAD_NUMBERS | st.just(0),
    "resting_hr_bpm": BAD_NUMBERS | st.floats(max_value=19.99),
    "sleep_hours": BAD_NUMBERS | st.floats(min_value=24.01),
}


@st.composite
def near_valid_reading(draw: st.DrawFn) -> dict[str, Any]:
    """A valid reading, left intact half of the time and otherwise spoilt in one way."""
    measured = draw(st.sets(st.sampled_from(MEASUREMENTS), min_size=1))
    reading = {name: draw(VALID[name]) for name in ("recorded_at", *sorted(measured))}
    match draw(st.sampled_from(["intact", "intact", "bad value", "drop", "extra key"])):
        case "bad value":
            name = draw(st.sampled_from(sorted(reading)))
            reading[name] = draw(BAD[name])
        case "drop":
            del reading[draw(st.sampled_from(sorted(reading)))]
        case "extra key":
            reading[draw(st.text(max_size=12).filter(lambda k: k not in VALID))] = draw(JSON_VALUES)
    return reading


NEAR_VALID_BATCHES = st.fixed_dictionaries(
    {"readings": st.lists(near_valid_reading(), min_size=0, max_size=4)}
)

FUZZ_SETTINGS = settings(
    max_examples=HYPOTHESIS_MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # The examples share the test's app on purpose: the checks are about what it stored.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _post_raw(app: InProcess, user: str, body: Any) -> httpx.Response:
    # json.dumps, not the client's encoder: NaN and Infinity go out as Python writes them.
    response: httpx.Response = app.client.post(
        f"/v1/users/{user}/readings",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    return response


@FUZZ_SETTINGS
@given(body=JSON_VALUES)
def test_arbitrary_json_is_rejected_without_storing_anything(app: InProcess, body: Any) -> None:
    status = _post_raw(app, "u", body).status_code
    assert status < 500, (status, body)
    if 400 <= status < 500:
        assert app.client.get("/v1/users/u/kpis").status_code == 404, body


_users = itertools.count()


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@FUZZ_SETTINGS
@given(body=NEAR_VALID_BATCHES)
def test_near_valid_batches_are_all_or_nothing(app: InProcess, body: dict[str, Any]) -> None:
    user = f"near-{next(_users)}"  # a fresh user per example: its state is this batch's
    response = _post_raw(app, user, body)
    assert response.status_code < 500, (response.status_code, body)
    kpis = app.client.get(f"/v1/users/{user}/kpis")
    if response.status_code != 201:
        assert 400 <= response.status_code < 500, body
        assert kpis.status_code == 404, body  # not one reading of a rejected batch kept
        return
    readings = body["readings"]
    assert response.json()["accepted"] == len(readings)
    assert kpis.status_code == 200
    assert kpis.json() == response.json()["kpis"]
    latest = max(_instant(r["recorded_at"]) for r in readings)
    assert _instant(kpis.json()["as_of"]) == latest


def test_near_valid_batches_reach_both_outcomes(make_app: Callable[..., InProcess]) -> None:
    """Guard against a vacuous run: the generator must produce accepted and rejected batches."""
    app = make_app()
    outcomes: Counter[int] = Counter()

    @settings(max_examples=60, deadline=None, derandomize=True, database=None)
    @given(body=NEAR_VALID_BATCHES)
    def run(body: dict[str, Any]) -> None:
        outcomes[_post_raw(app, f"reach-{next(_users)}", body).status_code] += 1

    run()
    assert outcomes[201] >= 5, outcomes
    assert outcomes[422] >= 5, outcomes
