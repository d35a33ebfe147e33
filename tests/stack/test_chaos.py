"""The chaos suite: chaos/run-chaos-test.sh and its experiments.

Without Docker: the CLI contract (--help, --list, --yes outside CI), the tolerances, and
that every name an experiment uses (services, scrape jobs, alerts, recording rules,
configuration references) exists where it is defined; the probes against canned
Prometheus and Alertmanager answers.

With Docker, two stacks of the real docker-compose.yml, each under a project of its own:

- fast (neuros, prometheus): plus tests/stack/chaos/compose.override.yml, which mounts a
  Prometheus config generated here from prometheus/ (1 s scrapes, a short `for` on
  NeurosAgentDown) and gives the agent 2 s of start-up, so a scrape sees the crash:
  kill-agent runs for real and is detected by NeurosAgentDown, which fires and
  resolves; every experiment's dry run (which must change nothing), and the steady-state
  probes of those that need images this machine cannot get, run against it.
- production (neuros, prometheus, alertmanager): no override, the shipped 15 s scrapes
  and rules, and the agent as it starts in production (back within about 2 s of a
  SIGKILL, between two scrapes). Alertmanager's webhook URL files point at a small sink
  container on the project's network. There the Watchdog reaches its receiver only,
  prometheus-down runs for real and sees the Watchdog stop reaching Alertmanager, and
  kill-agent runs for real with its shipped bounds and is detected by
  NeurosAgentRestarted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import yaml

from chaos import actions, probes, runner
from chaos import docker as chaos_docker
from chaos.context import Context
from chaos.docker import (
    NUMBER_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    Container,
    Project,
    RefusedTarget,
)
from chaos.experiment import available, references, within
from chaos.runner import EXPERIMENTS_DIR_ENV
from neuros.auth.admin_token import ADMIN_TOKEN_FILE, TOKEN_VARIABLE
from neuros.config import METRICS_PORT
from neuros.schemas import Reading
from stacktools import paths
from stacktools.compose import service_as_written, services_as_written
from stacktools.paths import REPO_ROOT
from tests.support.dockerstack import (
    ALERTMANAGER_SECRETS_VARIABLE,
    POLL_SECONDS,
    ComposeStack,
    exposed_port,
    require_docker,
)
from tests.support.processes import LiveAgent, wait_until
from tests.support.prometheus_server import PrometheusServer, repo_config

RUNNER = REPO_ROOT / paths.CHAOS_RUNNER
OVERRIDE = REPO_ROOT / "tests" / "stack" / "chaos" / "compose.override.yml"
AGENT, PROMETHEUS, ALERTMANAGER = "neuros", "prometheus", "alertmanager"
AGENT_DOWN, AGENT_RESTARTED = "NeurosAgentDown", "NeurosAgentRestarted"
WATCHDOG, WATCHDOG_RECEIVER = "Watchdog", "watchdog"
KPI_STALE = "NeurosKpiPipelineStale"
# The agent is back within about 2 s of a SIGKILL (measured): at 1 s scrapes the alert
# is pending for one or two evaluations, so only `for: 0s` turns that into firing.
SHORT_FOR = "0s"
EXPERIMENTS = available()
# Bounds for the real kill-agent run (its configuration's env keys).
KILL_AGENT_ENV = {
    "CHAOS_RECOVER_WITHIN_S": "30",
    "CHAOS_DETECT_WITHIN_S": "30",
    "CHAOS_RESOLVE_WITHIN_S": "30",
    "CHAOS_HEALTHY_WITHIN_S": "45",
    "CHAOS_ALERT_STATE": "firing",
}


def run_chaos(
    *args: str, env: dict[str, str] | None = None, ci: bool = True, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("CHAOS_")}
    if ci:
        environ["CI"] = "true"
    environ.update(env or {})
    return subprocess.run(
        [str(RUNNER), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


# --- without Docker --------------------------------------------------------------------


def test_help_documents_every_option() -> None:
    result = run_chaos("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--list", "--dry-run", "--report", "--yes", "--project", "EXPERIMENT"):
        assert option in result.stdout
    assert EXPERIMENTS_DIR_ENV in result.stdout
    # --steady-state-only is not read-only: its load probes write synthetic readings.
    assert "synthetic chaos-<random>" in result.stdout
    # Where the API probes' token comes from, named as neuros/auth/admin_token.py does.
    assert TOKEN_VARIABLE in result.stdout
    assert ADMIN_TOKEN_FILE in result.stdout


def test_list_prints_one_experiment_per_line_name_first() -> None:
    result = run_chaos("--list")
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 1) for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == sorted(EXPERIMENTS)
    assert all(len(row) == 2 and row[1].strip() for row in rows), result.stdout
    assert set(EXPERIMENTS) >= {
        "kill-agent",
        "kill-replica",
        "collector-down",
        "tempo-down",
        "prometheus-down",
        "latency",
    }


def test_faults_need_yes_outside_ci(tmp_path: Path) -> None:
    result = run_chaos("--report", str(tmp_path / "r"), "kill-agent", ci=False)
    assert result.returncode == 2
    assert "--yes" in result.stderr
    assert not list(tmp_path.iterdir()), "refused before doing anything"


def test_unknown_experiment_is_a_usage_error() -> None:
    result = run_chaos("no-such-experiment")
    assert result.returncode == 2
    assert "no-such-experiment" in result.stderr


@pytest.mark.parametrize(
    ("value", "tolerance", "ok"),
    [
        (200, 200, True),
        (503, 200, False),
        ("pending", ["pending", "firing"], True),
        (3.0, {"type": "range", "range": [1, None]}, True),
        (0.5, {"type": "range", "range": [1, None]}, False),
        (2, {"above": 1}, True),
        (1, {"above": 1}, False),
        (130.0, {"type": "relative", "to": 40, "ratio": 3, "slack": 10}, True),
        (131.0, {"type": "relative", "to": 40, "ratio": 3, "slack": 10}, False),
        (["A"], {"type": "subset", "of": ["A", "B"]}, True),
        (["C"], {"type": "subset", "of": ["A", "B"]}, False),
        ({"a": 1, "b": 2}, {"type": "fields", "fields": {"a": 1, "b": {"min": 2}}}, True),
        ({"a": 1, "b": 1}, {"type": "fields", "fields": {"a": 1, "b": {"min": 2}}}, False),
    ],
)
def test_tolerances(value: Any, tolerance: Any, ok: bool) -> None:
    assert within(value, tolerance)[0] is ok


def _providers(experiment: dict[str, Any]) -> list[dict[str, Any]]:
    sections = [experiment["steady-state-hypothesis"]["probes"]]
    sections += [experiment["method"], experiment["rollbacks"]]
    return [activity["provider"] for section in sections for activity in section]


def _rule_names() -> set[str]:
    names: set[str] = set()
    for path in (REPO_ROOT / paths.RULES_DIR).glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule.get("alert") or rule["record"] for rule in group["rules"]}
    return names


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_names_exist_where_defined(name: str) -> None:
    """Services, scrape jobs, alerts and recording rules an experiment names are the
    compose file's, prometheus.yml's and the rule files', and every ${ref} resolves."""
    experiment = EXPERIMENTS[name]
    data = experiment.data
    services = set(services_as_written())
    config = yaml.safe_load((REPO_ROOT / paths.PROMETHEUS_CONFIG).read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    rules = _rule_names()
    for provider in _providers(data):
        if "service" in provider:
            assert provider["service"] in services, provider
        for alert in [provider["alert"]] if "alert" in provider else provider.get("alerts", []):
            assert alert in rules, provider
        query = str(provider.get("query", provider.get("selector", "")))
        for job in re.findall(r'job="([^"]+)"', query):
            assert job in jobs, provider
        for record in re.findall(r"\b([a-z_]+:[a-z_:0-9]+)", query):
            assert record in rules, provider
    configuration = experiment.configuration(environ={})
    saved = {
        str(a["save_as"])
        for section in ("method",)
        for a in data[section] + data["steady-state-hypothesis"]["probes"]
        if "save_as" in a
    }
    for ref in references(data):
        head = ref.split(".")[1] if ref.startswith("saved.") else ref
        assert head in (saved if ref.startswith("saved.") else configuration), ref
    assert any(a["type"] == "action" for a in data["method"]), "a method injects a fault"
    assert data["rollbacks"], "every experiment undoes its fault"


def test_kill_agent_sees_the_crash_through_either_alert() -> None:
    """Down (a scrape saw it) or restarted (the new process's start time): whichever
    fires first; the restart alert must be inactive before the fault, and only then,
    since it stays active for its window after it."""
    activities = _by_name("kill-agent")
    detected = activities["crash-alerted"]
    assert detected["provider"] == {
        "type": "prometheus-alert", "alerts": [AGENT_DOWN, AGENT_RESTARTED],
        "state": "${alert_state}",
    }  # fmt: skip
    assert detected["measure"] == "time_to_detect"
    before = activities["agent-restart-alert-inactive"]
    assert before["provider"] == {
        "type": "prometheus-alert", "alert": AGENT_RESTARTED, "state": "inactive",
    }  # fmt: skip
    assert before["only_before"] is True
    hypothesis = EXPERIMENTS["kill-agent"].data["steady-state-hypothesis"]["probes"]
    assert before in hypothesis
    resolved = activities["agent-down-alert-resolved"]["provider"]
    assert resolved == {"type": "prometheus-alert", "alert": AGENT_DOWN, "state": "inactive"}


def test_prometheus_down_follows_the_watchdog_at_alertmanager() -> None:
    activities = _by_name("prometheus-down")
    steady = activities["watchdog-at-alertmanager"]
    assert steady["provider"] == {"type": "alertmanager-alert", "alert": WATCHDOG}
    assert steady in EXPERIMENTS["prometheus-down"].data["steady-state-hypothesis"]["probes"]
    assert steady["tolerance"]["fields"]["receivers"] == {
        "type": "subset", "of": [WATCHDOG_RECEIVER],
    }  # fmt: skip
    method = [a["name"] for a in EXPERIMENTS["prometheus-down"].data["method"]]
    silent, again = (
        activities["watchdog-silent-during-outage"],
        activities["watchdog-received-again"],
    )
    # Read after the outage's load and before the restart, since the mark set once
    # Prometheus had stopped (its shutdown may still flush a send after the fault mark).
    assert method.index("agent-unaffected") < method.index(silent["name"])
    assert method.index(silent["name"]) < method.index("start-prometheus")
    assert activities["agent-unaffected"]["mark"] == silent["provider"]["since"] == "down"
    assert silent["tolerance"] == {"type": "fields", "fields": {"received_since": False}}
    assert again["provider"]["since"] == again["measure_from"] == "restored"
    assert again["tolerance"]["fields"]["received_since"] is True
    bounds = EXPERIMENTS["prometheus-down"].data["verdict"]["bounds"]
    assert again["measure"] in bounds


def test_kill_agent_crashes_through_the_host_pid_not_docker_kill() -> None:
    method = EXPERIMENTS["kill-agent"].data["method"]
    actions = [a["provider"]["type"] for a in method if a["type"] == "action"]
    assert actions == ["compose-kill-pid"]


def test_kill_agent_crashes_the_service_not_docker_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With compose's `init: true` the container's main PID is docker-init: the kill
    goes to its one child, the agent; any other main process is killed itself."""
    proc = tmp_path / "proc"
    for pid, comm, children in ((10, actions.DOCKER_INIT, "11"), (11, "python3", ""),
                                (20, "python3", "21")):  # fmt: skip
        (proc / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "comm").write_text(comm + "\n")
        (proc / str(pid) / "task" / str(pid) / "children").write_text(children)
    monkeypatch.setattr(actions, "PROC", proc)
    assert actions._crash_target(10) == (11, "python3", actions.DOCKER_INIT)
    assert actions._crash_target(20) == (20, "python3", "python3")
    (proc / "10" / "task" / "10" / "children").write_text("11 12")
    with pytest.raises(RefusedTarget, match="not one"):
        actions._crash_target(10)


# --- single sources of truth -----------------------------------------------------------


def _host_port(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname, url
    assert parsed.port, url
    return parsed.hostname, parsed.port


def test_prometheus_api_port_is_the_compose_files() -> None:
    """The probes reach Prometheus from inside its own container: its exposed port."""
    host, port = _host_port(probes.PROMETHEUS_API)
    assert host == "127.0.0.1"
    assert port == exposed_port(probes.PROMETHEUS_SERVICE)


def test_alertmanager_api_port_is_the_compose_files() -> None:
    """The Watchdog probe reads Alertmanager from inside its own container."""
    host, port = _host_port(probes.ALERTMANAGER_API)
    assert host == "127.0.0.1"
    assert port == exposed_port(probes.ALERTMANAGER_SERVICE)


def test_tempo_search_url_is_tempos_http_port() -> None:
    """Tempo's HTTP API: the first port tempo exposes in compose, and the
    server.http_listen_port of tempo/tempo.yml."""
    url = EXPERIMENTS["tempo-down"].configuration(environ={})["tempo_search_url"]
    host, port = _host_port(url)
    assert host in services_as_written()
    assert port == int(str(service_as_written(host)["expose"][0]))
    tempo = yaml.safe_load((REPO_ROOT / paths.TEMPO_CONFIG).read_text(encoding="utf-8"))
    assert port == int(tempo["server"]["http_listen_port"])


def _max_rr_intervals() -> int:
    schema = Reading.model_json_schema()["properties"]["rr_intervals_ms"]
    bounds = [int(branch["maxItems"]) for branch in schema["anyOf"] if "maxItems" in branch]
    assert len(bounds) == 1, schema
    return bounds[0]


def test_latency_rr_count_is_within_the_agents_schema() -> None:
    """The latency load sends the largest readings the agent accepts (422s would count
    as failures, not latency): its default rr_count is the schema's maximum, and such a
    body validates."""
    rr_count = EXPERIMENTS["latency"].configuration(environ={})["rr_count"]
    assert rr_count == _max_rr_intervals()
    at = datetime.now(UTC).replace(microsecond=0).isoformat()
    Reading.model_validate(probes._reading(at, rr_count))
    with pytest.raises(ValueError, match="rr_intervals_ms"):
        Reading.model_validate(probes._reading(at, rr_count + 1))


# --- the API token -------------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Answers like the agent would for a token it accepts; records each request's path
    and Authorization header."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def _answer(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        status, body = (201, b"{}") if self.command == "POST" else (200, b'{"as_of": null}')
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    seen: list[tuple[str, str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_probes_send_the_token_to_the_api_only(
    recorder: tuple[str, list[tuple[str, str | None]]],
) -> None:
    url, seen = recorder
    token = "nrs_chaos-test"  # noqa: S105 - a test value
    ctx = Context(Project("neuros"), url, "none", {}, api_token=token)
    assert probes.http(ctx, {"path": "/ready"}) == 200
    assert probes.reading_write(ctx, {"key": "k"})["acknowledged"] is True
    probes.reading_read(ctx, {"key": "k"})
    load = probes.light_load(ctx, {"requests": 2, "rate_per_s": 100})
    assert load["failures"] == 0
    assert probes.http(ctx, {"path": "/v1/users/someone/kpis"}) == 200
    assert seen[0] == ("/ready", None)
    assert len(seen) == 6
    assert all(header == f"Bearer {token}" for _, header in seen[1:]), seen
    assert token not in repr(ctx)
    # Without a token the API probes cannot observe, and say why.
    bare = Context(Project("neuros"), url, "none", {})
    with pytest.raises(probes.ProbeError, match=TOKEN_VARIABLE):
        probes.reading_write(bare, {"key": "k"})
    assert len(seen) == 6


def test_experiments_that_call_the_api_need_a_token() -> None:
    needing = {name for name, e in EXPERIMENTS.items() if runner.needs_api_token(e)}
    # Each of these writes or loads through /v1/.
    assert needing == set(EXPERIMENTS), needing


def test_run_without_a_token_is_refused_before_any_fault(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A repository root without secrets/, so that only the variable could supply one.
    monkeypatch.setattr(runner, "REPO_ROOT", tmp_path)
    monkeypatch.delenv(TOKEN_VARIABLE, raising=False)
    monkeypatch.delenv(EXPERIMENTS_DIR_ENV, raising=False)
    report = tmp_path / "report"
    status = runner.main(
        ["--project", "neuros-none", "--yes", "--report", str(report), "kill-agent"]
    )
    assert status == runner.EXIT_USAGE
    err = capsys.readouterr().err
    assert TOKEN_VARIABLE in err
    assert "scripts/setup.sh" in err
    assert str(tmp_path / ADMIN_TOKEN_FILE) in err
    assert not list(tmp_path.glob("report*")), "refused before running anything"


# --- alerts after a restart (prometheus-down), against canned Prometheus answers -------


def test_active_alerts_counts_pending_since_the_mark_and_records_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    live = [{"labels": {"alertname": "A"}, "state": "pending"},
            {"labels": {"alertname": "B"}, "state": "inactive"}]  # fmt: skip
    history = [
        # Pending between two polls after the restart: a false alert all the same.
        {"metric": {"alertname": "C", "alertstate": "pending"}, "values": [[now - 3, "1"]]},
        # Before the restart: not this probe's business.
        {"metric": {"alertname": "D", "alertstate": "firing"}, "values": [[now - 60, "1"]]},
    ]
    queries: list[str] = []

    def http_get(self: Project, via: str, url: str, params: dict[str, str] | None = None) -> str:
        if url.endswith("/alerts"):
            return json.dumps({"status": "success", "data": {"alerts": live}})
        queries.append((params or {})["query"])
        return json.dumps({"status": "success", "data": {"result": history}})

    monkeypatch.setattr(Project, "http_get", http_get)
    ctx = Context(Project("neuros"), "http://127.0.0.1:1", "none", {}, marks={"restored": now - 10})
    names = probes.prometheus_active_alerts(ctx, {"since": "restored"})
    assert names == ["A", "C"]
    assert set(ctx.alerts_seen) == {("A", "pending"), ("C", "pending")}
    assert ctx.alerts_seen[("C", "pending")] == now - 3
    assert queries
    assert 'alertstate=~"pending|firing"' in queries[0]
    ctx.alerts_seen.clear()
    assert probes.prometheus_active_alerts(ctx, {"states": ["firing"]}) == []
    assert not ctx.alerts_seen


def test_active_alerts_leave_out_an_alert_already_due_at_the_mark(
    live_agent: Callable[..., LiveAgent],
    prometheus_server: Callable[..., PrometheusServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real Prometheus on the repository's rules scrapes a real agent that accepts no
    reading: NeurosKpiPipelineStale's expression holds from the counter's second flat
    sample. Pending since a mark, it is left out (and listed as due) with
    ``unless_held_at`` a later mark, and kept with a mark before the first scrape."""
    before_any_sample = time.time()
    agent = live_agent()
    scrape = {
        "job_name": AGENT,
        "static_configs": [{"targets": [agent.url.removeprefix("http://")]}],
    }
    prometheus = prometheus_server(repo_config([scrape], fast_rules_dir=tmp_path / "rules"))

    def pending() -> bool:
        return any(
            a["labels"]["alertname"] == KPI_STALE for a in prometheus.api("alerts")["alerts"]
        )

    wait_until(pending, timeout=30, what=f"{KPI_STALE} pending", interval=0.2)
    due = time.time()

    asked: list[str] = []

    def http_get(self: Project, via: str, url: str, params: dict[str, str] | None = None) -> str:
        assert via == probes.PROMETHEUS_SERVICE
        path = url.removeprefix(probes.PROMETHEUS_API)
        if "time" in (params or {}):
            asked.append((params or {})["query"])
        return httpx.get(f"{prometheus.url}/api/v1{path}", params=params, timeout=10).text

    monkeypatch.setattr(Project, "http_get", http_get)
    marks = {"start": before_any_sample, "due": due}
    early = Context(Project("neuros"), "http://127.0.0.1:1", "none", {}, marks=dict(marks))
    kept = probes.prometheus_active_alerts(early, {"since": "start", "unless_held_at": "start"})
    assert KPI_STALE in kept
    assert KPI_STALE not in early.alerts_due
    # vector(1) holds at any instant: the Watchdog is always due.
    assert early.alerts_due.get(WATCHDOG) == "start"
    later = Context(Project("neuros"), "http://127.0.0.1:1", "none", {}, marks=dict(marks))
    left = probes.prometheus_active_alerts(later, {"since": "start", "unless_held_at": "due"})
    assert KPI_STALE not in left
    assert later.alerts_due[KPI_STALE] == "due"
    assert (KPI_STALE, "pending") in later.alerts_seen
    # Polled again (a held probe): an answer at the past instant is not asked again.
    (rule,) = [
        r for g in prometheus.api("rules")["groups"] for r in g["rules"] if r["name"] == KPI_STALE
    ]
    assert rule["query"] in asked
    asked.clear()
    again = probes.prometheus_active_alerts(later, {"since": "start", "unless_held_at": "due"})
    assert KPI_STALE not in again
    assert rule["query"] not in asked, asked
    with pytest.raises(probes.ProbeError, match="no mark 'fault'"):
        probes.prometheus_active_alerts(later, {"since": "start", "unless_held_at": "fault"})


def _canned_prometheus(
    monkeypatch: pytest.MonkeyPatch, live: list[dict[str, Any]], history: list[dict[str, Any]]
) -> list[str]:
    """Project.http_get answering /alerts with ``live`` and queries with ``history``;
    returns the queries sent."""
    queries: list[str] = []

    def http_get(self: Project, via: str, url: str, params: dict[str, str] | None = None) -> str:
        assert via == probes.PROMETHEUS_SERVICE
        if url.endswith("/alerts"):
            return json.dumps({"status": "success", "data": {"alerts": live}})
        queries.append((params or {})["query"])
        return json.dumps({"status": "success", "data": {"result": history}})

    monkeypatch.setattr(Project, "http_get", http_get)
    return queries


def test_alert_probe_detects_through_the_first_of_several_alerts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The down alert never left inactive (the crash healed between two scrapes); the
    restart alert went pending after the fault: that is the detection, at Prometheus'
    evaluation time."""
    now = time.time()
    live = [{"labels": {"alertname": AGENT_RESTARTED}, "state": "pending"}]
    history = [
        {"metric": {"alertname": AGENT_RESTARTED, "alertstate": "pending"},
         "values": [[now - 70, "1"], [now - 55, "1"]]},
    ]  # fmt: skip
    queries = _canned_prometheus(monkeypatch, live, history)
    ctx = Context(Project("neuros"), "http://127.0.0.1:1", "none", {}, marks={"fault": now - 80})
    args = {"alerts": [AGENT_DOWN, AGENT_RESTARTED], "state": "pending"}
    value = probes.prometheus_alert(ctx, args)
    assert value["seen"] is True
    assert value["alert"] == AGENT_RESTARTED
    assert value["at"] == now - 70
    assert value["states"] == {AGENT_DOWN: "inactive", AGENT_RESTARTED: "pending"}
    assert f'alertname=~"{AGENT_DOWN}|{AGENT_RESTARTED}"' in queries[0]
    assert 'alertstate=~"pending|firing"' in queries[0]
    # Not firing yet: no detection of that state.
    _canned_prometheus(monkeypatch, live, [])
    firing = probes.prometheus_alert(ctx, {**args, "state": "firing"})
    assert firing["seen"] is False
    assert firing["alert"] is None
    # "inactive" over several alerts: all of them.
    inactive = probes.prometheus_alert(ctx, {**args, "state": "inactive"})
    assert inactive["seen"] is False
    assert inactive["state"] == "pending"
    _canned_prometheus(monkeypatch, [], [])
    assert probes.prometheus_alert(ctx, {**args, "state": "inactive"})["seen"] is True
    with pytest.raises(probes.ProbeError, match="not an alert name"):
        probes.prometheus_alert(ctx, {"alerts": ['X"}'], "state": "pending"})


def test_alertmanager_probe_reports_the_last_receipt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Alertmanager's v2 answer (RFC 3339 with nanoseconds): updatedAt is when the last
    send from Prometheus arrived."""
    now = time.time()

    def rfc3339(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f123Z")

    answer = [
        {
            "labels": {"alertname": WATCHDOG, "severity": "info", "stack": "neuros"},
            "receivers": [{"name": WATCHDOG_RECEIVER}],
            "status": {"state": "active", "inhibitedBy": [], "silencedBy": []},
            "startsAt": rfc3339(now - 600),
            "updatedAt": rfc3339(now - 40),
            "endsAt": rfc3339(now + 200),
            "fingerprint": "0",
        }
    ]
    asked: list[tuple[str, str, dict[str, str] | None]] = []

    def http_get(self: Project, via: str, url: str, params: dict[str, str] | None = None) -> str:
        asked.append((via, url, params))
        return json.dumps(answer)

    monkeypatch.setattr(Project, "http_get", http_get)
    marks = {"down": now - 30, "restored": now - 50}
    ctx = Context(Project("neuros"), "http://127.0.0.1:1", "none", {}, marks=marks)
    silent = probes.alertmanager_alert(ctx, {"alert": WATCHDOG, "since": "down"})
    assert asked == [
        (ALERTMANAGER, f"{probes.ALERTMANAGER_API}/alerts", {"filter": f'alertname="{WATCHDOG}"'})
    ]
    assert silent["found"] is True
    assert silent["state"] == "active"
    assert silent["receivers"] == [WATCHDOG_RECEIVER]
    assert silent["received_since"] is False
    assert silent["at"] is None
    assert 39 < silent["silent_s"] < 45
    assert silent["last_received"].startswith(
        datetime.fromtimestamp(now - 40, UTC).isoformat(timespec="seconds")[:19]
    )
    again = probes.alertmanager_alert(ctx, {"alert": WATCHDOG, "since": "restored"})
    assert again["received_since"] is True
    assert abs(again["at"] - (now - 40)) < 0.01
    answer.clear()
    gone = probes.alertmanager_alert(ctx, {"alert": WATCHDOG, "since": "down"})
    assert gone["found"] is False
    assert gone["received_since"] is False
    assert gone["receivers"] == []


def test_only_before_probes_are_a_precondition(tmp_path: Path) -> None:
    """A steady-state probe marked only_before holds before the method and is not
    checked after it (the fault changes it by design); the others are checked twice."""
    work = tmp_path / "x"
    _experiment(work, "pre", [_action("inject-fault", "touch", "${work}/fault", mark="fault")])
    path = work / "pre.json"
    data = json.loads(path.read_text())
    data["steady-state-hypothesis"]["probes"].append(
        _probe("no-fault-yet", "test", "!", "-e", "${work}/fault", only_before=True)
    )
    path.write_text(json.dumps(data))
    base = tmp_path / "report"
    result = _local_run(work, "--yes", "--report", str(base), "pre")
    assert result.returncode == 0, result.stdout + result.stderr
    run = _report(base)["experiments"][0]
    before = [p["name"] for p in run["hypothesis_before"]["probes"]]
    after = [p["name"] for p in run["hypothesis_after"]["probes"]]
    assert before == ["true-succeeds", "no-fault-yet"]
    assert after == ["true-succeeds"]
    # With the precondition unmet, the method does not run.
    base2 = tmp_path / "report2"
    result = _local_run(work, "--yes", "--report", str(base2), "pre")
    assert result.returncode == 1
    again = _report(base2)["experiments"][0]
    assert not again["method"]
    assert again["verdict"]["pass"] is False


def test_prometheus_down_treats_any_new_pending_alert_as_false() -> None:
    method = {a["name"]: a for a in EXPERIMENTS["prometheus-down"].data["method"]}
    before, after = method["alerts-active-before"], method["no-false-alert-afterwards"]
    for probe in (before, after):
        assert probe["provider"]["type"] == "prometheus-active-alerts"
        assert probe["provider"]["states"] == ["pending", "firing"]
    assert after["provider"]["since"] == "restored"
    # An alert is excused only by its expression holding at the fault, not later.
    (stop,) = [a for a in method.values() if a["provider"]["type"] == "compose-stop"]
    assert after["provider"]["unless_held_at"] == stop["mark"]
    assert after["tolerance"] == {"type": "subset", "of": f"${{saved.{before['save_as']}}}"}
    assert "hold" in after


# --- rollbacks on failure and interruption, with local `process` activities ------------


def _process(path: str, *arguments: str) -> dict[str, Any]:
    return {"type": "process", "path": path, "arguments": list(arguments)}


def _action(name: str, *command: str, **extra: Any) -> dict[str, Any]:
    return {"type": "action", "name": name, "provider": _process(*command), **extra}


def _probe(name: str, *command: str, **extra: Any) -> dict[str, Any]:
    """A process probe that passes when the command exits 0."""
    tolerance = {"type": "fields", "fields": {"status": 0}}
    return {"type": "probe", "name": name, "provider": _process(*command),
            "tolerance": tolerance, **extra}  # fmt: skip


def _experiment(
    folder: Path, name: str, method: list[dict[str, Any]], bounds: dict[str, Any] | None = None
) -> Path:
    """A Docker-free experiment: steady state `true`, ``method``, a rollback that leaves
    the file ``rolled-back`` behind."""
    folder.mkdir(exist_ok=True)
    data = {
        "title": f"{name}: a local test experiment",
        "description": "Only local processes.",
        "configuration": {"work": str(folder)},
        "steady-state-hypothesis": {
            "title": "true succeeds",
            "probes": [_probe("true-succeeds", "true")],
        },
        "method": method,
        "rollbacks": [_action("leave-rollback-mark", "touch", "${work}/rolled-back")],
        "verdict": {"description": "test", "bounds": bounds or {}},
    }
    (folder / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def _local_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_chaos(*args, env={EXPERIMENTS_DIR_ENV: str(folder)}, ci=False, timeout=60)


@pytest.mark.parametrize(
    ("command", "why"),
    [
        (("false",), "exit status 1"),
        # A value a failed probe never saved: this action fails, the run goes on.
        (("touch", "${saved.never}"), "unresolved reference ${saved.never}"),
    ],
)
def test_rollbacks_run_when_an_action_fails(
    tmp_path: Path, command: tuple[str, ...], why: str
) -> None:
    work = _experiment(tmp_path / "x", "failing", [_action("inject-failing-fault", *command)])
    base = tmp_path / "report"
    result = _local_run(work, "--yes", "--report", str(base), "failing")
    assert result.returncode == 1, result.stdout + result.stderr
    run = _report(base)["experiments"][0]
    assert [(a["name"], a["ok"]) for a in run["method"]] == [("inject-failing-fault", False)]
    assert why in run["method"][0]["why"]
    assert [(a["name"], a["ok"]) for a in run["rollbacks"]] == [("leave-rollback-mark", True)]
    assert (work / "rolled-back").is_file()
    assert run["verdict"]["pass"] is False
    assert run["interrupted"] is None


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_rollbacks_run_when_interrupted(tmp_path: Path, sig: signal.Signals, status: int) -> None:
    """The fault is held by a long pause; the signal arrives once the runner is inside
    the method (the action's mark file exists)."""
    hold = _action("inject-and-hold", "touch", "${work}/in-method", pauses={"after": 600})
    work = _experiment(tmp_path / "x", "held", [hold])
    base = tmp_path / "report"
    environ = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("CHAOS_")}
    environ[EXPERIMENTS_DIR_ENV] = str(work)
    runner = subprocess.Popen(
        [str(RUNNER), "--yes", "--report", str(base), "held"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (work / "in-method").exists() or runner.poll() is not None,
            timeout=30,
            what="the runner inside the method",
        )
        assert runner.poll() is None, runner.communicate()
        assert not (work / "rolled-back").exists()
        runner.send_signal(sig)
        stdout, stderr = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == status, stdout + stderr
    run = _report(base)["experiments"][0]
    assert run["interrupted"] == sig.name
    assert [(a["name"], a["ok"]) for a in run["rollbacks"]] == [("leave-rollback-mark", True)]
    assert (work / "rolled-back").is_file()
    assert run["verdict"]["pass"] is False
    assert f"interrupted by {sig.name}" in run["verdict"]["reasons"]


def test_text_report_has_the_hypotheses_times_and_verdict(tmp_path: Path) -> None:
    """The human report says what the JSON says: hypothesis before and after, each
    action with its time, the measured times, the verdict and its reasons."""
    work = _experiment(
        tmp_path / "x",
        "measured",
        [
            _action("inject-fault", "touch", "${work}/fault", mark="fault"),
            _probe("fault-detected", "test", "-e", "${work}/fault", measure="time_to_detect"),
            _action("repair", "rm", "${work}/fault", mark="restored"),
            _probe(
                "repaired",
                "test",
                "!",
                "-e",
                "${work}/fault",
                measure="time_to_recover",
                measure_from="restored",
            ),
        ],
        bounds={"time_to_detect": 60, "time_to_recover": 60},
    )
    base = tmp_path / "report"
    result = _local_run(work, "--yes", "--report", str(base), "measured")
    assert result.returncode == 0, result.stdout + result.stderr
    run = _report(base)["experiments"][0]
    lines = base.with_name(base.name + ".txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("chaos run ")
    assert "mode=run" in lines[0]
    assert f"== measured: {run['title']}" in lines
    assert "  verdict: pass" in lines
    assert f"    - {run['verdict']['reasons'][0]}" in lines
    assert "  steady state before: met" in lines
    assert "  steady state after: met" in lines
    assert lines.index("  steady state before: met") < lines.index("  steady state after: met")
    assert "    [ok ] true-succeeds: all fields within tolerance" in lines
    for activity in run["method"] + run["rollbacks"]:
        if activity["type"] == "action":
            row = f"    {activity['started_at']} [ok ] action {activity['name']}: done"
            assert row in lines, row
    for name in ("time_to_detect", "time_to_recover"):
        assert f"  {name}: {run['measures'][name]:.2f} s" in lines
    assert lines.index("  rollbacks:") < lines.index("  steady state after: met")


# --- kill-replica: one replica of several, behind the load balancer ------------------


def _by_name(name: str) -> dict[str, dict[str, Any]]:
    data = EXPERIMENTS[name].data
    activities = data["steady-state-hypothesis"]["probes"] + data["method"] + data["rollbacks"]
    return {activity["name"]: activity for activity in activities}


def test_kill_replica_crashes_one_replica_through_its_host_pid() -> None:
    """A SIGKILL to one numbered replica's host PID (not docker kill), and only while
    min_replicas run; the rollback starts that same replica."""
    experiment = EXPERIMENTS["kill-replica"]
    method = experiment.data["method"]
    kills = [a for a in method if a["type"] == "action"]
    assert [a["provider"]["type"] for a in kills] == ["compose-kill-pid"]
    kill = kills[0]
    assert kill["mark"] == "fault"
    assert kill["provider"] == {
        "type": "compose-kill-pid", "service": AGENT, "replica": "${replica}",
        "min_running": "${min_replicas}", "signal": "SIGKILL",
    }  # fmt: skip
    config = experiment.configuration(environ={})
    assert config["replica"] == 1
    assert config["min_replicas"] == 2
    activities = _by_name("kill-replica")
    # Refused without the scale stack, before any fault: the steady state needs it.
    scale = activities["scale-stack-replicas"]["provider"]
    assert scale == {"type": "replicas", "service": AGENT, "at_least": "${min_replicas}"}
    rollback = activities["ensure-replica-started"]["provider"]
    assert rollback == {"type": "compose-start", "service": AGENT, "replica": "${replica}"}
    # Every probe of a container names the replica: with several, an unnumbered one
    # would be refused as ambiguous.
    for activity in activities.values():
        if activity["provider"]["type"] == "container":
            assert activity["provider"]["replica"] == "${replica}", activity["name"]


def test_kill_replica_loads_and_reads_back_every_acknowledged_reading() -> None:
    activities = _by_name("kill-replica")
    load, back = (
        activities["load-through-the-load-balancer"],
        activities["no-acknowledged-reading-lost"],
    )
    assert load["background"] is True
    assert load["provider"]["type"] == "light-load"
    assert load["tolerance"] == {"type": "fields", "fields": {"failures": 0}}
    assert back["provider"] == {"type": "readings-read-back", "key": load["provider"]["remember"]}
    assert back["after_background"] is True
    assert back["tolerance"]["fields"]["lost"] == 0
    method = [a["name"] for a in EXPERIMENTS["kill-replica"].data["method"]]
    # The load runs through the whole method and is read back last.
    assert method[0] == load["name"]
    assert method[-1] == back["name"]


def test_kill_replica_asks_prometheus_for_down_then_up_of_that_instance() -> None:
    activities = _by_name("kill-replica")
    down = activities["prometheus-saw-replica-down"]
    up = activities["prometheus-saw-replica-up-again"]
    before, after = activities["replica-before"], activities["replica-healthy-again"]
    port = "${metrics_port}"
    assert down["provider"] == {
        "type": "prometheus-up-seen", "job": AGENT, "value": 0, "since": "fault",
        "instance": f"${{saved.{before['save_as']}.address}}:{port}",
    }  # fmt: skip
    assert up["provider"] == {
        "type": "prometheus-up-seen", "job": AGENT, "value": 1, "since": "fault",
        "instance": f"${{saved.{after['save_as']}.address}}:{port}",
        "after": f"${{saved.{down['save_as']}.at}}",
    }  # fmt: skip
    for probe in (down, up):
        assert probe["tolerance"] == {"type": "fields", "fields": {"seen": True}}


def test_kill_replica_metrics_port_is_the_scraped_one() -> None:
    """The instance label is address:port of the scale config's DNS discovery."""
    port = EXPERIMENTS["kill-replica"].configuration(environ={})["metrics_port"]
    assert port == METRICS_PORT
    scale = yaml.safe_load((REPO_ROOT / paths.PROMETHEUS_SCALE_CONFIG).read_text(encoding="utf-8"))
    job = next(j for j in scale["scrape_configs"] if j["job_name"] == AGENT)
    assert [sd["port"] for sd in job["dns_sd_configs"]] == [port]


def _container(number: int, running: bool, health: str = "healthy") -> Container:
    return Container(f"{number:064x}", AGENT, running, 100 * number, 0, health, "", number)


def test_replicas_below_the_minimum_are_refused_with_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = [_container(1, running=True)]
    monkeypatch.setattr(Project, "containers", lambda self, service: found)
    ctx = Context(Project("neuros-one"), "http://127.0.0.1:1", "none", {})
    with pytest.raises(RefusedTarget, match=r"docker-compose\.scale\.yml") as refused:
        probes.replicas(ctx, {"service": AGENT, "at_least": 2})
    assert "2 running replicas of 'neuros' needed, 1 in project 'neuros-one'" in str(refused.value)
    # A replica in the restart policy's back-off is not running.
    found.append(_container(2, running=False, health="unhealthy"))
    with pytest.raises(RefusedTarget):
        actions.require_replicas(ctx, AGENT, 2)
    found[1] = _container(2, running=True, health="starting")
    assert probes.replicas(ctx, {"service": AGENT, "at_least": 2}) == {
        "containers": 2, "running": 2, "healthy": 1,
    }  # fmt: skip


def _inspected(number: str, running: bool, restarting: bool, ip: str) -> str:
    return json.dumps([{
        "Id": "c" * 64,
        "RestartCount": 3,
        "Config": {"Labels": {PROJECT_LABEL: "neuros-x", SERVICE_LABEL: AGENT,
                              NUMBER_LABEL: number}},
        "State": {"Running": running, "Restarting": restarting, "Pid": 0 if restarting else 7,
                  "StartedAt": "t", "Health": {"Status": "healthy"}},
        "NetworkSettings": {"Networks": {"neuros-x_default": {"IPAddress": ip}}},
    }])  # fmt: skip


def test_inspect_reads_the_replica_number_and_address(monkeypatch: pytest.MonkeyPatch) -> None:
    answer = _inspected("2", running=True, restarting=False, ip="172.18.0.5")
    monkeypatch.setattr(chaos_docker, "docker", lambda *args, **kwargs: answer)
    project = Project("neuros-x")
    replica = project.inspect("c" * 64, AGENT, replica=2)
    assert (replica.number, replica.address, replica.running) == (2, "172.18.0.5", True)
    assert replica.summary()["replica"] == 2
    assert replica.summary()["address"] == "172.18.0.5"
    with pytest.raises(RefusedTarget, match="replica 2 of 'neuros', not 1"):
        project.inspect("c" * 64, AGENT, replica=1)
    # Docker says Running during the restart back-off; no process runs then.
    answer = _inspected("2", running=True, restarting=True, ip="")
    assert project.inspect("c" * 64, AGENT).running is False


def test_up_seen_counts_only_samples_since_the_mark_and_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    values = [[now - 30, "0"], [now - 8, "1"], [now - 6, "0"], [now - 5, "0"], [now - 2, "1"]]
    queries: list[str] = []

    def http_get(self: Project, via: str, url: str, params: dict[str, str] | None = None) -> str:
        queries.append((params or {})["query"])
        result = [{"metric": {"instance": "10.0.0.2:9464"}, "values": values}]
        return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})

    monkeypatch.setattr(Project, "http_get", http_get)
    ctx = Context(Project("neuros"), "http://127.0.0.1:1", "none", {}, marks={"fault": now - 10})
    args = {"job": AGENT, "instance": "10.0.0.2:9464", "since": "fault"}
    down = probes.prometheus_up_seen(ctx, {**args, "value": 0})
    # The 0 from before the fault is not this fault's.
    assert down == {"instance": "10.0.0.2:9464", "seen": True, "samples": 2, "at": now - 6}
    assert re.fullmatch(r'up\{job="neuros",instance="10\.0\.0\.2:9464"\}\[\d+s\]', queries[0])
    up = probes.prometheus_up_seen(ctx, {**args, "value": 1, "after": down["at"]})
    assert (up["seen"], up["at"]) == (True, now - 2)
    values[-1][1] = "0"
    assert (
        probes.prometheus_up_seen(ctx, {**args, "value": 1, "after": down["at"]})["seen"] is False
    )
    with pytest.raises(probes.ProbeError, match="not a job"):
        probes.prometheus_up_seen(ctx, {**args, "instance": 'x"} or vector(1) #', "value": 0})


class _FakeAgent(BaseHTTPRequestHandler):
    """Stores each POSTed reading (user -> instant) and answers /kpis as of the user's
    instant; drops the ``lose``-th acknowledged reading, as a lost write would."""

    stored: ClassVar[dict[str, str]] = {}
    posts: ClassVar[list[int]] = []
    lose: ClassVar[int] = 0

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = self.path.split("/")[3]
        self.posts.append(1)
        if len(self.posts) != self.lose:
            self.stored[user] = body["readings"][0]["recorded_at"]
        self._answer(201, {})

    def do_GET(self) -> None:
        user = self.path.split("/")[3]
        if user not in self.stored:
            self._answer(404, {"detail": "no readings for this user"})
        else:
            self._answer(200, {"as_of": self.stored[user]})

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.mark.parametrize(("lose", "lost"), [(0, 0), (2, 1)])
def test_read_back_after_the_background_load_finds_a_lost_reading(
    tmp_path: Path, lose: int, lost: int
) -> None:
    """The load of kill-replica, against a fake agent: the read-back waits for the
    background load to end, reads every acknowledged reading, and a lost one fails it."""
    stored: dict[str, str] = {}
    posts: list[int] = []
    handler = type("Agent", (_FakeAgent,), {"stored": stored, "posts": posts, "lose": lose})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    activities = _by_name("kill-replica")
    load = {**activities["load-through-the-load-balancer"]}
    load["provider"] = {**load["provider"], "rate_per_s": 50}
    # The fault's place: holds the method while the load runs.
    hold = _action("hold", "true", pauses={"after": 0.5})
    work = _experiment(
        tmp_path / "x", "loaded", [load, hold, activities["no-acknowledged-reading-lost"]]
    )
    base = tmp_path / "report"
    try:
        result = run_chaos(
            "--yes", "--base-url", f"http://127.0.0.1:{server.server_address[1]}",
            "--report", str(base), "loaded",
            env={EXPERIMENTS_DIR_ENV: str(work), TOKEN_VARIABLE: "nrs_chaos-test"}, ci=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    run = _report(base)["experiments"][0]
    method = {a["name"]: a for a in run["method"]}
    loaded, back = method[load["name"]], method["no-acknowledged-reading-lost"]
    assert loaded["ended_at"] <= back["started_at"], "read back while the load still ran"
    requests = loaded["value"]["requests"]
    assert requests >= 2, loaded
    assert back["value"]["acknowledged"] == requests == len(posts)
    assert back["value"]["lost"] == lost
    assert back["ok"] is (lost == 0)
    assert result.returncode == (0 if lost == 0 else 1), result.stdout + result.stderr
    # Counts only: no synthetic user id in the report.
    assert not any(user in base.with_name("report.json").read_text() for user in stored)


# --- on the real stack ----------------------------------------------------------------


def _prometheus_dir(folder: Path) -> Path:
    """prometheus/ for the test: 1 s scrapes, 0.5 s evaluations, groups without their own
    interval, NeurosAgentDown's `for` shortened; every rule otherwise as written."""
    config = yaml.safe_load((REPO_ROOT / paths.PROMETHEUS_CONFIG).read_text(encoding="utf-8"))
    # The killed container's address stops answering, so the failed scrape times out
    # (1 s) and lands after later evaluations began: rules evaluate 1 s in the past
    # (rule_query_offset), twice per scrape, so that one up == 0 sample is always seen.
    config["global"].update(
        scrape_interval="1s", evaluation_interval="500ms", rule_query_offset="1s"
    )
    folder.mkdir()
    (folder / "rules").mkdir()
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    shortened = 0
    for path in sorted((REPO_ROOT / paths.RULES_DIR).glob("*.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in document["groups"]:
            group.pop("interval", None)
            for rule in group["rules"]:
                if rule.get("alert") == AGENT_DOWN:
                    rule["for"] = SHORT_FOR
                    shortened += 1
        (folder / "rules" / path.name).write_text(yaml.safe_dump(document), encoding="utf-8")
    assert shortened == 1, f"{AGENT_DOWN} not found once in prometheus/rules"
    # Prometheus runs as nobody; the bind mount keeps these modes.
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    require_docker()
    folder = _prometheus_dir(tmp_path_factory.mktemp("chaos") / "prometheus")
    compose = ComposeStack(
        (AGENT, PROMETHEUS),
        env={"CHAOS_PROMETHEUS_DIR": str(folder)},
        override_files=(OVERRIDE,),
        project=f"neuros-chaos-{uuid.uuid4().hex[:10]}",
    )
    with compose:
        compose.wait_healthy(AGENT)
        compose.wait_healthy(PROMETHEUS)

        def steady() -> bool:
            up = compose.prometheus_api("query", query=f'up{{job="{AGENT}"}}')["result"]
            alerts = compose.prometheus_api("alerts")["alerts"]
            return bool(up) and up[0]["value"][1] == "1" and not alerts_named(alerts, AGENT_DOWN)

        wait_until(
            steady,
            timeout=60,
            what="agent scraped and NeurosAgentDown inactive",
            interval=POLL_SECONDS,
        )
        yield compose


def alerts_named(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == name]


def _chaos_on(stack: ComposeStack, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """The runner against the stack, with the stack's admin token for its API probes."""
    env = {
        "NEUROS_PUBLISHED_PORT": str(stack.published_port),
        TOKEN_VARIABLE: stack.api_token,
        **kwargs.pop("env", {}),
    }
    return run_chaos("--project", stack.project, *args, env=env, **kwargs)


def _state(stack: ComposeStack, service: str) -> tuple[str, str, str]:
    return (
        stack.container_id(service),
        stack.inspect(service, "{{.RestartCount}}"),
        stack.inspect(service, "{{.State.StartedAt}}"),
    )


def _report(base: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(base.with_name(base.name + ".json").read_text())
    assert base.with_name(base.name + ".txt").is_file()
    return data


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_dry_run_prints_every_action_and_changes_nothing(
    stack: ComposeStack, name: str, tmp_path: Path
) -> None:
    before = {service: _state(stack, service) for service in (AGENT, PROMETHEUS)}
    # A dry run sends nothing and needs no token.
    result = _chaos_on(
        stack, "--dry-run", "--report", str(tmp_path / "dry"), name,
        env={TOKEN_VARIABLE: ""}, ci=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    data = EXPERIMENTS[name].data
    for activity in data["method"] + data["rollbacks"]:
        assert activity["name"] in result.stdout
    for entry in _report(tmp_path / "dry")["experiments"][0]["method"]:
        assert entry["commands"], entry
    if any(a["provider"].get("service") == AGENT for a in data["method"]):
        assert stack.container_id(AGENT)[:12] in result.stdout
    after = {service: _state(stack, service) for service in (AGENT, PROMETHEUS)}
    assert after == before


@pytest.mark.docker
@pytest.mark.slow
def test_refuses_a_container_of_another_project(stack: ComposeStack, tmp_path: Path) -> None:
    other = f"neuros-impostor-{uuid.uuid4().hex[:8]}"
    impostor = subprocess.run(
        ["docker", "run", "-d", "--rm", "--entrypoint", "sleep",
         "--label", f"{PROJECT_LABEL}={other}", "--label", f"{SERVICE_LABEL}={AGENT}",
         f"neuros:{_image_tag()}", "300"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    try:
        with pytest.raises(RefusedTarget, match=other):
            Project(stack.project).inspect(impostor, AGENT)
        # A project without containers: every target is refused, nothing is touched.
        result = _chaos_on(
            stack, "--project", f"{other}-none", "--report", str(tmp_path / "r"), "kill-agent"
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no container of service 'neuros'" in result.stdout
        assert "action sigkill-agent-host-pid" not in result.stdout, "method must not run"
        running = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", impostor],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert running == ["true", "0"]
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", impostor], capture_output=True, check=False)


@pytest.mark.docker
@pytest.mark.slow
def test_kill_replica_refuses_a_single_agent(stack: ComposeStack, tmp_path: Path) -> None:
    """This stack has one agent: kill-replica must not take it down, and says why."""
    before = _state(stack, AGENT)
    result = _chaos_on(stack, "--yes", "--report", str(tmp_path / "r"), "kill-replica")
    assert result.returncode == 1, result.stdout + result.stderr
    run = _report(tmp_path / "r")["experiments"][0]
    replicas = {p["name"]: p for p in run["hypothesis_before"]["probes"]}["scale-stack-replicas"]
    assert not replicas["ok"]
    assert "2 running replicas of 'neuros' needed, 1 in project" in replicas["why"]
    assert "docker-compose.scale.yml" in result.stdout
    assert not run["method"], "the method must not run"
    assert not run["rollbacks"] or all(r["ok"] for r in run["rollbacks"])
    assert _state(stack, AGENT) == before


def _image_tag() -> str:
    for line in (REPO_ROOT / paths.ENV_EXAMPLE).read_text(encoding="utf-8").splitlines():
        if line.startswith("NEUROS_IMAGE_TAG="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("NEUROS_IMAGE_TAG missing from .env.example")


@pytest.mark.docker
@pytest.mark.slow
def test_steady_state_probes_of_the_other_experiments(stack: ComposeStack, tmp_path: Path) -> None:
    """The agent-side probes hold on the live stack; those of services that cannot run
    here (collector, Tempo) fail and say why. (prometheus-down runs for real on the
    production stack.)"""
    names = ["collector-down", "tempo-down", "latency"]
    result = _chaos_on(
        stack, "--steady-state-only", "--report", str(tmp_path / "ss"), *names,
        env={"CHAOS_LOAD_RATE": "20"}, ci=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    runs = {e["name"]: e for e in _report(tmp_path / "ss")["experiments"]}
    probes = {
        name: {p["name"]: p for p in run["hypothesis_before"]["probes"]}
        for name, run in runs.items()
    }
    failed = {probe: found["why"] for probe, found in probes["latency"].items() if not found["ok"]}
    assert runs["latency"]["verdict"]["pass"] is True, failed
    for name in ("collector-down", "tempo-down"):
        assert probes[name]["agent-ready"]["ok"]
        assert runs[name]["verdict"]["pass"] is False
        assert not runs[name]["method"], "steady-state-only runs no method"
    collector = probes["collector-down"]
    assert collector["agent-baseline-load"]["value"]["failures"] == 0
    assert (
        "no container of service 'otel-collector'"
        in collector["collector-container-running"]["why"]
    )
    assert collector["collector-scraped"]["value"] == 0.0
    assert (
        "no container of service 'tempo'" in probes["tempo-down"]["tempo-container-running"]["why"]
    )


@pytest.mark.docker
@pytest.mark.slow
def test_kill_agent_for_real(stack: ComposeStack, tmp_path: Path) -> None:
    restarts_before = int(stack.inspect(AGENT, "{{.RestartCount}}"))
    container_before = stack.container_id(AGENT)
    base = tmp_path / "kill-agent"
    result = _chaos_on(stack, "--report", str(base), "kill-agent", env=KILL_AGENT_ENV, ci=True)
    run = _report(base)["experiments"][0]
    assert result.returncode == 0, result.stdout + result.stderr
    assert run["verdict"]["pass"] is True, run["verdict"]
    # The restart policy, not a docker start: same container, RestartCount up.
    assert stack.inspect(AGENT, "{{.Id}}") == container_before
    assert int(stack.inspect(AGENT, "{{.RestartCount}}")) == restarts_before + 1
    method = {a["name"]: a for a in run["method"]}
    assert method["write-reading-before-crash"]["value"]["acknowledged"] is True
    assert method["reading-read-after-crash"]["value"] == {"status": 200, "found": True}
    kill = method["sigkill-agent-host-pid"]
    assert kill["output"]["restart_count_before"] == restarts_before
    assert kill["commands"] == [f"kill -KILL {kill['output']['pid']}"]
    # The agent's own process (the image's entrypoint, which the override's shell
    # execs), not the init compose puts first.
    image = stack.inspect(AGENT, "{{.Config.Image}}").strip()
    entrypoint = json.loads(
        subprocess.run(
            ["docker", "image", "inspect", "--format", "{{json .Config.Entrypoint}}", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert kill["output"]["process"] == Path(entrypoint[0]).name, kill["output"]
    if kill["output"]["main_process"] == "docker-init":
        assert kill["output"]["pid"] != kill["output"]["main_pid"]
    seen = {(a["alert"], a["state"]): a["epoch"] for a in run["alerts_seen"]}
    assert (AGENT_DOWN, "firing") in seen, run["alerts_seen"]
    assert method["agent-down-alert-resolved"]["value"]["state"] == "inactive"
    measures, bounds = run["measures"], run["bounds"]
    for name in ("time_to_detect", "time_to_recover", "time_to_resolve", "time_to_healthy"):
        assert 0 < measures[name] <= float(bounds[name]), (name, measures, bounds)
    assert measures["time_to_detect"] <= measures["time_to_resolve"]
    assert run["hypothesis_before"]["met"]
    assert run["hypothesis_after"]["met"]
    assert [r["ok"] for r in run["rollbacks"]] == [True]
    print(f"kill-agent: {json.dumps(measures)}")


# --- production settings: the shipped scrape interval and rules, no override ----------

# The sink standing in for the page, ticket and heartbeat services: one line of JSON per
# notification (path = the receiver, the alert names), 200 for each. The agent's image
# has python3.
SINK, SINK_PORT = "heartbeat", 8080
SINK_CODE = """
import http.server, json
class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        names = sorted({a["labels"]["alertname"] for a in body["alerts"]})
        print(json.dumps({"path": self.path, "receiver": body["receiver"],
                          "status": body["status"], "alerts": names}), flush=True)
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", SINK_PORT), Sink).serve_forever()
""".replace("SINK_PORT", str(SINK_PORT))


def _url_files() -> dict[str, str]:
    """Receiver -> the name of its webhook URL file (alertmanager.yml's url_file)."""
    config = yaml.safe_load((REPO_ROOT / paths.ALERTMANAGER_CONFIG).read_text(encoding="utf-8"))
    return {
        receiver["name"]: Path(webhook["url_file"]).name
        for receiver in config["receivers"]
        for webhook in receiver.get("webhook_configs", [])
    }


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


@dataclass
class Production:
    stack: ComposeStack
    sink: str

    def notifications(self) -> list[dict[str, Any]]:
        logs = subprocess.run(
            ["docker", "logs", self.sink], capture_output=True, text=True, check=True
        ).stdout
        return [json.loads(line) for line in logs.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    require_docker()
    secrets_dir = tmp_path_factory.mktemp("alertmanager-secrets")
    secrets_dir.chmod(0o755)
    for receiver, name in _url_files().items():
        url_file = secrets_dir / name
        url_file.write_text(f"http://{SINK}:{SINK_PORT}/{receiver}")
        url_file.chmod(0o644)
    compose = ComposeStack(
        (AGENT, PROMETHEUS, ALERTMANAGER),
        env={ALERTMANAGER_SECRETS_VARIABLE: str(secrets_dir)},
        project=f"neuros-chaos-prod-{uuid.uuid4().hex[:10]}",
    )
    with compose:
        image = compose.inspect(AGENT, "{{.Config.Image}}")
        sink = subprocess.run(
            ["docker", "run", "-d", "--rm", "--name", f"{compose.project}-{SINK}",
             "--network", f"{compose.project}_default", "--network-alias", SINK,
             "--entrypoint", "python3", image, "-c", SINK_CODE],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        try:
            for service in (AGENT, PROMETHEUS, ALERTMANAGER):
                compose.wait_healthy(service)
            _settle(compose)
            yield Production(compose, sink)
        finally:
            subprocess.run(["docker", "rm", "-f", "-v", sink], capture_output=True, check=False)


def _settle(compose: ComposeStack) -> float:
    """Until the agent is scraped, every target was scraped once and the rule groups of
    the global interval evaluated after that (so the alerts of this partial stack's
    missing targets are pending already, not only after a later fault)."""
    first_scrapes: list[datetime] = []

    def settled() -> bool:
        up = compose.prometheus_api("query", query=f'up{{job="{AGENT}"}}')["result"]
        if not up or up[0]["value"][1] != "1":
            return False
        if not first_scrapes:
            targets = compose.prometheus_api("targets")["activeTargets"]
            scraped = [_instant(target["lastScrape"]) for target in targets]
            if not scraped or min(scraped).year < 2000:
                return False
            first_scrapes.append(max(scraped))
        groups = compose.prometheus_api("rules")["groups"]
        fast = [g for g in groups if float(g["interval"]) <= 15]
        return bool(fast) and all(_instant(g["lastEvaluation"]) > first_scrapes[0] for g in fast)

    return wait_until(
        settled, timeout=90, what="Prometheus settled on the production stack", interval=1
    )


@pytest.mark.docker
@pytest.mark.slow
def test_production_watchdog_reaches_its_receiver_only(production: Production) -> None:
    """Prometheus fires the Watchdog, the real Alertmanager routes it to the watchdog
    receiver only, whose webhook gets it; no page or ticket notification carries it."""
    stack = production.stack

    def heartbeats() -> list[dict[str, Any]]:
        return [n for n in production.notifications() if n["receiver"] == WATCHDOG_RECEIVER]

    # Prometheus' first send may precede its discovery of Alertmanager and be lost;
    # it sends again after its resend delay (1 minute).
    wait_until(
        lambda: bool(heartbeats()),
        timeout=120,
        what="the Watchdog at the heartbeat sink",
        interval=1,
        details=lambda: f"sink got: {production.notifications()}",
    )
    for notification in production.notifications():
        if notification["receiver"] == WATCHDOG_RECEIVER:
            assert notification["path"] == f"/{WATCHDOG_RECEIVER}"
            assert notification["alerts"] == [WATCHDOG], notification
            assert notification["status"] == "firing"
        else:
            assert WATCHDOG not in notification["alerts"], notification
    firing = alerts_named(stack.prometheus_api("alerts")["alerts"], WATCHDOG)
    assert [a["state"] for a in firing] == ["firing"]
    held = json.loads(stack.fetch(ALERTMANAGER, "/api/v2/alerts", filter=f'alertname="{WATCHDOG}"'))
    assert [[r["name"] for r in a["receivers"]] for a in held] == [[WATCHDOG_RECEIVER]]
    assert held[0]["status"]["state"] == "active"


@pytest.mark.docker
@pytest.mark.slow
def test_prometheus_down_sees_the_watchdog_stop(production: Production, tmp_path: Path) -> None:
    """Prometheus stopped for 20 s: Alertmanager gets no Watchdog meanwhile (its copy
    stays active: its endsAt is minutes ahead), and gets it again after the restart."""
    env = {
        "CHAOS_OUTAGE_S": "20",
        "CHAOS_MIN_GAP_S": "15",
        "CHAOS_HOLD_S": "20",
        "CHAOS_LOAD_RATE": "10",
    }
    base = tmp_path / "prometheus-down"
    result = _chaos_on(production.stack, "--report", str(base), "prometheus-down", env=env)
    run = _report(base)["experiments"][0]
    assert result.returncode == 0, result.stdout + result.stderr
    assert run["verdict"]["pass"] is True, run["verdict"]
    method = {a["name"]: a for a in run["method"]}
    silent = method["watchdog-silent-during-outage"]["value"]
    assert silent["received_since"] is False
    assert silent["found"] is True
    assert silent["state"] == "active"
    outage = float(env["CHAOS_OUTAGE_S"])
    assert silent["silent_s"] >= outage, silent
    marks = run["marks"]
    assert silent["last_received"] < marks["down"] < marks["restored"]
    again = method["watchdog-received-again"]["value"]
    assert again["received_since"] is True
    assert again["last_received"] > marks["restored"]
    assert 0 < run["measures"]["time_to_watchdog"] <= float(run["bounds"]["time_to_watchdog"])
    print(
        f"prometheus-down: already due at the fault {run['alerts_due']};"
        f" Watchdog last received {silent['last_received']}, outage"
        f" {marks['fault']} to {marks['restored']}, silent {silent['silent_s']} s when read;"
        f" {json.dumps(run['measures'])}"
    )


@pytest.mark.docker
@pytest.mark.slow
def test_kill_agent_with_production_settings(production: Production, tmp_path: Path) -> None:
    """The shipped experiment, bounds and rules: the crash heals between two 15 s
    scrapes, NeurosAgentDown never fires, and NeurosAgentRestarted detects it."""
    stack = production.stack
    restarts_before = int(stack.inspect(AGENT, "{{.RestartCount}}"))
    base = tmp_path / "kill-agent"
    result = _chaos_on(stack, "--report", str(base), "kill-agent", ci=True)
    run = _report(base)["experiments"][0]
    assert result.returncode == 0, result.stdout + result.stderr
    assert run["verdict"]["pass"] is True, run["verdict"]
    assert int(stack.inspect(AGENT, "{{.RestartCount}}")) == restarts_before + 1
    assert run["configuration"]["alert_state"] == "firing"
    method = {a["name"]: a for a in run["method"]}
    detected = method["crash-alerted"]["value"]
    assert detected["alert"] == AGENT_RESTARTED, detected
    assert detected["states"][AGENT_RESTARTED] == "firing"
    seen = {(a["alert"], a["state"]) for a in run["alerts_seen"]}
    assert (AGENT_DOWN, "firing") not in seen, run["alerts_seen"]
    measures, bounds = run["measures"], run["bounds"]
    for name in ("time_to_detect", "time_to_recover", "time_to_resolve", "time_to_healthy"):
        assert 0 < measures[name] <= float(bounds[name]), (name, measures, bounds)
    # The dashboards' restart marker, on the live data: the new process's start time.
    started = stack.prometheus_api("query", query=f'process_start_time_seconds{{job="{AGENT}"}}')[
        "result"
    ]
    annotation = json.loads(
        (REPO_ROOT / paths.DASHBOARDS_DIR / "neuros-kpi-overview.json").read_text()
    )["annotations"]["list"]
    (restarts,) = [a for a in annotation if a["name"] == "Agent restarts"]
    now = time.time()
    marked = stack.prometheus_api(
        "query_range",
        query=restarts["expr"].replace("$__rate_interval", "1m"),
        start=str(now - 300),
        end=str(now),
        step="15",
    )["result"]
    assert {float(v) for series in marked for _, v in series["values"]} == {
        float(started[0]["value"][1]) * 1000
    }
    print(f"kill-agent (production settings): {json.dumps(measures)}, detected by {detected}")


def test_the_runner_needs_only_the_standard_library() -> None:
    """docs/chaos.md: any python3 on the Docker host runs it, with no venv (-S: no
    site-packages, so PyYAML, FastAPI and the rest are out of reach)."""
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import chaos.runner"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
