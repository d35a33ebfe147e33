"""The chaos suite: chaos/run-chaos-test.sh and its experiments.

Without Docker: the CLI contract (--help, --list, --yes outside CI), the tolerances, and
that every name an experiment uses (services, scrape jobs, alerts, recording rules,
configuration references) exists where it is defined.

With Docker (one stack per module: the real docker-compose.yml's neuros and prometheus
under a project of their own, plus tests/chaos/compose.override.yml, which mounts a
Prometheus config generated here from prometheus/ with 1 s scrapes and a short `for`
on NeurosAgentDown): kill-agent runs for real and its full verdict is asserted from the
JSON report; the other experiments need images this machine cannot get, so their dry
runs (which must change nothing) and their steady-state probes run against the stack.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from chaos.docker import PROJECT_LABEL, SERVICE_LABEL, Project, RefusedTarget
from chaos.experiment import available, references, within
from tests.compose_model import COMPOSE_FILE
from tests.dockerstack import ComposeStack, require_docker, wait_for
from tests.tooling import REPO_ROOT

RUNNER = REPO_ROOT / "chaos" / "run-chaos-test.sh"
PROMETHEUS_DIR = REPO_ROOT / "prometheus"
OVERRIDE = REPO_ROOT / "tests" / "chaos" / "compose.override.yml"
AGENT, PROMETHEUS = "neuros", "prometheus"
AGENT_DOWN = "NeurosAgentDown"
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


def test_list_prints_one_experiment_per_line_name_first() -> None:
    result = run_chaos("--list")
    assert result.returncode == 0, result.stderr
    rows = [line.split(None, 1) for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == sorted(EXPERIMENTS)
    assert all(len(row) == 2 and row[1].strip() for row in rows), result.stdout
    assert set(EXPERIMENTS) >= {
        "kill-agent",
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
    for path in (PROMETHEUS_DIR / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names |= {rule.get("alert") or rule["record"] for rule in group["rules"]}
    return names


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_names_exist_where_defined(name: str) -> None:
    """Services, scrape jobs, alerts and recording rules an experiment names are the
    compose file's, prometheus.yml's and the rule files', and every ${ref} resolves."""
    experiment = EXPERIMENTS[name]
    data = experiment.data
    services = set(yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))["services"])
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    rules = _rule_names()
    for provider in _providers(data):
        if "service" in provider:
            assert provider["service"] in services, provider
        if "alert" in provider:
            assert provider["alert"] in rules, provider
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


def test_kill_agent_crashes_through_the_host_pid_not_docker_kill() -> None:
    method = EXPERIMENTS["kill-agent"].data["method"]
    actions = [a["provider"]["type"] for a in method if a["type"] == "action"]
    assert actions == ["compose-kill-pid"]


# --- on the real stack ----------------------------------------------------------------


def _prometheus_dir(folder: Path) -> Path:
    """prometheus/ for the test: 1 s scrapes, 0.5 s evaluations, groups without their own
    interval, NeurosAgentDown's `for` shortened; every rule otherwise as written."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text(encoding="utf-8"))
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
    for path in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
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

        wait_for(steady, timeout=60, what="agent scraped and NeurosAgentDown inactive")
        yield compose


def alerts_named(alerts: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"]["alertname"] == name]


def _chaos_on(stack: ComposeStack, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    env = {"NEUROS_PUBLISHED_PORT": str(stack.published_port), **kwargs.pop("env", {})}
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
    result = _chaos_on(stack, "--dry-run", "--report", str(tmp_path / "dry"), name, ci=False)
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
        subprocess.run(["docker", "rm", "-f", impostor], capture_output=True, check=False)


def _image_tag() -> str:
    for line in (REPO_ROOT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.startswith("NEUROS_IMAGE_TAG="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("NEUROS_IMAGE_TAG missing from .env.example")


@pytest.mark.docker
@pytest.mark.slow
def test_steady_state_probes_of_the_other_experiments(stack: ComposeStack, tmp_path: Path) -> None:
    """The agent-side probes hold on the live stack; those of services that cannot run
    here (collector, Tempo) fail and say why."""
    names = ["collector-down", "tempo-down", "prometheus-down", "latency"]
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
    assert runs["prometheus-down"]["verdict"]["pass"] is True, probes["prometheus-down"]
    assert runs["latency"]["verdict"]["pass"] is True, probes["latency"]
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
