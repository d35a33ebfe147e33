"""k6/perf-gate.sh over k6 summaries: pass on a match, fail on each doctored metric."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from scripts import perf_gate
from tests.tooling import REPO_ROOT

GATE = REPO_ROOT / "k6" / "perf-gate.sh"
EXPECTED = "http_req_duration{expected_response:true}"
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
            "http_reqs": {"count": rate * 20, "rate": rate},
            "http_req_failed": {"passes": 0, "fails": rate * 20, "value": failed},
            "checks": {"passes": 40, "fails": 0, "value": 1},
        },
    }


def write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


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
    source = write(tmp_path / "measured.json", summary)
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
    assert document[perf_gate.RATE] == 48.7
    assert document[perf_gate.FAILED] == 0.0
    assert document["measured"]["k6"] == "k6 v1.1.0"


def test_matching_summary_passes_with_real_numbers(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    result = run_gate(write(tmp_path / "current.json", summary), baseline)
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
        (perf_gate.RATE, ("http_reqs", "rate"), 0.8, "-20.0%"),
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
    result = run_gate(write(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 1, result.stdout
    table = verdicts(result.stdout)
    assert table[metric][2:] == [change, table[metric][3], "REGRESSION"]
    assert [m for m, row in table.items() if row[-1] == "REGRESSION"] == [metric]
    assert f"regression in {metric}" in result.stdout.splitlines()[-1]


def test_error_rate_up_fails(tmp_path: Path, summary: dict[str, Any], baseline: Path) -> None:
    doctored = copy.deepcopy(summary)
    doctored["metrics"]["http_req_failed"]["value"] = 0.02
    result = run_gate(write(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 1, result.stdout
    assert verdicts(result.stdout)[perf_gate.FAILED][1:] == [
        "0.02",
        "+0.02 abs",
        "≤ 0.001",
        "REGRESSION",
    ]
    assert f"regression in {perf_gate.FAILED}" in result.stdout


def test_within_tolerance_passes(tmp_path: Path, summary: dict[str, Any], baseline: Path) -> None:
    doctored = copy.deepcopy(summary)
    doctored["metrics"][EXPECTED]["p(95)"] *= 1.15
    doctored["metrics"]["http_reqs"]["rate"] *= 0.95
    result = run_gate(write(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 0, result.stdout


def test_absolute_allowance_widens_a_relative_one(tmp_path: Path, summary: dict[str, Any]) -> None:
    lenient = {**TOLERANCES, perf_gate.P95: {"max_increase_pct": 20, "max_increase_abs": 10}}
    path = write(tmp_path / "b.json", {"tolerances": lenient})
    assert perf_gate.main(["baseline", str(write(tmp_path / "s.json", summary)), str(path)]) == 0
    doctored = copy.deepcopy(summary)
    doctored["metrics"][EXPECTED]["p(95)"] += 9.9
    assert run_gate(write(tmp_path / "c.json", doctored), path).returncode == 0
    doctored["metrics"][EXPECTED]["p(95)"] += 0.2
    assert run_gate(write(tmp_path / "c.json", doctored), path).returncode == 1


def test_falls_back_to_all_requests_without_the_submetric(
    tmp_path: Path, summary: dict[str, Any], baseline: Path
) -> None:
    doctored = copy.deepcopy(summary)
    del doctored["metrics"][EXPECTED]
    doctored["metrics"]["http_req_duration"]["p(95)"] *= 2
    result = run_gate(write(tmp_path / "current.json", doctored), baseline)
    assert result.returncode == 1
    assert verdicts(result.stdout)[perf_gate.P95][-1] == "REGRESSION"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda s, b: s["metrics"].pop("http_reqs"), "metrics.http_reqs.rate"),
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
    result = run_gate(write(tmp_path / "current.json", summary), write(baseline, document))
    assert result.returncode == 2, result.stdout
    assert message in result.stderr


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
    scenarios = sorted(p.stem for p in (REPO_ROOT / "k6" / "scenarios").glob("*.js"))
    baselines = sorted(p.stem for p in (REPO_ROOT / "k6" / "baselines").glob("*.json"))
    assert scenarios == baselines
    for name in baselines:
        document = json.loads((REPO_ROOT / "k6" / "baselines" / f"{name}.json").read_text())
        unmeasured = [key for key in perf_gate.HIGHER_IS_BETTER if document.get(key) is None]
        assert not unmeasured, f"{name}: {unmeasured} not measured"
        assert document["measured"]["env"], name  # how it was measured is recorded
