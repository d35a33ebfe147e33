"""The k6 scenarios: they load, take their thresholds from the SLO spec, and pass smoke."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from neuros.auth.admin_token import TOKEN_VARIABLE
from stacktools.generate import k6_thresholds as kt
from stacktools.generate.slo import load_spec
from tests.support.processes import LiveAgent
from tests.support.tooling import tool

SLO_THRESHOLD_KEYS = ("http_req_failed", "http_req_duration{expected_response:true}", "checks")
ABORTING = {"stress", "breakpoint"}
# The brief's invalid payload kinds, which every run must exercise.
REQUIRED_INVALID_CASES = {"out_of_range", "malformed_json", "missing_field"}
_EXPR = re.compile(r"^(?P<agg>[a-z]+(?:\([0-9.]+\))?)(?P<op>[<>]=?|==)(?P<value>[0-9.]+)$")
# The brief: a smoke run, setup() included, takes under 30 seconds.
SMOKE_WALL_SECONDS = 30
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


@pytest.fixture(scope="module")
def k6() -> str:
    beside = Path(sys.executable).parent / "k6"
    return str(beside) if beside.is_file() else tool("k6")


def inspect(k6: str, script: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    flags = [f"--env={k}={v}" for k, v in (env or {}).items()]
    result = subprocess.run(
        [k6, "inspect", "--execution-requirements", *flags, str(script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    options: dict[str, Any] = json.loads(result.stdout)
    return options


def scenario(name: str) -> Path:
    return kt.SCENARIOS_DIR / f"{name}.js"


def seconds(duration: str) -> float:
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in _DURATION_PART.findall(duration))


def rules(thresholds: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [r if isinstance(r, dict) else {"threshold": r} for r in thresholds[key]]


def parsed(rule: dict[str, Any]) -> tuple[str, str, Any]:
    match = _EXPR.match(rule["threshold"].replace(" ", ""))
    assert match, rule
    return match["agg"], match["op"], float(match["value"])


def test_the_six_scenarios_exist() -> None:
    found = sorted(p.stem for p in kt.SCENARIOS_DIR.glob("*.js"))
    assert found == sorted([*kt.SCENARIOS, kt.DEMO])


@pytest.mark.parametrize("name", kt.SCENARIOS)
def test_scenario_loads_with_an_open_model(k6: str, name: str) -> None:
    options = inspect(k6, scenario(name))
    executors = {s["executor"] for s in options["scenarios"].values()}
    assert executors <= {"constant-arrival-rate", "ramping-arrival-rate"}
    stats = set(options["summaryTrendStats"])
    assert {"avg", "min", "med", "max", "p(90)", "p(95)", "p(99)"} <= stats


def test_slo_json_matches_the_spec_and_check_catches_an_edit(tmp_path: Path) -> None:
    """That the committed file is up to date: tests/tools/test_generators.py."""
    spec = load_spec()
    slo = json.loads(kt.SLO_JSON.read_text())
    latency = spec.slo("latency")
    assert latency.threshold_seconds is not None
    assert slo["availability_objective"] == spec.slo("availability").objective
    assert slo["max_error_rate"] == pytest.approx(1 - spec.slo("availability").objective)
    assert slo["latency_objective"] == latency.objective
    assert slo["latency_threshold_ms"] == pytest.approx(latency.threshold_seconds * 1000)

    doctored = tmp_path / "slo.json"
    doctored.write_text(kt.SLO_JSON.read_text().replace("300", "3000"))
    assert kt.main(["--check", "--out", str(doctored)]) == 1
    assert kt.main(["--out", str(doctored)]) == 0
    assert kt.main(["--check", "--out", str(doctored)]) == 0


@pytest.mark.parametrize("name", kt.SCENARIOS)
def test_thresholds_are_the_spec_numbers(k6: str, name: str) -> None:
    spec = load_spec()
    latency_ms = (spec.slo("latency").threshold_seconds or 0) * 1000
    thresholds = inspect(k6, scenario(name))["thresholds"]

    assert [parsed(r) for r in rules(thresholds, "http_req_failed")] == [
        ("rate", "<", pytest.approx(1 - spec.slo("availability").objective))
    ]
    # The SLO's percentile (latency objective 0.99: p(99)), and p95 at the same bound.
    slo_percentile = f"p({spec.slo('latency').objective * 100:g})"
    latency = sorted(parsed(r) for r in rules(thresholds, SLO_THRESHOLD_KEYS[1]))
    assert latency == sorted(
        [
            ("p(95)", "<", pytest.approx(latency_ms)),
            (slo_percentile, "<", pytest.approx(latency_ms)),
        ]
    )
    assert [parsed(r) for r in rules(thresholds, "checks")] == [
        ("rate", ">", pytest.approx(spec.slo("availability").objective))
    ]
    slo_rules = [r for key in SLO_THRESHOLD_KEYS for r in rules(thresholds, key)]
    aborts = {bool(r.get("abortOnFail")) for r in slo_rules}
    assert aborts == {name in ABORTING}
    if name in ABORTING:
        assert all(seconds(r["delayAbortEval"]) > 0 for r in slo_rules)


def test_durations_default_to_production_values(k6: str) -> None:
    """Planned durations only; smoke's real wall time (setup() included) is asserted by
    test_smoke_passes_against_the_real_agent."""
    totals = {n: seconds(inspect(k6, scenario(n))["totalDuration"]) for n in kt.SCENARIOS}
    assert all(totals[n] >= 4 * 60 for n in kt.SCENARIOS if n != "smoke"), totals
    assert totals["soak"] >= 3600


@pytest.mark.parametrize("name", kt.SCENARIOS)
def test_durations_and_rates_can_be_shortened(k6: str, name: str) -> None:
    env = {
        "HOLD_DURATION": "10s",
        "K6_RAMP_DURATION": "2s",
        "K6_RECOVERY_DURATION": "2s",
        "K6_RATE": "7",
        "K6_BASE_RATE": "1",
        "K6_MAX_VUS": "9",
    }
    options = inspect(k6, scenario(name), env)
    assert seconds(options["totalDuration"]) <= 60
    assert options["maxVUs"] == 9
    (executor,) = options["scenarios"].values()
    peak = executor.get("rate") or max(s["target"] for s in executor["stages"])
    assert peak == 7


def test_metric_checker_passes_on_the_repo() -> None:
    assert kt.check_metrics() == []
    assert kt.main(["--check-metrics"]) == 0


def _with_thresholds(tmp_path: Path, extra: str) -> Path:
    """A copy of the scripts in which smoke.js adds `extra` to the thresholds it built."""
    shutil.copytree(kt.LIB_DIR, tmp_path / "lib")
    shutil.copytree(kt.SCENARIOS_DIR, tmp_path / "scenarios")
    smoke = tmp_path / "scenarios" / "smoke.js"
    assert "export const options =" in smoke.read_text()
    with smoke.open("a") as script:
        script.write(f"Object.assign(options.thresholds, {{ {extra} }});\n")
    return tmp_path / "scenarios"


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("http_req_duraton: ['p(95)<1']", "no metric 'http_req_duraton'"),
        ("'http_req_failed{expected_respons:true}': ['rate<1']", "tag 'expected_respons'"),
        ("'http_req_duration{kind:reed}': ['p(95)<1']", "no sample has kind 'reed'"),
        ("'http_req_failed{scenario:smok}': ['rate<1']", "no sample has scenario 'smok'"),
        # Another script's scenario: valid in load.js, matches nothing in smoke.js.
        ("'http_req_failed{scenario:load}': ['rate<1']", "no sample has scenario 'load'"),
        ("'checks{check:typo}': ['rate>0']", "no sample has check 'typo'"),
        ("'checks{check:read: status 201}': ['rate>0']", "check 'read: status 201'"),
        ("'http_req_duration{method:PSOT}': ['p(95)<1']", "no sample has method 'PSOT'"),
        ("'http_req_duration{method:PUT}': ['p(95)<1']", "no sample has method 'PUT'"),
        ("'http_req_duration{status:2OO}': ['p(95)<1']", "status '2OO' is not a 3-digit"),
        ("'http_req_duration{expected_response:yes}': ['p(95)<1']", "expected_response 'yes'"),
        (
            "'http_req_duration{name:GET /v1/users/{userid}/kpis}': ['p(95)<1']",
            "no sample has name 'GET /v1/users/{userid}/kpis'",
        ),
        ("'http_req_duration{group:::setpu}': ['p(95)<1']", "no sample has group '::setpu'"),
    ],
)
def test_metric_checker_catches_a_misspelled_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, reason: str
) -> None:
    scenarios = _with_thresholds(tmp_path, extra)
    assert kt.main(["--check-metrics", "--scenarios", str(scenarios)]) == 1
    err = capsys.readouterr().err
    assert [line for line in err.splitlines() if "smoke.js" in line], err
    assert reason in err
    assert "load.js" not in err  # the other scenarios are untouched


def test_metric_checker_accepts_every_value_the_scripts_emit(tmp_path: Path) -> None:
    """No false alarms: real values of every validated tag, braces and colons included."""
    extra = ", ".join(
        f"'{key}': ['count>=0']"
        for key in (
            "http_reqs{scenario:smoke}",
            "http_reqs{name:POST /v1/users/{user_id}/readings}",
            "http_reqs{name:GET /v1/users/{user_id}/kpis, method:GET, status:404}",
            "http_reqs{method:POST,expected_response:false}",
            "http_reqs{kind:seed, group:::setup}",
            "checks{check:ingest: status 201}",
            "checks{check:invalid out_of_range: status 422}",
            'checks{ check: "read: KPIs present and numeric" }',
        )
    )
    scenarios = _with_thresholds(tmp_path, extra)
    assert kt.check_metrics(scenarios, scenarios.parent / "lib") == []


def test_vocabulary_is_read_from_the_scripts() -> None:
    vocab = kt.vocabulary()
    assert {"ingest", "read", "analyze", "invalid", "seed"} == vocab.kinds
    assert "POST /v1/users/{user_id}/analyze" in vocab.routes
    assert vocab.methods == {"GET", "POST"}
    assert any(p.fullmatch("analyze: advice present") for p in vocab.checks)
    assert any(p.fullmatch("invalid unknown_user: status 404") for p in vocab.checks)
    assert not any(p.fullmatch("analyze: advice") for p in vocab.checks)


def test_static_check_knows_metric_names_without_k6() -> None:
    vocab = kt.Vocabulary(
        metrics=kt.BUILTIN_METRICS | {"custom_trend"}, kinds=kt.vocabulary().kinds
    )
    ok = ["http_req_duration{expected_response:true}", "custom_trend", "checks{kind:invalid}"]
    assert kt.threshold_problems("s.js", ok, vocab) == []
    bad = kt.threshold_problems("s.js", ["http_req_duraton", "ws_ping"], vocab)
    assert [p.threshold for p in bad] == ["http_req_duraton", "ws_ping"]


PROBE = """
import {{ mulberry32, streamFor }} from '{lib}/prng.js';
import {{ SEED, userIds }} from '{lib}/population.js';
import {{ kindOf }} from '{lib}/traffic.js';
export const options = {{ iterations: 1 }};
export default function () {{}}
export function handleSummary() {{
  const n = Number(__ENV.N || 100);
  const r = mulberry32(1);
  return {{ stdout: JSON.stringify({{
    users: userIds(),
    raw: [r(), r(), r(), r()],
    kinds: Array.from({{ length: n }}, (_, i) => kindOf(streamFor(SEED, i)())),
  }}) }};
}}
"""


def probe(k6: str, tmp_path: Path, **env: str) -> dict[str, Any]:
    script = tmp_path / "probe.js"
    script.write_text(PROBE.format(lib=kt.LIB_DIR.as_posix()))
    flags = [f"--env={k}={v}" for k, v in env.items()]
    result = subprocess.run(
        [k6, "run", "--quiet", *flags, str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def mulberry32(seed: int) -> Callable[[], float]:
    """Reference implementation, independent of the JS one."""
    state = seed & 0xFFFFFFFF

    def next_() -> float:
        nonlocal state
        state = (state + 0x6D2B79F5) & 0xFFFFFFFF
        t = state
        t = ((t ^ (t >> 15)) * (t | 1)) & 0xFFFFFFFF
        t = (t ^ (t + (((t ^ (t >> 7)) * (t | 61)) & 0xFFFFFFFF))) & 0xFFFFFFFF
        return ((t ^ (t >> 14)) & 0xFFFFFFFF) / 4294967296

    return next_


def test_population_and_traffic_are_deterministic(k6: str, tmp_path: Path) -> None:
    first = probe(k6, tmp_path, K6_USERS="37")
    assert first == probe(k6, tmp_path, K6_USERS="37")
    users = first["users"]
    assert len(users) == len(set(users)) == 37
    assert users[0] == "k6-user-0001"
    assert users[-1] == "k6-user-0037"
    reference = mulberry32(1)
    assert first["raw"] == [reference() for _ in range(4)]
    assert set(first["kinds"]) == {"ingest", "read", "analyze", "invalid"}
    assert probe(k6, tmp_path, K6_SEED="7")["kinds"] != first["kinds"]


def samples(metric: dict[str, Any]) -> float:
    if "count" in metric:
        return float(metric["count"])
    if "passes" in metric:
        return float(metric["passes"] + metric["fails"])
    return float(metric["max"])  # a trend without samples reads 0 everywhere


def all_checks(group: dict[str, Any]) -> dict[str, Any]:
    """Checks of a summary-export group and its sub-groups (setup() is one), by path."""
    found = {c["path"]: c for c in group["checks"].values()}
    for sub in group.get("groups", {}).values():
        found |= all_checks(sub)
    return found


@pytest.mark.slow
def test_smoke_passes_against_the_real_agent(
    k6: str, tmp_path: Path, live_agent: Callable[..., LiveAgent]
) -> None:
    agent = live_agent()
    summary_path = tmp_path / "smoke.json"
    started = time.monotonic()
    result = subprocess.run(
        [k6, "run", "--quiet", "--summary-export", str(summary_path), str(scenario("smoke"))],
        # The token in k6's environment, as k6/run-load-tests.sh passes it.
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("K6_")},
            "BASE_URL": agent.url,
            TOKEN_VARIABLE: agent.token,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    wall_seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr + agent.log()
    # The whole run as a user waits for it: k6 start-up, setup() seeding, the load.
    assert wall_seconds < SMOKE_WALL_SECONDS
    summary = json.loads(summary_path.read_text())
    metrics = summary["metrics"]

    checks = all_checks(summary["root_group"])
    assert metrics["checks"]["passes"] > 0
    assert metrics["checks"]["fails"] == 0, {n: c for n, c in checks.items() if c["fails"]}
    assert metrics["http_req_failed"]["passes"] == 0
    # Every thresholded sub-metric saw samples: none passed for lack of data.
    for key, metric in metrics.items():
        if "{" in key and "thresholds" in metric:
            assert samples(metric) > 0, key

    setup_checks = summary["root_group"]["groups"]["setup"]["checks"]
    probed = {
        m["case"] for n in setup_checks if (m := re.match(r"invalid (?P<case>\w+): status", n))
    }
    assert probed >= REQUIRED_INVALID_CASES
    # The mix is the deterministic stream: replay it for as many iterations as ran.
    expected = Counter(probe(k6, tmp_path, N=str(metrics["iterations"]["count"]))["kinds"])
    expected["invalid"] += len(probed)
    sent = {k: metrics[f"http_reqs{{kind:{k}}}"]["count"] for k in expected}
    assert sent == dict(expected)
    assert sent["invalid"] > 0
    assert agent.token not in result.stdout + result.stderr + summary_path.read_text()


@pytest.mark.slow
def test_smoke_without_a_token_stops_in_setup_and_says_why(
    k6: str, live_agent: Callable[..., LiveAgent]
) -> None:
    agent = live_agent()
    result = subprocess.run(
        [k6, "run", "--quiet", str(scenario("smoke"))],
        env={
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("K6_") and k != TOKEN_VARIABLE
            },
            "BASE_URL": agent.url,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"{TOKEN_VARIABLE} is not set" in result.stdout + result.stderr
    assert "/v1/" not in agent.log(), "no API request was sent"
