"""k6/perf-gate.sh over k6 summaries: pass on a match, fail on each doctored metric."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stacktools import paths, perf_gate
from stacktools.generate import k6_thresholds
from stacktools.paths import REPO_ROOT
from tests.support.tooling import tool

GATE = REPO_ROOT / paths.K6_DIR / "perf-gate.sh"
EXPECTED = "http_req_duration{expected_response:true}"
# The env of the measured run and of the gated one, as run-load-tests.sh records it.
RUN_ENV = {"BASE_URL": "http://127.0.0.1:8000", "HOLD_DURATION": "30s", "K6_RATE": "200"}
# Requests setup() sends per second of the run; the gate must not count them.
SETUP_RATE = 30.0
TOLERANCES: dict[str, dict[str, float]] = {
    perf_gate.P95: {"max_increase_pct": 20},
    perf_gate.P99: {"max_increase_pct": 30},
    perf_gate.RATE: {"max_decrease_pct": 10},
    perf_gate.FAILED: {"max_increase_abs": 0.001},
}


def k6_summary(p95: float, p99: float, rate: float, failed: float) -> dict[str, Any]:
    """The parts of a k6 1.1 --summary-export the gate reads, in its layout."""
    trend = {"avg": p95 / 2, "min": 0.5, "med": p95 / 2, "max": p99 * 1.1, "p(90)": p95 * 0.9}
    duration = {**trend, "p(95)": p95, "p(99)": p99}
    return {
        "root_group": {"name": "", "path": "", "groups": {}, "checks": {}},
        "metrics": {
            "http_req_duration": duration,
            EXPECTED: {**duration, "thresholds": {"p(95)<500": False}},
            "iterations": {"count": rate * 20, "rate": rate},
            "http_reqs": {"count": (rate + SETUP_RATE) * 20, "rate": rate + SETUP_RATE},
            "http_req_failed": {"passes": 0, "fails": rate * 20, "value": failed},
            "checks": {"passes": 40, "fails": 0, "value": 1},
        },
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def write_run(path: Path, summary: dict[str, Any], env: dict[str, str] | None = None) -> Path:
    """A summary and the env sidecar the runner writes next to it."""
    write(perf_gate.env_path(path), RUN_ENV if env is None else env)
    return write(path, summary)


def run_gate(*args: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GATE), *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.fixture
def summary() -> dict[str, Any]:
    return k6_summary(p95=12.5, p99=31.0, rate=48.7, failed=0.0)


@pytest.fixture
def baseline(tmp_path: Path, summary: dict[str, Any]) -> Path:
    """A baseline refreshed from ``summary`` the way the runner refreshes one."""
    path = write(tmp_path / "smoke.json", {"_comment": "test", "tolerances": TOLERANCES})
    source = write_run(tmp_path / "measured.json", summary)
    assert perf_gate.main(["baseline", str(source), str(path), "--k6-version", "k6 v1.1.0"]) == 0
    return path


def verdicts(stdout: str) -> dict[str, list[str]]:
    rows = [line.split("|") for line in stdout.splitlines() if "|" in line]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}


def test_refresh_copies_numbers_and_keeps_tolerances(baseline: Path) -> None:
    document = json.loads(baseline.read_text())
    assert document["tolerances"] == TOLERANCES
    assert document["_comment"] == "test"
    assert document[perf_gate.P95] == 12.5
    assert document[perf_gate.P99] == 31.0
    assert document[perf_gate.RATE] == 48.7  # iterations/s, not http_reqs (setup incl.)
    assert document[perf_gate.FAILED] == 0.0
    assert document["measured"]["k6"] == "k6 v1.1.0"
    assert document["measured"]["env"] == RUN_ENV  # the run's, from its sidecar


def test_matching_summary_passes_with_real_numbers(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    result = run_gate(write_run(tmp_path / "current.json", summary), baseline)
    assert result.returncode == 0, result.stdout + result.stderr
    table = verdicts(result.stdout)
    assert table[perf_gate.P95][:2] == ["12.50", "12.50"]
    assert table[perf_gate.P99][:2] == ["31.00", "31.00"]
    assert table[perf_gate.RATE][:2] == ["48.70", "48.70"]
    assert all(row[-1] == "ok" for row in table.values())
    assert "PASS" in result.stdout


@pytest.mark.parametrize(
    ("metric", "path", "factor", "change"),
    [
        (perf_gate.P95, (EXPECTED, "p(95)"), 1.5, "+50.0%"),
        (perf_gate.P99, (EXPECTED, "p(99)"), 1.4, "+40.0%"),
        (perf_gate.RATE, ("iterations", "rate"), 0.8, "-20.0%"),
    ],
)
def test_doctored_metric_fails_and_is_named(
    tmp_path: Path,
    summary: dict[str, Any],
    baseline: Path,
    metric: str,
    path: tuple[str, str],
    factor: float,
    change: str,
) -> None:
    doctored = copy.deepcopy(summary)
    doctored["metrics"][path[0]][path[1]] *= factor
    result = run_gate(write_run(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 1, result.stdout
    table = verdicts(result.stdout)
    assert table[metric][2:] == [change, table[metric][3], "REGRESSION"]
    assert [m for m, row in table.items() if row[-1] == "REGRESSION"] == [metric]
    assert f"regression in {metric}" in result.stdout.splitlines()[-1]


def test_error_rate_up_fails(tmp_path: Path, summary: dict[str, Any], baseline: Path) -> None:
    doctored = copy.deepcopy(summary)
    doctored["metrics"]["http_req_failed"]["value"] = 0.02
    result = run_gate(write_run(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 1, result.stdout
    assert verdicts(result.stdout)[perf_gate.FAILED][1:] == [
        "0.02",
        "+0.02 abs",
        "≤ 0.001",
        "REGRESSION",
    ]
    assert f"regression in {perf_gate.FAILED}" in result.stdout


def test_within_tolerance_passes(tmp_path: Path, summary: dict[str, Any], baseline: Path) -> None:
    """Latency 15% up (20% allowed) and throughput 5% down (10% allowed) pass, and the
    table shows the gate compared those very numbers: throughput is read from
    iterations.rate, the one the gate uses (http_reqs includes setup())."""
    doctored = copy.deepcopy(summary)
    doctored["metrics"][EXPECTED]["p(95)"] *= 1.15
    doctored["metrics"][perf_gate.THROUGHPUT_SOURCE]["rate"] *= 0.95
    result = run_gate(write_run(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 0, result.stdout
    table = verdicts(result.stdout)
    assert table[perf_gate.P95][1:3] == [f"{12.5 * 1.15:.2f}", "+15.0%"]
    assert table[perf_gate.RATE][1:3] == [f"{48.7 * 0.95:.2f}", "-5.0%"]
    assert all(row[-1] == "ok" for row in table.values()), result.stdout


def test_absolute_allowance_widens_a_relative_one(tmp_path: Path, summary: dict[str, Any]) -> None:
    lenient = {**TOLERANCES, perf_gate.P95: {"max_increase_pct": 20, "max_increase_abs": 10}}
    path = write(tmp_path / "b.json", {"tolerances": lenient})
    source = write_run(tmp_path / "s.json", summary)
    assert perf_gate.main(["baseline", str(source), str(path)]) == 0
    doctored = copy.deepcopy(summary)
    doctored["metrics"][EXPECTED]["p(95)"] += 9.9
    assert run_gate(write_run(tmp_path / "c.json", doctored), path).returncode == 0
    doctored["metrics"][EXPECTED]["p(95)"] += 0.2
    assert run_gate(write_run(tmp_path / "c.json", doctored), path).returncode == 1


def test_falls_back_to_all_requests_without_the_submetric(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    doctored = copy.deepcopy(summary)
    del doctored["metrics"][EXPECTED]
    doctored["metrics"]["http_req_duration"]["p(95)"] *= 2
    result = run_gate(write_run(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 1
    assert verdicts(result.stdout)[perf_gate.P95][-1] == "REGRESSION"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda s, b: s["metrics"].pop("iterations"), "metrics.iterations.rate"),
        (lambda s, b: s["metrics"]["http_req_failed"].pop("value"), "http_req_failed.value"),
        (lambda s, b: [m.pop("p(99)") for m in s["metrics"].values() if "p(99)" in m], "p(99)"),
        (lambda s, b: s.pop("metrics"), "no 'metrics'"),
        (lambda s, b: b.pop(perf_gate.P95), perf_gate.P95),
        (lambda s, b: b["tolerances"].pop(perf_gate.RATE), f"tolerances.{perf_gate.RATE}"),
        (lambda s, b: b["tolerances"].update({perf_gate.RATE: {"max_increase_pct": 5}}), "not"),
        (lambda s, b: b.update({perf_gate.P99: "fast"}), "finite number"),
    ],
)
def test_input_errors_exit_2(
    tmp_path: Path,
    summary: dict[str, Any],
    baseline: Path,
    breakage: Any,
    message: str,
) -> None:
    document = json.loads(baseline.read_text())
    breakage(summary, document)
    result = run_gate(write_run(tmp_path / "current.json", summary), write(baseline, document))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr


def test_setup_requests_do_not_count_as_throughput(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    doctored = copy.deepcopy(summary)
    doctored["metrics"]["http_reqs"]["rate"] *= 0.1  # setup() alone got slower or faster
    result = run_gate(write_run(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 0, result.stdout
    assert verdicts(result.stdout)[perf_gate.RATE][:2] == ["48.70", "48.70"]


@pytest.mark.parametrize(
    ("env", "difference"),
    [
        ({**RUN_ENV, "K6_RATE": "400"}, "K6_RATE: baseline 200, run 400"),
        (
            {k: v for k, v in RUN_ENV.items() if k != "K6_RATE"},
            "K6_RATE: baseline 200, run (unset)",
        ),
        ({**RUN_ENV, "K6_MAX_VUS": "9"}, "K6_MAX_VUS: baseline (unset), run 9"),
        ({**RUN_ENV, "HOLD_DURATION": "4h"}, "HOLD_DURATION: baseline 30s, run 4h"),
    ],
)
def test_run_with_another_env_is_not_comparable(
    tmp_path: Path, summary: dict[str, Any], baseline: Path, env: dict[str, str], difference: str
) -> None:
    result = run_gate(write_run(tmp_path / "current.json", summary, env), baseline)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "not comparable" in result.stderr
    assert difference in result.stderr
    assert "metric" not in result.stdout  # no table: the numbers mean nothing


def test_another_target_is_comparable(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    env = {**RUN_ENV, "BASE_URL": "http://neuros:8000"}
    result = run_gate(write_run(tmp_path / "current.json", summary, env), baseline)
    assert result.returncode == 0, result.stdout + result.stderr


def test_env_pairs_replace_a_missing_sidecar(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    current = write(tmp_path / "current.json", summary)
    missing = run_gate(current, baseline)
    assert missing.returncode == 2
    assert "current.env.json: missing" in missing.stderr
    pairs = [arg for name, value in RUN_ENV.items() for arg in ("--env", f"{name}={value}")]
    assert run_gate(current, baseline, *pairs).returncode == 0
    wrong = run_gate(current, baseline, *pairs, "--env", "K6_RATE=400")
    assert wrong.returncode == 2
    assert "K6_RATE: baseline 200, run 400" in wrong.stderr
    assert run_gate(current, baseline, "--env", "K6_RATE").returncode == 2


def test_baseline_without_measured_env_exits_2(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    document = json.loads(baseline.read_text())
    del document["measured"]
    result = run_gate(write_run(tmp_path / "current.json", summary), write(baseline, document))
    assert result.returncode == 2
    assert "no measured.env" in result.stderr


def test_unreadable_files_and_usage_exit_2(tmp_path: Path, baseline: Path) -> None:
    missing = run_gate(tmp_path / "missing.json", baseline)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert "not JSON" in run_gate(garbage, baseline).stderr
    usage = run_gate(baseline)
    assert usage.returncode == 2
    assert "Usage:" in usage.stderr
    assert run_gate("--help").returncode == 0


def test_every_scenario_has_a_measured_baseline() -> None:
    scripts = (REPO_ROOT / paths.K6_SCENARIOS_DIR).glob("*.js")
    scenarios = sorted(p.stem for p in scripts if p.stem != k6_thresholds.DEMO)
    baselines = sorted(p.stem for p in (REPO_ROOT / paths.K6_BASELINES_DIR).glob("*.json"))
    assert scenarios == baselines
    for name in baselines:
        document = json.loads((REPO_ROOT / paths.K6_BASELINES_DIR / f"{name}.json").read_text())
        unmeasured = [key for key in perf_gate.HIGHER_IS_BETTER if document.get(key) is None]
        assert not unmeasured, f"{name}: {unmeasured} not measured"
        assert document["measured"]["env"], name  # how it was measured is recorded


def peak_arrival_rate(k6: str, script: Path, env: dict[str, str]) -> float:
    flags = [f"--env={name}={value}" for name, value in env.items()]
    result = subprocess.run(
        [k6, "inspect", "--execution-requirements", *flags, str(script)],
        capture_output=True,
        text=True,
        check=True,
    )
    (executor,) = json.loads(result.stdout)["scenarios"].values()
    return float(executor.get("rate") or max(s["target"] for s in executor["stages"]))


@pytest.mark.parametrize("name", k6_thresholds.SCENARIOS)
def test_baseline_throughput_excludes_setup(name: str) -> None:
    """The committed rate fits the arrival rate of the env it was measured with: the
    ~505 setup() requests (35.8/s for smoke's 5/s) would not."""
    beside = Path(sys.executable).parent / "k6"
    k6 = str(beside) if beside.is_file() else tool("k6")
    document = json.loads((REPO_ROOT / paths.K6_BASELINES_DIR / f"{name}.json").read_text())
    env = document["measured"]["env"]
    peak = peak_arrival_rate(k6, k6_thresholds.SCENARIOS_DIR / f"{name}.js", env)
    assert 0 < document[perf_gate.RATE] <= peak
