"""docker-compose.yml brought up for real: the agent, Prometheus and Alertmanager.

One stack per module (``up --no-deps neuros prometheus alertmanager``, images from
scripts/docker-setup.sh), then each test proves one property of the running stack:
Docker healthchecks pass, the agent runs as the compose file's uid, Prometheus scrapes
the agent by service name on its metrics port, loads every rule group and reaches
Alertmanager, a posted reading shows up in Prometheus (with its trace as exemplar), and
the retention flags are .env.example's. The published port answers the API only with a
bearer token and serves no /metrics, and a token added to the mounted tokens folder on
the host works without a restart (and stops working once revoked). A stack of its own
proves ``down -v`` leaves nothing behind.
Names and values come from the files that define them, never retyped here.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from neuros.api.kpis import get_kpis
from neuros.api.kpis import router as kpis_router
from neuros.api.readings import INGEST_ROUTE_NAME, router
from neuros.auth.admin_token import bearer
from neuros.auth.tokens import Scope
from neuros.auth.tokens_file import TokensFile
from neuros.config import METRICS_PORT
from neuros.metrics import build_metrics
from stacktools import paths
from stacktools.compose import service_as_written
from stacktools.paths import REPO_ROOT
from tests.support import dockerstack
from tests.support.agent import reading
from tests.support.dockerstack import ComposeStack, StartStack, env_example, exposed_port
from tests.support.processes import wait_until
from tests.support.stub_docker import STORAGE_SCRIPT

Test = TypeVar("Test", bound=Callable[..., None])


def on_stack(test: Test) -> Test:
    """Marks a test that needs the real stack (and so Docker)."""
    return cast(Test, pytest.mark.slow(pytest.mark.docker(test)))


AGENT, PROMETHEUS, ALERTMANAGER = "neuros", "prometheus", "alertmanager"
SERVICES = (AGENT, PROMETHEUS, ALERTMANAGER)
PROMETHEUS_CONFIG = REPO_ROOT / paths.PROMETHEUS_CONFIG
READINGS_POSTED = 3
HEALTHY_DEADLINE = 120.0
# The agent polls its tokens file every NEUROS_API_TOKENS_RELOAD_SECONDS (default 2 s).
RELOAD_DEADLINE = 30.0


def _config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    return config


# Prometheus' duration and byte-size units (docs/storage.md: sizes are powers of 2,
# "so 1KB is 1024B"; durations y, w, d, h, m, s, ms).
DURATION_UNITS = {
    "y": 365 * 86400,
    "w": 7 * 86400,
    "d": 86400,
    "h": 3600,
    "m": 60,
    "s": 1,
    "ms": 0.001,
}
DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
SIZE = re.compile(r"(\d+)([KMGTPE]?)i?B")


def _seconds(duration: str) -> float:
    parts = DURATION.findall(duration)
    assert parts, f"bad duration {duration!r}"
    assert "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(int(number) * DURATION_UNITS[unit] for number, unit in parts)


def _bytes(size: str) -> int:
    found = SIZE.fullmatch(size)
    assert found, f"bad size {size!r}"
    power = " KMGTPE".index(found[2] or " ")
    return int(found[1]) << (10 * power)


# Several scrape intervals: the first scrape may come before the agent listens.
SCRAPE_DEADLINE = 4 * _seconds(_config()["global"]["scrape_interval"]) + 10


def _agent_target() -> tuple[str, str]:
    """(job, instance) of the scrape job whose target is the agent's compose service."""
    found = [
        (str(job["job_name"]), str(target))
        for job in _config()["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
        if str(target).rpartition(":")[0] == AGENT
    ]
    assert len(found) == 1, f"expected one scrape target on service {AGENT!r}: {found}"
    return found[0]


METRICS = build_metrics()
ACCEPTED_FAMILY = next(iter(METRICS.readings_accepted.describe())).name
LATENCY_FAMILY = next(iter(METRICS.http_request_duration.describe())).name


def _sample_name(family: str) -> str:
    """Name of the first sample of a metric family of the agent's registry."""
    for collected in METRICS.registry.collect():
        if collected.name == family:
            return str(collected.samples[0].name)
    raise AssertionError(f"the agent's registry has no metric {family!r}")


@dataclass
class Timings:
    stages: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.stages.append((name, time.monotonic() - start))

    def report(self) -> str:
        lines = [f"  {name:<44} {seconds:6.1f} s" for name, seconds in self.stages]
        return "\n".join(["docker compose stage timings:", *lines])


@pytest.fixture(scope="module")
def timings(request: pytest.FixtureRequest) -> Iterator[Timings]:
    recorded = Timings()
    yield recorded
    if recorded.stages:
        dockerstack.show(request, recorded.report())


@pytest.fixture(scope="module")
def stack(docker_stack_module: StartStack, timings: Timings) -> ComposeStack:
    with timings.stage(f"up --no-deps {' '.join(SERVICES)}"):
        started = docker_stack_module(SERVICES)
    for service in SERVICES:
        with timings.stage(f"{service} healthy (Docker healthcheck)"):
            started.wait_healthy(service, timeout=HEALTHY_DEADLINE)
    return started


def _series(stack: ComposeStack, promql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = stack.prometheus_api("query", query=promql)["result"]
    return result


def _agent_counter(stack: ComposeStack, sample: str) -> float:
    """The agent's own current value of ``sample``, read on its metrics port."""
    for family in text_string_to_metric_families(stack.agent_metrics()):
        for found in family.samples:
            if found.name == sample:
                return float(found.value)
    raise AssertionError(f"the agent does not expose {sample}")


@on_stack
@pytest.mark.parametrize("service", SERVICES)
def test_service_passes_its_docker_healthcheck(stack: ComposeStack, service: str) -> None:
    assert stack.health(service) == "healthy"


@on_stack
def test_agent_runs_as_the_compose_user(stack: ComposeStack) -> None:
    uid, _, gid = str(service_as_written(AGENT)["user"]).partition(":")
    status = Path(f"/proc/{stack.host_pid(AGENT)}/status").read_text()
    ids = {line.split(":")[0]: line.split()[1:] for line in status.splitlines()[:10]}
    # Real, effective, saved and filesystem ids.
    assert ids["Uid"] == [uid] * 4
    assert ids["Gid"] == [gid] * 4


def _wait_for_one_series(stack: ComposeStack, promql: str) -> None:
    wait_until(
        lambda: len(_series(stack, promql)) == 1,
        timeout=SCRAPE_DEADLINE,
        interval=dockerstack.POLL_SECONDS,
        what=promql,
        details=lambda: f"targets: {stack.prometheus_api('targets')['activeTargets']}",
    )


@on_stack
def test_prometheus_scrapes_the_agent_by_service_name(
    stack: ComposeStack, timings: Timings
) -> None:
    job, instance = _agent_target()
    with timings.stage(f"first successful scrape of {instance}"):
        _wait_for_one_series(stack, f'up{{job="{job}",instance="{instance}"}} == 1')


@on_stack
def test_published_port_serves_the_api_but_not_the_metrics(stack: ComposeStack) -> None:
    """/metrics is only on the metrics port, which Prometheus scrapes; the published
    port answers it with 404, and the probes stay open."""
    _, instance = _agent_target()
    assert instance == f"{AGENT}:{METRICS_PORT}"
    _wait_for_one_series(stack, f'up{{instance="{instance}"}} == 1')
    assert httpx.get(f"{stack.agent_url}/metrics", timeout=10).status_code == 404
    for probe in ("/health", "/ready"):
        assert httpx.get(f"{stack.agent_url}{probe}", timeout=10).status_code == 200, probe


@on_stack
@pytest.mark.parametrize(
    "headers",
    [{}, bearer("nrs_" + "x" * 43), {"Authorization": "Basic YWRtaW46YWRtaW4="}],
    ids=["no-token", "unknown-token", "not-bearer"],
)
def test_published_port_refuses_the_api_without_a_valid_token(
    stack: ComposeStack, headers: dict[str, str]
) -> None:
    path = router.url_path_for(INGEST_ROUTE_NAME, user_id=f"compose-{secrets.token_hex(4)}")
    response = httpx.post(
        f"{stack.agent_url}{path}", json={"readings": [reading()]}, headers=headers, timeout=10
    )
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def _kpis_status(stack: ComposeStack, token: str, user: str) -> int:
    path = kpis_router.url_path_for(get_kpis.__name__, user_id=user)
    return httpx.get(f"{stack.agent_url}{path}", headers=bearer(token), timeout=10).status_code


@on_stack
def test_token_added_on_the_host_works_without_a_restart(stack: ComposeStack) -> None:
    """The folder mount carries the CLI's atomic replace into the container, and the
    agent reloads it: a new token works, a revoked one stops, in the same process."""
    pid = stack.host_pid(AGENT)
    user = f"compose-{secrets.token_hex(4)}"  # no data: an accepted token gets 404
    tokens = TokensFile(stack.tokens_file)
    name = f"reload-{secrets.token_hex(3)}"
    token = tokens.add(name, [Scope.KPIS_READ], ["compose-*"])
    wait_until(
        lambda: _kpis_status(stack, token, user) == 404,
        timeout=RELOAD_DEADLINE,
        interval=dockerstack.POLL_SECONDS,
        what=f"token {name!r} accepted",
        details=lambda: f"status {_kpis_status(stack, token, user)}\n{stack.logs(AGENT)}",
    )
    tokens.revoke(name)
    wait_until(
        lambda: _kpis_status(stack, token, user) == 401,
        timeout=RELOAD_DEADLINE,
        interval=dockerstack.POLL_SECONDS,
        what=f"token {name!r} refused after its revocation",
        details=lambda: f"status {_kpis_status(stack, token, user)}\n{stack.logs(AGENT)}",
    )
    assert stack.host_pid(AGENT) == pid, "the agent restarted to pick up its tokens"
    assert _kpis_status(stack, stack.api_token, user) == 404


@on_stack
def test_sighup_to_the_container_reloads_the_tokens(stack: ComposeStack) -> None:
    """`docker compose kill -s HUP neuros` (docs/api.md): the init passes the signal on
    and the agent reloads its tokens file at once."""
    reloaded = "api tokens reloaded (SIGHUP)"
    before = stack.logs(AGENT, tail=10_000).count(reloaded)
    stack.compose("kill", "-s", "HUP", AGENT)
    wait_until(
        lambda: stack.logs(AGENT, tail=10_000).count(reloaded) > before,
        timeout=RELOAD_DEADLINE,
        interval=dockerstack.POLL_SECONDS,
        what=f"{reloaded!r} in the agent's log",
        details=lambda: stack.logs(AGENT),
    )
    assert stack.health(AGENT) == "healthy"


@on_stack
def test_prometheus_loads_every_rule_group(stack: ComposeStack) -> None:
    want: list[str] = []
    for pattern in _config()["rule_files"]:
        for path in sorted(PROMETHEUS_CONFIG.parent.glob(pattern)):
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
            want += [str(group["name"]) for group in document["groups"]]
    assert want, "no rule groups found in the rule files"

    groups = stack.prometheus_api("rules")["groups"]
    assert sorted(group["name"] for group in groups) == sorted(want)
    broken = [
        (rule["name"], rule.get("lastError"))
        for group in groups
        for rule in group["rules"]
        if rule.get("health") == "err"
    ]
    assert broken == []


@on_stack
def test_prometheus_reaches_alertmanager(stack: ComposeStack) -> None:
    targets = [
        str(target)
        for manager in _config()["alerting"]["alertmanagers"]
        for static in manager.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    # The configured target is the Alertmanager service on the port it exposes.
    assert targets == [f"{ALERTMANAGER}:{exposed_port(ALERTMANAGER)}"]

    def active() -> list[str]:
        managers = stack.prometheus_api("alertmanagers")["activeAlertmanagers"]
        return [httpx.URL(manager["url"]).netloc.decode() for manager in managers]

    wait_until(
        lambda: active() == targets,
        timeout=30,
        interval=dockerstack.POLL_SECONDS,
        what=f"{targets} among Prometheus' active Alertmanagers",
        details=lambda: f"active: {active()}",
    )


@on_stack
def test_posted_readings_reach_prometheus(stack: ComposeStack, timings: Timings) -> None:
    job, instance = _agent_target()
    sample = _sample_name(ACCEPTED_FAMILY)
    # Read at the source: any earlier test's readings are counted, scraped or not.
    before = _agent_counter(stack, sample)
    user = f"compose-{secrets.token_hex(4)}"
    batch = [reading(f"2026-11-{day:02d}T07:00:00+00:00") for day in range(1, 1 + READINGS_POSTED)]
    path = router.url_path_for(INGEST_ROUTE_NAME, user_id=user)
    response = httpx.post(
        f"{stack.agent_url}{path}",
        json={"readings": batch},
        headers=stack.api_headers,
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.json()["accepted"] == READINGS_POSTED

    promql = f'{sample}{{job="{job}",instance="{instance}"}}'
    want = before + READINGS_POSTED

    def value() -> float | None:
        series = _series(stack, promql)
        return float(series[0]["value"][1]) if len(series) == 1 else None

    with timings.stage(f"{READINGS_POSTED} posted readings visible in Prometheus"):
        wait_until(
            lambda: value() == want,
            timeout=SCRAPE_DEADLINE,
            interval=dockerstack.POLL_SECONDS,
            what=f"{promql} == {want}",
            details=lambda: f"last value: {value()}",
        )


@on_stack
def test_request_traces_are_stored_as_exemplars(stack: ComposeStack) -> None:
    """Exemplar storage is on: a request's trace id, sent as its W3C parent, comes
    back from Prometheus as the exemplar of the agent's latency histogram."""
    job, _ = _agent_target()
    trace_id = secrets.token_hex(16)
    headers = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01", **stack.api_headers}
    path = router.url_path_for(INGEST_ROUTE_NAME, user_id=f"compose-{secrets.token_hex(4)}")
    response = httpx.post(
        f"{stack.agent_url}{path}", json={"readings": [reading()]}, headers=headers, timeout=10
    )
    assert response.status_code == 201, response.text

    bucket = f'{LATENCY_FAMILY}_bucket{{job="{job}"}}'
    flags = stack.prometheus_api("status/flags")
    assert "exemplar-storage" in flags["enable-feature"].split(",")

    def trace_ids() -> set[str]:
        now = time.time()
        found = stack.prometheus_api(
            "query_exemplars", query=bucket, start=str(now - 3600), end=str(now + 60)
        )
        return {
            exemplar["labels"].get("trace_id", "")
            for series in found
            for exemplar in series["exemplars"]
        }

    wait_until(
        lambda: trace_id in trace_ids(),
        timeout=SCRAPE_DEADLINE,
        interval=dockerstack.POLL_SECONDS,
        what=f"an exemplar with trace_id {trace_id} on {bucket}",
        details=lambda: f"trace ids stored: {sorted(trace_ids())}",
    )


@on_stack
def test_retention_in_effect_is_the_env_example_values(stack: ComposeStack) -> None:
    pinned = env_example()
    time_bound, size_bound = (
        pinned["PROMETHEUS_RETENTION_TIME"],
        pinned["PROMETHEUS_RETENTION_SIZE"],
    )
    flags = stack.prometheus_api("status/flags")
    assert flags["storage.tsdb.retention.time"] == time_bound
    # Prometheus prints the size back normalised (5GB -> 5GiB: the same bytes).
    assert _bytes(flags["storage.tsdb.retention.size"]) == _bytes(size_bound)
    # What the TSDB actually enforces, from Prometheus' own metrics.
    own = {
        sample.name: sample.value
        for family in text_string_to_metric_families(stack.fetch(PROMETHEUS, "/metrics"))
        for sample in family.samples
    }
    assert own["prometheus_tsdb_retention_limit_seconds"] == _seconds(time_bound)
    assert own["prometheus_tsdb_retention_limit_bytes"] == _bytes(size_bound)


def _backup_tool(stack: ComposeStack, *args: str) -> subprocess.CompletedProcess[str]:
    """scripts/backup.sh against this stack's project, as an operator runs it (with
    .env.example's settings in the environment, where compose finds them as in .env)."""
    return subprocess.run(
        ["bash", str(REPO_ROOT / paths.BACKUP_SCRIPT), *args, "--project", stack.project],
        cwd=REPO_ROOT,
        env={**stack.environment(), **env_example()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=120, check=check
    )


def _exists(kind: str, ref: str) -> bool:
    return _docker(kind, "inspect", ref, check=False).returncode == 0


# Ages no image or build cache reaches: the test must not prune the engine's other
# images (no registry can give them back), only what `clean` always prunes.
NEVER = "876000h"


@on_stack
def test_storage_clean_on_the_real_engine(stack: ComposeStack, tmp_path: Path) -> None:
    """scripts/storage-management.sh clean against the real daemon, next to the running
    stack: a stopped container and a dangling image made here go; every named volume and
    every image of the stack stay; the metrics file reports success. `clean` prunes every
    stopped container and dangling image of the engine, so only this test's own objects
    and the stack's are asserted about."""
    label = f"org.neuros.test-clean={secrets.token_hex(6)}"
    image = stack.inspect(AGENT, "{{.Config.Image}}")
    stopped = _docker(
        "create", "--label", label, "--entrypoint", "true", "--network", "none", image
    ).stdout.strip()
    _docker("start", "--attach", stopped)
    # The image declares VOLUME /data, so the container has an anonymous volume.
    mounts = '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}'
    anonymous = _docker("inspect", "-f", mounts, stopped).stdout.split()
    dangling = ""
    try:
        assert _docker("inspect", "-f", "{{.State.Status}}", stopped).stdout.strip() == "exited"
        # An image without a tag, used by no container: what a rebuild leaves behind.
        dangling = _docker("commit", "--change", f"LABEL {label}", stopped).stdout.strip()
        listed = _docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout
        assert dangling in listed.split()
        services = list(SERVICES)
        containers = {service: stack.container_id(service) for service in services}
        stack_images = {service: stack.inspect(service, "{{.Image}}") for service in services}
        tags = {service: stack.inspect(service, "{{.Config.Image}}") for service in services}
        volumes = stack.project_volumes()
        assert volumes, "the stack has named volumes"
        metrics = tmp_path / "textfile" / "neuros_storage.prom"
        (tmp_path / "logs").mkdir()
        started = time.time()

        result = subprocess.run(
            [
                "bash", str(STORAGE_SCRIPT), "clean",
                "--metrics-file", str(metrics),
                "--log-dir", str(tmp_path / "logs"),
                "--lock-file", str(tmp_path / "storage.lock"),
                "--image-age", NEVER,
                "--build-cache-age", NEVER,
            ],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip

        assert result.returncode == 0, result.stdout + result.stderr
        assert not _exists("container", stopped), "the stopped container was not pruned"
        assert not _exists("image", dangling), "the dangling image was not pruned"
        for service in services:
            assert stack.inspect(service, "{{.State.Running}}") == "true", service
            assert stack.container_id(service) == containers[service]
            assert _exists("image", stack_images[service]), service
            assert _exists("image", tags[service]), service
        assert sorted(stack.project_volumes()) == sorted(volumes)
        # Not even the pruned container's anonymous volume: clean never removes one.
        assert anonymous, "the test container has an anonymous volume"
        assert all(_exists("volume", name) for name in anonymous), anonymous
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(metrics.read_text())
            for sample in family.samples
        }
        assert samples["neuros_storage_cleanup_success"] == 1
        assert samples["neuros_storage_cleanup_last_success_timestamp_seconds"] >= int(started)
        assert samples["neuros_storage_cleanup_reclaimed_bytes"] >= 0
        # The stack still serves.
        health = httpx.get(f"{stack.agent_url}/ready", timeout=10)
        assert health.status_code == 200, health.text
    finally:
        if stopped:
            _docker("rm", "-f", "-v", stopped, check=False)
        if dangling:
            _docker("rmi", "-f", dangling, check=False)
        for name in anonymous:
            _docker("volume", "rm", name, check=False)


# Last on the shared stack: it stops and restarts the agent.
@on_stack
def test_backup_and_restore_of_the_running_agents_volume(
    stack: ComposeStack, tmp_path: Path
) -> None:
    user = f"compose-backup-{secrets.token_hex(4)}"
    path = router.url_path_for(INGEST_ROUTE_NAME, user_id=user)
    batch = [reading(f"2026-11-{day:02d}T07:00:00+00:00") for day in range(1, 6)]
    posted = httpx.post(
        f"{stack.agent_url}{path}", json={"readings": batch}, headers=stack.api_headers, timeout=10
    )
    assert posted.status_code == 201, posted.text
    kpis_path = kpis_router.url_path_for(get_kpis.__name__, user_id=user)
    kpis = httpx.get(f"{stack.agent_url}{kpis_path}", headers=stack.api_headers, timeout=10)
    backups = tmp_path / "backups"

    made = _backup_tool(stack, "backup", "--backup-dir", str(backups))

    assert made.returncode == 0, made.stdout + made.stderr
    (archive,) = backups.glob("neuros-sqlite-*.tar.gz")
    verified = _backup_tool(stack, "verify", str(archive))
    assert verified.returncode == 0, verified.stderr
    refused = _backup_tool(stack, "restore", str(archive), "--force")
    assert refused.returncode == 1
    assert "running" in refused.stderr, refused.stderr

    # The drill on the real volume: stop, restore over it, start, read back.
    stack.compose("stop", AGENT)
    restored = _backup_tool(stack, "restore", str(archive), "--force")
    stack.compose("start", AGENT)
    stack.wait_healthy(AGENT, timeout=HEALTHY_DEADLINE)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    again = httpx.get(f"{stack.agent_url}{kpis_path}", headers=stack.api_headers, timeout=10)
    assert again.status_code == 200, again.text
    assert again.json() == kpis.json()


@on_stack
def test_down_removes_containers_and_volumes(docker_stack: StartStack, timings: Timings) -> None:
    with timings.stage("separate stack: up"):
        own = docker_stack(SERVICES)
    containers, volumes = own.project_containers(), own.project_volumes()
    assert len(containers) == len(SERVICES)
    named = {
        str(volume).split(":")[0]
        for service in SERVICES
        for volume in service_as_written(service).get("volumes", [])
        if not str(volume).startswith((".", "/", "$"))
    }
    assert sorted(volumes) == sorted(f"{own.project}_{name}" for name in named)
    with timings.stage("separate stack: down -v --remove-orphans"):
        own.down()
    assert own.project_containers() == []
    assert own.project_volumes() == []


def test_docker_tests_are_skipped_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEUROS_TEST_DOCKER", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="NEUROS_TEST_DOCKER=1"):
        dockerstack.require_docker()


@pytest.mark.parametrize(("variable", "value"), [("CI", "true"), ("NEUROS_TEST_DOCKER", "1")])
def test_docker_tests_fail_when_asked_for_without_docker(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.delenv("NEUROS_TEST_DOCKER", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI
    with pytest.raises(pytest.fail.Exception, match="docker CLI is not on PATH"):
        dockerstack.require_docker()
