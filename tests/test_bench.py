"""The ingest-engine benchmark (scripts/bench-agent.sh, scripts/bench_agent.py): its
command line, its report maths on hand-made numbers, its floor app and its no-auth
agent; and the shape of the token-timing benchmark's output (scripts/bench_auth.py).
Nothing is timed here: no assertion depends on a measured time."""

from __future__ import annotations

import json
import math
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
from scripts import bench_agent as bench
from scripts import bench_auth, bench_floor, bench_noauth
from tests.conftest import InProcess, LiveAgent
from tests.tooling import REPO_ROOT

WRAPPER = REPO_ROOT / "scripts" / "bench-agent.sh"
PARTS = ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)")


def run_wrapper(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WRAPPER), *args], capture_output=True, text=True, timeout=60, check=False
    )


def _bench_dirs() -> set[str]:
    results = REPO_ROOT / "k6" / "results"
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
    assert "-m scripts.bench_floor --classic" in out
    assert "-m scripts.bench_noauth" in out
    assert "taskset -c 0" in out or "CPU pinning: none" in out
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
    assert bench.ratio(300.0, 400.0) == pytest.approx(0.75)
    assert bench.ratio(300.0, 0.0) is None
    assert bench.ratio(None, 400.0) is None
    assert bench.ratio(300.0, math.nan) is None


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
    assert bench.paired_ratio(runs[:1], "f-auth", "f-noauth", "rps") is None


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
    assert bench.seconds("1m30s") == 90
    assert bench.seconds("500ms") == 0.5
    with pytest.raises(ValueError, match="k6 duration"):
        bench.seconds("20")


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
    assert b.server_cmd("agent-noauth")[-2:] == ["-m", "scripts.bench_noauth"]
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
    noauth = live_agent(module="scripts.bench_noauth", db_path=agent.db_path.with_name("n.db"))
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


# --- the token-timing benchmark (scripts/bench_auth.py): its output, not its timings ----


def _bench_auth(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scripts.bench_auth", "--quick", "--sizes", "1,50", *args],
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
