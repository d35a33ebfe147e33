"""The published OpenAPI document is the agent's contract, and the agent keeps it.

Two layers. In-process: every constraint ``neuros.schemas`` enforces is stated in the
document (structure), and the document's request schema, evaluated by a JSON Schema
validator plus its ``x-earliest`` / ``x-max-future`` bounds, accepts exactly the
readings the server accepts (hypothesis, near the edges). Live: the schemathesis CLI
runs against ``python -m neuros`` under uvicorn with every check, positive and negative
data, and the examples, coverage, fuzzing and stateful phases; it must find nothing.

The live run is authenticated: CONFIG's ``[auth]`` sends the token in
``$NEUROS_API_TOKEN`` on every request, and the ignored_auth check probes each operation
without it and with a wrong one. Reproduce it by hand against an agent on port 8000::

    NEUROS_API_TOKEN="$(cat secrets/neuros-admin-token)" \\
    SCHEMATHESIS_HOOKS=tests/support/contract_hooks.py .venv/bin/schemathesis \\
        --config-file <CONFIG below, saved> run http://127.0.0.1:8000/openapi.json
"""

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from schemathesis.core.warnings import SchemathesisWarning

from neuros.api.auth import SCHEME_NAME
from neuros.auth.admin_token import TOKEN_VARIABLE
from neuros.metrics import AuthFailure
from neuros.schemas import MAX_CLOCK_SKEW, MAX_READINGS_PER_BATCH, MEASUREMENTS, ReadingsBatch
from stacktools.paths import REPO_ROOT
from tests.support.agent import INGEST, READS, SCOPES, InProcess, openapi_document
from tests.support.contract_hooks import EARLIEST, MAX_FUTURE, duration, instant, within_bounds
from tests.support.processes import LiveAgent

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
HOOKS = REPO_ROOT / "tests" / "support" / "contract_hooks.py"
SEED = 20261201
EQUIVALENCE_EXAMPLES = 600
MAX_EXAMPLES = 80  # per operation and generation mode: the run takes ~25 s on 2 cores
BEARER_SCHEME_NAME = SCHEME_NAME  # the CONFIG's [auth.openapi.<name>]

# What the checks accept, each from the documented API (docs/api.md, "API"):
# - a positive (schema-valid) case: ingest answers 201; a read answers 200, or 404 for
#   a user without readings (the generated user ids are mostly unknown); the probes and
#   /metrics answer 200 (the test's database is writable, so /ready is not 503).
# - a negative case: 422 naming the field, 415 for a body that is not JSON, 413 for
#   one over the size limit; nothing else (no 404 for a malformed id, no 5xx).
# - no response takes 10 s (the agent answers in milliseconds; this catches a hang).
CONFIG = f"""
seed = {SEED}
workers = 1
continue-on-failure = true

# Every request carries the admin token (from the environment, not the command line);
# the ignored_auth check also sends requests without it and with a wrong one.
[auth.openapi.{BEARER_SCHEME_NAME}]
bearer = "${{{TOKEN_VARIABLE}}}"

[cache]
enabled = false  # no replay of failures stored by an earlier run: every run is the same

[warnings]
display = {json.dumps([str(w) for w in SchemathesisWarning])}
fail-on = true

[generation]
mode = "all"
max-examples = {MAX_EXAMPLES}
database = "none"
# Authorization comes from [auth], valid, on every case; generated data stays about
# the API's own parameters. ignored_auth probes each operation without a token and
# with a wrong one (both must be refused: the run's auth failures are checked below).
with-security-parameters = false

[checks]
enabled = true
max_response_time = 10.0
positive_data_acceptance.expected-statuses = ["200"]
negative_data_rejection.expected-statuses = ["422"]

[phases]
examples.enabled = true
coverage.enabled = true
fuzzing.enabled = true
stateful.enabled = true
stateful.max-steps = 6

[[operations]]
include-name = "POST /v1/users/{{user_id}}/readings"
checks.positive_data_acceptance.expected-statuses = ["201"]
checks.negative_data_rejection.expected-statuses = ["413", "415", "422"]

[[operations]]
include-name = ["GET /v1/users/{{user_id}}/kpis", "POST /v1/users/{{user_id}}/analyze"]
checks.positive_data_acceptance.expected-statuses = ["200", "404"]
"""
PHASES = ("examples", "coverage", "fuzzing", "stateful")


DOCUMENT: dict[str, Any] = openapi_document()
COMPONENTS: dict[str, Any] = DOCUMENT["components"]["schemas"]
RECORDED_AT: dict[str, Any] = COMPONENTS["Reading"]["properties"]["recorded_at"]


def _resolve(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    return COMPONENTS[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else schema


def _json_schema(response: Mapping[str, Any]) -> Mapping[str, Any]:
    return _resolve(response["content"]["application/json"]["schema"])


# --- the document states what the server enforces ---------------------------------


def test_reading_schema_states_every_constraint() -> None:
    batch = COMPONENTS["ReadingsBatch"]
    assert batch["additionalProperties"] is False
    assert batch["required"] == ["readings"]
    readings = batch["properties"]["readings"]
    assert (readings["minItems"], readings["maxItems"]) == (1, MAX_READINGS_PER_BATCH)

    reading = COMPONENTS["Reading"]
    assert reading["additionalProperties"] is False
    assert reading["required"] == ["recorded_at"]
    # At least one measurement present and not null.
    assert reading["anyOf"] == [
        {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
        for name in MEASUREMENTS
    ]

    def number(name: str) -> dict[str, Any]:
        variants = reading["properties"][name]["anyOf"]
        assert {"type": "null"} in variants
        (value,) = [v for v in variants if v != {"type": "null"}]
        return dict(value)

    rr = number("rr_intervals_ms")
    assert (rr["type"], rr["minItems"], rr["maxItems"]) == ("array", 2, 20000)
    assert rr["items"] == {"type": "number", "minimum": 250, "maximum": 2500}
    assert number("hrv_rmssd_ms") == {"type": "number", "exclusiveMinimum": 0, "maximum": 500}
    assert number("resting_hr_bpm") == {"type": "number", "minimum": 20, "maximum": 250}
    assert number("sleep_hours") == {"type": "number", "minimum": 0, "maximum": 24}

    assert RECORDED_AT["type"] == "string"
    assert RECORDED_AT[EARLIEST] == "1970-01-01T00:00:00Z"
    assert RECORDED_AT[MAX_FUTURE] == "P1D"
    assert "format" not in RECORDED_AT  # date-time forbids the space separator the server takes


def test_every_route_declares_every_status_it_answers() -> None:
    paths = DOCUMENT["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert statuses(*INGEST) == {"201", "401", "403", "413", "415", "422", "503"}
    for path, method in READS:
        assert statuses(path, method) == {"200", "401", "403", "404", "422", "503"}
    assert statuses("/health", "get") == {"200"}
    assert statuses("/ready", "get") == {"200", "503"}
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {
        "text/plain; version=0.0.4; charset=utf-8",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    }
    for path, method in [INGEST, *READS]:
        operation = paths[path][method]
        (user_id,) = operation["parameters"]
        assert user_id["schema"]["pattern"] == r"^[A-Za-z0-9_-]{1,64}$"
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert _json_schema(response) == COMPONENTS["ErrorBody"], (path, status)
        assert operation["responses"]["503"]["headers"]["Retry-After"]["required"] is True
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    body = paths[INGEST[0]][INGEST[1]]["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == {"application/json"}


def test_the_document_declares_bearer_auth_on_every_v1_operation_only() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    (name,) = schemes
    assert name == BEARER_SCHEME_NAME
    assert schemes[name]["type"] == "http"
    assert schemes[name]["scheme"] == "bearer"
    assert "security" not in DOCUMENT, "no document-wide requirement: the probes are open"
    operations = [
        (p, m, op) for p, methods in DOCUMENT["paths"].items() for m, op in methods.items()
    ]
    v1 = [(p, m, op) for p, m, op in operations if p.startswith("/v1/")]
    assert {(p, m) for p, m, _ in v1} == {INGEST, *READS}
    for path, method, operation in v1:
        # One requirement: this scheme, with the scope docs/api.md documents.
        assert operation["security"] == [{name: [SCOPES[path, method].value]}], (path, method)
    open_paths = {p for p, _, op in operations if "security" not in op}
    assert open_paths == {"/health", "/ready", "/metrics"}


@pytest.mark.parametrize("accept", ["", "text/plain", "application/openmetrics-text"])
def test_metrics_answers_a_declared_content_type(app: InProcess, accept: str) -> None:
    declared = DOCUMENT["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    response = app.client.get("/metrics", headers={"accept": accept})
    assert response.status_code == 200
    media = response.headers["content-type"].split(";")[0]
    (match,) = [key for key in declared if key.split(";")[0] == media]
    # The declared parameters (format version, charset) are those sent.
    assert set(match.split("; ")) <= set(response.headers["content-type"].split("; ")), match


# --- the document's request schema accepts exactly what the server accepts ----------

VALIDATOR = jsonschema_rs.Draft202012Validator(
    {"$ref": "#/components/schemas/ReadingsBatch", "components": DOCUMENT["components"]}
)
# The server compares with its own clock; keep generated instants clear of that moving
# bound so that the two clocks cannot disagree.
CLOCK_MARGIN = timedelta(minutes=5)


def contract_accepts(body: Any, now: datetime) -> bool:
    """What the document says: the JSON Schema, then the vendor-extension bounds."""
    if not VALIDATOR.is_valid(body):
        return False
    return all(within_bounds(r["recorded_at"], RECORDED_AT, now) for r in body["readings"])


def server_accepts(body: Any) -> bool:
    """What the ingest route does with these bytes (``read_batch``)."""
    try:
        ReadingsBatch.model_validate_json(json.dumps(body))
    except ValidationError:
        return False
    return True


def _digits(width: int) -> st.SearchStrategy[str]:
    return st.text("0123456789", min_size=width, max_size=width)


_NOW = datetime.now(UTC)


def _naive_utc(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)


# Mostly instants well inside the bounds; else anywhere in the calendar, or near an edge.
_PLAUSIBLE = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=_naive_utc(_NOW - timedelta(days=2))
)
_INSTANTS = {
    "instant": st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)
    ),
    "near 1970": st.datetimes(min_value=datetime(1969, 12, 29), max_value=datetime(1970, 1, 3)),
    "near the clock": st.datetimes(
        min_value=_naive_utc(_NOW + MAX_CLOCK_SKEW - timedelta(hours=3)),
        max_value=_naive_utc(_NOW + MAX_CLOCK_SKEW + timedelta(hours=3)),
    ),
    "future": st.datetimes(
        min_value=_naive_utc(_NOW - timedelta(days=1)),
        max_value=_naive_utc(_NOW + timedelta(days=3)),
    ),
}
_GOOD_OFFSET = st.one_of(
    st.sampled_from(["Z", "z", "+00:00", "-00:00", "+23:59", "-23:59"]),
    st.builds(
        "{}{:02d}:{:02d}".format, st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
    ),
)
_BAD_OFFSET = st.one_of(
    st.sampled_from(
        ["+24:00", "-24:00", "+23:60", "", "+0530", "+5:30", "UTC", "+05:30:00", "Z\n"]
    ),
    st.builds("{}{}:{}".format, st.sampled_from("+-"), _digits(2), _digits(2)),
)
_GOOD_FRACTION = st.just("") | st.integers(1, 9).flatmap(_digits).map(".".__add__)
_TIMESTAMP_FLAWS = [
    *["none"] * 3,
    *_INSTANTS,
    *["time", "separator", "fraction", "offset", "digits", "decorated", "29 February"],
]


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 date-times, mostly acceptable, else with one part just outside."""
    flaw = draw(st.sampled_from(_TIMESTAMP_FLAWS))
    at = draw(_INSTANTS.get(flaw, _PLAUSIBLE))
    time = f"{at.hour:02d}:{at.minute:02d}:{at.second:02d}"
    if flaw == "time":
        time = draw(st.sampled_from(["23:59:60", "24:00:00", "23:60:00", "7:00:00", "07:00"]))
    separator = draw(st.sampled_from("_x" if flaw == "separator" else "Tt "))
    fraction = draw(st.sampled_from([".", ".1234567890"]) if flaw == "fraction" else _GOOD_FRACTION)
    offset = draw(_BAD_OFFSET if flaw == "offset" else _GOOD_OFFSET)
    text = f"{at.year:04d}-{at.month:02d}-{at.day:02d}{separator}{time}{fraction}{offset}"
    if flaw == "digits":  # free-form: month 13, 31 April, hour 24, year 0000, non-ASCII digits
        text = draw(st.from_regex(r"\A\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d{1,3})?Z\Z"))
    elif flaw == "decorated":
        text = draw(st.sampled_from([text + "\n", " " + text, text.replace("-", "\u2011", 1)]))
    elif flaw == "29 February":
        text = f"{draw(_digits(4))}-02-29T12:00:00Z"
    return text


def _good_number(low: float, high: float, *, exclude_low: bool = False) -> Any:
    edges = [high, int(high)] if exclude_low else [low, high, int(low), int(high)]
    return st.one_of(
        st.floats(min_value=low, max_value=high, exclude_min=exclude_low),
        st.integers(min_value=math.ceil(low) + exclude_low, max_value=math.floor(high)),
        st.sampled_from(edges),
    )


def _bad_number(low: float, high: float) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([math.nextafter(low, -math.inf), math.nextafter(high, math.inf)]),
        st.sampled_from([True, False, "60", None, [], {}, 10**20]),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
    )


_RR_LIMIT = 20000
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "recorded_at": timestamps(),
    "rr_intervals_ms": st.one_of(
        st.lists(_good_number(250, 2500), min_size=2, max_size=5),
        st.just([250] * _RR_LIMIT),
    ),
    "hrv_rmssd_ms": _good_number(0, 500, exclude_low=True) | st.just(5e-324),
    "resting_hr_bpm": _good_number(20, 250),
    "sleep_hours": _good_number(0, 24) | st.just(-0.0),
}
BAD: dict[str, st.SearchStrategy[Any]] = {
    "recorded_at": st.sampled_from([None, 0, 1764572400, "", "2026-11-20", []]),
    "rr_intervals_ms": st.one_of(
        st.lists(_good_number(250, 2500), max_size=1),
        st.just([250] * (_RR_LIMIT + 1)),
        st.lists(_bad_number(250, 2500), min_size=2, max_size=3),
        _bad_number(250, 2500),
    ),
    "hrv_rmssd_ms": _bad_number(0, 500) | st.sampled_from([0, -0.0]),
    "resting_hr_bpm": _bad_number(20, 250),
    "sleep_hours": _bad_number(0, 24),
}


@st.composite
def readings(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking reading, left alone half of the time, else spoilt in one way."""
    measured = draw(st.sets(st.sampled_from(MEASUREMENTS), min_size=1))
    reading = {name: draw(GOOD[name]) for name in ("recorded_at", *sorted(measured))}
    spoil = draw(st.sampled_from(["none", "none", "none", "bad value", "null", "drop", "extra"]))
    name = draw(st.sampled_from(sorted(reading)))
    if spoil == "bad value":
        reading[name] = draw(BAD[name])
    elif spoil == "null":
        reading[name] = None
    elif spoil == "drop":
        del reading[name]
    elif spoil == "extra":
        reading[draw(st.sampled_from(["note", "RECORDED_AT", ""]))] = draw(st.none() | st.just(1))
    return reading


_SMALL_READING = {"recorded_at": "2026-03-01T07:00:00+01:00", "sleep_hours": 7}
BATCHES = st.one_of(
    st.fixed_dictionaries({"readings": st.lists(readings(), min_size=1, max_size=3)}),
    st.fixed_dictionaries(
        {"readings": st.lists(readings(), max_size=1)}, optional={"x": st.none()}
    ),
    st.builds(lambda n: {"readings": [_SMALL_READING] * n}, st.sampled_from([1000, 1001])),
)


def _near_the_clock_bound(body: dict[str, Any], now: datetime) -> bool:
    for reading in body["readings"]:
        at = reading.get("recorded_at")
        if not isinstance(at, str):
            continue
        try:
            if abs(instant(at) - (now + MAX_CLOCK_SKEW)) < CLOCK_MARGIN:
                return True
        except (ValueError, OverflowError):
            continue
    return False


def test_request_schema_accepts_exactly_what_the_server_accepts() -> None:
    outcomes: Counter[bool] = Counter()

    @settings(
        max_examples=EQUIVALENCE_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(body=BATCHES)
    def agree(body: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        assume(not _near_the_clock_bound(body, now))
        accepted = server_accepts(body)
        assert contract_accepts(body, now) == accepted, body
        outcomes[accepted] += 1

    agree()
    # Not vacuous: both sides of the line were reached, many times.
    assert min(outcomes[True], outcomes[False]) >= EQUIVALENCE_EXAMPLES // 10, outcomes


# --- the live agent against its own document ---------------------------------------


def _counter(metrics: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` carrying ``labels`` (among others)."""
    total = 0.0
    for line in metrics.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


@pytest.mark.slow
def test_live_agent_keeps_its_openapi_contract(
    live_agent: Callable[..., LiveAgent], tmp_path: Path
) -> None:
    agent = live_agent()
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    report = tmp_path / "report.json"
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{agent.url}/openapi.json",
        "--checks",
        "all",
        "--phases",
        ",".join(PHASES),
        "--mode",
        "all",
        "--seed",
        str(SEED),
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), TOKEN_VARIABLE: agent.token}
    # cwd: schemathesis writes its reports and scratch files there, not into the repository.
    result = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = f"{result.stdout}\n{result.stderr}"
    log_tail = "\n".join(agent.log().splitlines()[-40:])
    assert result.returncode == 0, f"{output}\n--- agent log (tail) ---\n{log_tail}"

    # Not vacuous: every phase ran, and each operation had generated data accepted.
    summary = json.loads(report.read_text())
    assert {name: summary["phases"][name]["status"] for name in PHASES} == dict.fromkeys(
        PHASES, "success"
    ), output
    assert summary["test_cases"]["generated"] >= 300, output
    for path, methods in DOCUMENT["paths"].items():
        for method in methods:
            label = f"{method.upper()} {path}"
            rates = summary["valid_rates"].get(label, {})
            assert sum(rate["accepted"] for rate in rates.values()) > 0, (label, output)
    # ... and generated junk reached the ingest route and was refused.
    metrics = httpx.get(f"{agent.url}/metrics", timeout=5).text
    for status in ("201", "415", "422"):
        assert _counter(metrics, "neuros_http_requests_total", route=INGEST[0], status=status)
    # ... and the ignored_auth probes (no token, a wrong one) reached the agent and were
    # refused, while everything else was authenticated.
    for reason in (AuthFailure.MISSING, AuthFailure.UNKNOWN):
        assert _counter(metrics, "neuros_auth_failures_total", reason=reason.value), reason
    for reason in (AuthFailure.SCOPE, AuthFailure.USER):
        assert not _counter(metrics, "neuros_auth_failures_total", reason=reason.value), reason


def _edges(schema: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """Numbers just inside and just outside a numeric schema's bounds."""
    inside: list[Any] = []
    outside: list[Any] = []
    if "minimum" in schema:
        inside.append(schema["minimum"])
        outside.append(math.nextafter(schema["minimum"], -math.inf))
    if "exclusiveMinimum" in schema:
        inside.append(math.nextafter(schema["exclusiveMinimum"], math.inf))
        outside.append(schema["exclusiveMinimum"])
    if "maximum" in schema:
        inside.append(schema["maximum"])
        outside.append(math.nextafter(schema["maximum"], math.inf))
    return inside, outside


@pytest.mark.slow
def test_live_agent_enforces_exactly_the_published_bounds(
    live_agent: Callable[..., LiveAgent],
) -> None:
    """Every bound the live document publishes, probed on both sides against the agent."""
    agent = live_agent()
    published = httpx.get(f"{agent.url}/openapi.json", timeout=5).json()
    schemas = published["components"]["schemas"]
    reading = schemas["Reading"]
    at_spec = reading["properties"]["recorded_at"]
    earliest = instant(at_spec[EARLIEST])
    skew = duration(at_spec[MAX_FUTURE])
    base = {"recorded_at": "2026-03-01T07:00:00+01:00"}
    users = iter(range(10**6))

    def status(body: Any) -> int:
        url = f"{agent.url}/v1/users/edge-{next(users)}/readings"
        return httpx.post(url, json=body, headers=agent.headers, timeout=30).status_code

    def reading_status(**fields: Any) -> int:
        return status({"readings": [{**base, **fields}]})

    expected: dict[str, tuple[list[Any], list[Any]]] = {}
    for name in MEASUREMENTS:
        (value,) = [v for v in reading["properties"][name]["anyOf"] if v != {"type": "null"}]
        if value["type"] == "array":
            low, high = value["minItems"], value["maxItems"]
            items_in, items_out = _edges(value["items"])
            expected[name] = (
                [[items_in[0]] * low, [items_in[-1]] * high, items_in * (low // 2 + 1)],
                [[items_in[0]] * (low - 1), [items_in[0]] * (high + 1)]
                + [[v] * low for v in items_out],
            )
        else:
            expected[name] = _edges(value)
    for name, (inside, outside) in expected.items():
        for value in inside:
            assert reading_status(**{name: value}) == 201, (name, str(value)[:80])
        for value in outside:
            assert reading_status(**{name: value}) == 422, (name, str(value)[:80])

    # The time bounds, on the instant whatever the offset; clear of the moving one by a minute.
    def text(at: datetime, offset: str = "+00:00") -> str:
        local = at.astimezone(datetime.fromisoformat(f"2000-01-01T00:00:00{offset}").tzinfo)
        return local.isoformat(timespec="microseconds")

    tick = timedelta(microseconds=1)
    now = datetime.now(UTC)
    for at, offset, code in [
        (earliest, "+00:00", 201),
        (earliest, "+01:00", 201),
        (earliest, "-01:00", 201),
        (earliest - tick, "+00:00", 422),
        (earliest - tick, "+01:00", 422),
        (now + skew - timedelta(minutes=1), "-23:59", 201),
        (now + skew + timedelta(minutes=1), "+23:59", 422),
    ]:
        assert reading_status(sleep_hours=7, recorded_at=text(at, offset)) == code, (at, offset)

    # The batch size.
    items = schemas["ReadingsBatch"]["properties"]["readings"]
    one = {**base, "sleep_hours": 7}
    assert status({"readings": [one] * items["maxItems"]}) == 201
    assert status({"readings": [one] * (items["maxItems"] + 1)}) == 422
    assert status({"readings": [one] * (items["minItems"] - 1)}) == 422
