"""The public API: status codes, bodies, all-or-nothing batches, errors."""

from collections.abc import Callable

import pytest

from tests.support.agent import RR_EXAMPLE, InProcess, reading

USER = "user-42"
READINGS = f"/v1/users/{USER}/readings"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test of this module runs against both storage backends."""
    backend: str = request.param
    return backend


# On SQLite only: the test breaks the database file with a trigger;
# tests/agent/test_postgres.py breaks PostgreSQL by stopping its server instead.
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])


def test_ingest_answers_201_with_fresh_kpis(app: InProcess) -> None:
    one = reading(rr_intervals_ms=RR_EXAMPLE, sleep_hours=6.5)
    response = app.client.post(READINGS, json={"readings": [one]})
    assert response.status_code == 201
    body = response.json()
    assert body["accepted"] == 1
    # RR [800, 810, 790, 805, 795]: diffs 10,-20,15,-10 -> mean square 206.25 -> 14.3614
    assert body["kpis"]["hrv_rmssd_ms"] == pytest.approx(14.3614, abs=1e-4)
    assert body["kpis"]["sleep_debt_hours"] == pytest.approx(1.5)
    assert body["kpis"]["as_of"] == "2026-11-20T07:00:00Z"


def test_kpis_match_ingest_and_unknown_user_is_404(app: InProcess) -> None:
    created = app.client.post(READINGS, json={"readings": [reading(resting_hr_bpm=52)]})
    got = app.client.get(f"/v1/users/{USER}/kpis")
    assert got.status_code == 200
    assert got.json() == created.json()["kpis"]
    missing = app.client.get("/v1/users/nobody/kpis")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no readings for this user"}


def test_analyze_recommends_from_kpis(app: InProcess) -> None:
    # 14 days of 2 h sleep against an 8 h need: 84 h of debt -> prioritise sleep.
    days = [reading(f"2026-11-{d:02d}T07:00:00Z", sleep_hours=2) for d in range(7, 21)]
    assert app.client.post(READINGS, json={"readings": days}).status_code == 201
    response = app.client.post(f"/v1/users/{USER}/analyze")
    assert response.status_code == 200
    body = response.json()
    assert body["recommendation"] == "prioritise_sleep"
    assert body["reasons"]
    assert all(isinstance(r, str) for r in body["reasons"])
    assert body["kpis"]["sleep_debt_hours"] == pytest.approx(84.0)
    assert app.client.post("/v1/users/nobody/analyze").status_code == 404


def test_resending_a_reading_does_not_double_count(app: InProcess) -> None:
    same_instant = [
        reading("2026-11-20T07:00:00Z", sleep_hours=6),
        reading("2026-11-20T08:00:00+01:00", sleep_hours=6),  # the same instant
    ]
    for _ in range(3):
        assert app.client.post(READINGS, json={"readings": same_instant}).status_code == 201
    kpis = app.client.get(f"/v1/users/{USER}/kpis").json()
    assert kpis["sleep_debt_hours"] == pytest.approx(2.0)  # 8 - 6, counted once


def test_a_batch_with_one_bad_reading_changes_nothing(app: InProcess) -> None:
    good = reading("2026-11-19T07:00:00Z", sleep_hours=7)
    assert app.client.post(READINGS, json={"readings": [good]}).status_code == 201
    before = app.client.get(f"/v1/users/{USER}/kpis").json()
    batch = [reading("2026-11-20T07:00:00Z", sleep_hours=1), reading(sleep_hours=25)]
    response = app.client.post(READINGS, json={"readings": batch})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "readings", 1, "sleep_hours"]
    assert app.client.get(f"/v1/users/{USER}/kpis").json() == before
    assert app.sample("neuros_readings_rejected_total", {"reason": "validation"}) == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"readings": []}, "readings"),
        ({"readings": [reading()] * 1001}, "readings"),
        ({}, "readings"),
        ({"readings": [{"recorded_at": "2026-11-20T07:00:00Z"}]}, "readings"),
        ({"readings": [reading("2026-11-20T07:00:00")]}, "recorded_at"),
        ({"readings": [reading("20 Nov 2026")]}, "recorded_at"),
        ({"readings": [{"recorded_at": 1795000000, "sleep_hours": 1}]}, "recorded_at"),
        ({"readings": [reading(rr_intervals_ms=[800])]}, "rr_intervals_ms"),
        ({"readings": [reading(rr_intervals_ms=[800, 249])]}, "rr_intervals_ms"),
        ({"readings": [reading(rr_intervals_ms=[800, 2501])]}, "rr_intervals_ms"),
        ({"readings": [reading(rr_intervals_ms=[800] * 20001)]}, "rr_intervals_ms"),
        ({"readings": [reading(hrv_rmssd_ms=0)]}, "hrv_rmssd_ms"),
        ({"readings": [reading(hrv_rmssd_ms=500.1)]}, "hrv_rmssd_ms"),
        ({"readings": [reading(resting_hr_bpm=19)]}, "resting_hr_bpm"),
        ({"readings": [reading(resting_hr_bpm=251)]}, "resting_hr_bpm"),
        ({"readings": [reading(sleep_hours=-0.1)]}, "sleep_hours"),
        ({"readings": [reading(sleep_hours="lots")]}, "sleep_hours"),
        ({"readings": [reading(steps=1000)]}, "steps"),
    ],
)
def test_invalid_readings_get_422_naming_the_field(
    app: InProcess, payload: dict[str, object], field: str
) -> None:
    response = app.client.post(READINGS, json=payload)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(field in [str(part) for part in item["loc"]] for item in detail), detail
    assert all(set(item) == {"loc", "msg", "type"} for item in detail)
    assert app.client.get(f"/v1/users/{USER}/kpis").status_code == 404


@pytest.mark.parametrize("user", ["a" * 65, "bad.id", "white space", "é"])
def test_user_id_must_match_the_pattern(app: InProcess, user: str) -> None:
    response = app.client.post(f"/v1/users/{user}/readings", json={"readings": [reading()]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "user_id"]


def test_malformed_json_is_a_4xx_and_counted(app: InProcess) -> None:
    response = app.client.post(
        READINGS, content=b'{"readings": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert app.sample("neuros_readings_rejected_total", {"reason": "malformed"}) == 1


def test_oversized_body_gets_413_and_stores_nothing(
    make_app: Callable[..., InProcess],
) -> None:
    app = make_app(max_body_bytes=4096)
    big = {"readings": [reading(rr_intervals_ms=[800.5] * 1000)]}
    response = app.client.post(READINGS, json=big)
    assert response.status_code == 413
    assert "exceeds 4096 bytes" in response.json()["detail"]
    assert app.sample("neuros_readings_rejected_total", {"reason": "too_large"}) == 1

    def chunks() -> object:
        yield b'{"readings": ['
        for _ in range(100):
            yield b'{"recorded_at": "2026-11-20T07:00:00Z", "sleep_hours": 1},'
        yield b"]}"

    # Chunked, so no Content-Length to refuse up front: the stream is cut instead.
    streamed = app.client.post(
        READINGS, content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert app.client.get(f"/v1/users/{USER}/kpis").status_code == 404


def test_unexpected_error_gets_json_500_without_trace(
    app: InProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = app.client.app.state.agent  # type: ignore[attr-defined]

    def explode(*_: object) -> None:
        raise RuntimeError("secret internals /srv/neuros/agent.py line 42")

    monkeypatch.setattr(agent, "snapshot", explode)
    response = app.client.get(f"/v1/users/{USER}/kpis")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert "Traceback" not in response.text
    assert "secret" not in response.text


@sqlite_only
def test_storage_failure_gets_503_and_stores_nothing(app: InProcess) -> None:
    agent = app.client.app.state.agent  # type: ignore[attr-defined]
    conn = agent.backend.store._conn()
    conn.execute(
        "CREATE TRIGGER fail BEFORE INSERT ON user_state BEGIN SELECT RAISE(ABORT, 'x'); END"
    )
    response = app.client.post(READINGS, json={"readings": [reading()]})
    assert response.status_code == 503
    assert "nothing was stored" in response.json()["detail"]
    assert "Traceback" not in response.text
    assert app.sample("neuros_db_errors_total", {"operation": "ingest"}) == 1
    assert app.sample("neuros_readings_rejected_total", {"reason": "storage"}) == 1
    conn.execute("DROP TRIGGER fail")
    assert app.client.get(f"/v1/users/{USER}/kpis").status_code == 404


def test_health_ready_and_openapi(app: InProcess) -> None:
    assert app.client.get("/health").json() == {"status": "ok"}
    assert app.client.get("/ready").status_code == 200
    paths = app.client.get("/openapi.json").json()["paths"]
    assert {
        "/v1/users/{user_id}/readings",
        "/v1/users/{user_id}/kpis",
        "/v1/users/{user_id}/analyze",
        "/health",
        "/ready",
        "/metrics",
    } <= set(paths)
    ingest = paths["/v1/users/{user_id}/readings"]["post"]
    assert {"201", "413", "422", "503"} <= set(ingest["responses"])


@sqlite_only
def test_ready_is_503_when_the_database_is_not_writable(app: InProcess) -> None:
    agent = app.client.app.state.agent  # type: ignore[attr-defined]
    conn = agent.backend.store._conn()
    conn.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON ready_probe BEGIN SELECT RAISE(ABORT, 'ro'); END"
    )
    conn.execute(
        "CREATE TRIGGER refuse_new BEFORE INSERT ON ready_probe "
        "BEGIN SELECT RAISE(ABORT, 'ro'); END"
    )
    response = app.client.get("/ready")
    assert response.status_code == 503
    assert app.sample("neuros_db_errors_total", {"operation": "probe"}) == 1
