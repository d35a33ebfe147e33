"""The scale override brought up for real: two agent replicas, HAProxy, PostgreSQL and
Prometheus (``docker compose -f docker-compose.yml -f docker-compose.scale.yml up``).

One bring-up per module, then each test proves one property of the running stack:

- Prometheus scrapes every replica: ``dns_sd_configs`` on the agent's service name
  finds one target per container (its address on the metrics port), all up;
- requests through the load balancer reach every replica: each replica's own
  ``neuros_http_requests_total`` for the ingest route grew, and together they count
  exactly the requests sent (no request lost or answered twice); Prometheus shows
  the same per instance;
- a reading written through one replica (addressed directly, inside its container)
  is read through the other: the replicas share the database;
- the population gauge, which every replica reads from the shared database, is
  counted once by the recording rule ``job:neuros_users:count`` (equal to the users
  with a band in the database) while a naive sum over the instances doubles it, and
  the per-request counters sum across the replicas to exactly the requests sent;
- the chaos experiment ``kill-replica`` passes: one replica SIGKILLed under load
  through the load balancer, no request failed, the replica is back, Prometheus saw
  it down and up again, no acknowledged reading lost; its facts are checked here too.

A test override (tests/stack/chaos/scale.override.yml) gives Prometheus a config generated
from prometheus/prometheus-scale.yml with 1 s scrapes, evaluations and DNS refresh,
and the agent 3 s of start-up, so that a replica's short outage is scraped (at the
production 15 s it mostly is not; see the experiment's description).

It runs wherever Docker tests run, CI included. The images come from
scripts/docker-setup.sh. Smaller tests check the two local stand-in images on their
own: HAProxy accepts haproxy/haproxy.cfg, and the postgres image refuses to
initialise without a password, as the upstream one does.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import yaml
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from neuros.api.kpis import get_kpis
from neuros.api.kpis import router as kpis_router
from neuros.api.readings import INGEST_ROUTE_NAME, router
from neuros.auth.admin_token import TOKEN_VARIABLE
from neuros.config import DEFAULT_PORT, METRICS_PORT
from neuros.metrics import build_metrics
from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support import dockerstack
from tests.support.agent import reading
from tests.support.compose_model import (
    AGENT,
    COMPOSE_FILE,
    HAPROXY_CONFIG,
    HAPROXY_CONFIG_TARGET,
    LOAD_BALANCER,
    POSTGRES,
    POSTGRES_PASSWORD_VARIABLE,
    REPLICAS_VARIABLE,
    SCALE_FILE,
)
from tests.support.dockerstack import ComposeStack, StartStack, env_example
from tests.support.processes import wait_until

Test = TypeVar("Test", bound=Callable[..., None])


def on_docker(test: Test) -> Test:
    """Marks a test that needs Docker (and is slow)."""
    return cast(Test, pytest.mark.slow(pytest.mark.docker(test)))


PROMETHEUS = "prometheus"
SERVICES = (POSTGRES, AGENT, LOAD_BALANCER, PROMETHEUS)
REPLICAS = 2
HEALTHY_DEADLINE = 180.0
# Generous: a few scrapes and DNS refreshes, also in production's 15 s and 5 s.
SCRAPE_DEADLINE = 90.0
REQUESTS = 20
SCALE_PROMETHEUS = REPO_ROOT / paths.PROMETHEUS_SCALE_CONFIG
TEST_OVERRIDE = REPO_ROOT / "tests" / "stack" / "chaos" / "scale.override.yml"
TEST_CONFIG_VARIABLE = "SCALE_PROMETHEUS_CONFIG"
FAST = "1s"
CHAOS_RUNNER = REPO_ROOT / paths.CHAOS_RUNNER
KILL_REPLICA = "kill-replica"
# Bounds of the real kill-replica run (its configuration's env keys); the docker
# healthcheck runs every 15 s, hence the healthy bound.
KILL_REPLICA_ENV = {
    "CHAOS_REPLICA": "1",
    "CHAOS_MIN_REPLICAS": str(REPLICAS),
    "CHAOS_RECOVER_WITHIN_S": "30",
    "CHAOS_DETECT_WITHIN_S": "30",
    "CHAOS_RESCRAPE_WITHIN_S": "30",
    "CHAOS_HEALTHY_WITHIN_S": "60",
}
USERS_RULE = "job:neuros_users:count"
USERS_FAMILY = next(iter(build_metrics().users_by_readiness.describe())).name
POPULATION_USERS = 5
READINGS_PER_USER = 2
# The route label of the ingest requests: its template, as neuros.metrics records it.
INGEST_ROUTE = next(
    route.path
    for route in router.routes
    if isinstance(route, APIRoute) and route.name == INGEST_ROUTE_NAME
)
REQUESTS_FAMILY = next(iter(build_metrics().http_requests.describe())).name


def fast_prometheus_config(path: Path) -> Path:
    """prometheus/prometheus-scale.yml with 1 s scrapes, evaluations and DNS refresh of
    the agent's job; everything else, rule files included, as generated."""
    config = yaml.safe_load(SCALE_PROMETHEUS.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=FAST, evaluation_interval=FAST)
    # A refresh landing in the ~0.1 s Docker's DNS drops a restarting replica would
    # drop its target before any scrape failed; 1 s rediscovers it while it still
    # refuses (tests/stack/chaos/scale.override.yml), so its up == 0 is always recorded.
    discovery = [
        sd
        for job in config["scrape_configs"]
        if job["job_name"] == AGENT
        for sd in job.get("dns_sd_configs", [])
    ]
    assert len(discovery) == 1, f"{SCALE_PROMETHEUS.name}: {discovery}"
    discovery[0]["refresh_interval"] = FAST
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    # Prometheus runs as nobody; the bind mount keeps the mode.
    path.chmod(0o644)
    return path


@pytest.fixture(scope="module")
def stack(
    docker_stack_module: StartStack, tmp_path_factory: pytest.TempPathFactory
) -> ComposeStack:
    config = fast_prometheus_config(tmp_path_factory.mktemp("scale") / "prometheus.yml")
    started = docker_stack_module(
        SERVICES,
        env={
            POSTGRES_PASSWORD_VARIABLE: secrets.token_urlsafe(24),
            REPLICAS_VARIABLE: str(REPLICAS),
            TEST_CONFIG_VARIABLE: str(config),
        },
        override_files=(SCALE_FILE, TEST_OVERRIDE),
    )
    started.wait_healthy(POSTGRES, timeout=HEALTHY_DEADLINE)
    for replica in replicas(started):
        wait_healthy_container(started, replica)
    started.wait_healthy(LOAD_BALANCER, timeout=HEALTHY_DEADLINE)
    return started


# --- the replicas: several containers of one service --------------------------------


def docker(*argv: str, timeout: float = dockerstack.COMMAND_TIMEOUT) -> str:
    result = subprocess.run(
        ["docker", *argv], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(f"`docker {' '.join(argv)}` failed: {result.stderr.strip()}")
    return result.stdout


def replicas(stack: ComposeStack) -> list[str]:
    """The agent's container ids, in a stable order."""
    ids = sorted(stack.compose("ps", "-q", AGENT).stdout.split())
    assert len(ids) == REPLICAS, f"expected {REPLICAS} agent containers, found {ids}"
    return ids


def wait_healthy_container(stack: ComposeStack, container: str) -> None:
    def healthy() -> bool:
        state = docker("inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", container)
        if state.split()[0] in ("exited", "dead"):
            raise AssertionError(f"replica {container[:12]} is {state}:\n{stack.logs(AGENT)}")
        return state.split()[1] == "healthy"

    wait_until(
        healthy,
        HEALTHY_DEADLINE,
        f"replica {container[:12]} healthy",
        interval=dockerstack.POLL_SECONDS,
        details=lambda: stack.logs(AGENT, POSTGRES),
    )


def address(container: str) -> str:
    """The container's address on the compose network (what Docker's DNS returns)."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return docker("inspect", "-f", template, container).strip()


# Runs inside a replica (its image has python3, no curl): one HTTP request to itself,
# printing {"status": ..., "body": ...}. argv: method, url, token, JSON body or "".
_REQUEST = """
import json, sys, urllib.error, urllib.request as u
method, url, token, body = sys.argv[1:5]
request = u.Request(url, method=method, data=body.encode() or None,
                    headers={"Authorization": "Bearer " + token,
                             "Content-Type": "application/json"})
try:
    with u.urlopen(request, timeout=10) as answer:
        status, text = answer.status, answer.read().decode()
except urllib.error.HTTPError as error:
    status, text = error.code, error.read().decode()
print(json.dumps({"status": status, "body": text}))
"""


def call_replica(
    stack: ComposeStack, container: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """``method path`` on one replica's API port, from inside that replica."""
    payload = "" if body is None else json.dumps(body)
    url = f"http://127.0.0.1:{DEFAULT_PORT}{path}"
    out = docker(
        "exec", container, "python3", "-c", _REQUEST, method, url, stack.api_token, payload
    )
    answer = json.loads(out)
    text = answer["body"]
    return int(answer["status"]), json.loads(text) if text else None


def replica_ingests(container: str) -> float:
    """This replica's own count of 201 answers on the ingest route (its /metrics)."""
    script = (
        "import sys, urllib.request as u;"
        " sys.stdout.write(u.urlopen(sys.argv[1], timeout=10).read().decode())"
    )
    text = docker(
        "exec", container, "python3", "-c", script, f"http://127.0.0.1:{METRICS_PORT}/metrics"
    )
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == f"{REQUESTS_FAMILY}_total"
        and sample.labels.get("route") == INGEST_ROUTE
        and sample.labels.get("method") == "POST"
        and sample.labels.get("status") == "201"
    )


def query(stack: ComposeStack, promql: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = stack.prometheus_api("query", query=promql)["result"]
    return result


def scalar(stack: ComposeStack, promql: str) -> float | None:
    """The one sample of an instant query; None when it has none."""
    result = query(stack, promql)
    assert len(result) <= 1, f"{promql}: {result}"
    return float(result[0]["value"][1]) if result else None


def by_instance(stack: ComposeStack, promql: str) -> dict[str, float]:
    return {s["metric"]["instance"]: float(s["value"][1]) for s in query(stack, promql)}


def replica_number(container: str) -> int:
    return int(
        docker(
            "inspect",
            "-f",
            '{{index .Config.Labels "com.docker.compose.container-number"}}',
            container,
        )
    )


def users_with_a_band(stack: ComposeStack) -> int:
    """Users whose latest snapshot has a readiness band, counted in PostgreSQL itself
    (user_state), not from the per-band counters the agents export."""
    environment = stack.rendered(POSTGRES)["services"][POSTGRES]["environment"]
    out = docker(
        "exec", "-e", f"PGPASSWORD={stack.env[POSTGRES_PASSWORD_VARIABLE]}",
        stack.container_id(POSTGRES), "psql", "--host=127.0.0.1",
        f"--username={environment['POSTGRES_USER']}", f"--dbname={environment['POSTGRES_DB']}",
        "--no-password", "--tuples-only", "--no-align",
        "--command", "SELECT count(*) FROM user_state WHERE readiness IS NOT NULL",
    )  # fmt: skip
    return int(out.strip())


def ingest_through_the_load_balancer(stack: ComposeStack, user: str, at: str) -> None:
    path = router.url_path_for(INGEST_ROUTE_NAME, user_id=user)
    response = httpx.post(
        f"{stack.agent_url}{path}",
        json={"readings": [reading(at)]},
        headers=stack.api_headers,
        timeout=15,
    )
    assert response.status_code == 201, response.text


# --- the running stack --------------------------------------------------------------


@on_docker
def test_prometheus_scrapes_every_replica(stack: ComposeStack) -> None:
    want = {f"{address(container)}:{METRICS_PORT}" for container in replicas(stack)}
    promql = f'up{{job="{AGENT}"}} == 1'

    def every_replica_up() -> bool:
        return {series["metric"]["instance"] for series in query(stack, promql)} == want

    wait_until(
        every_replica_up,
        SCRAPE_DEADLINE,
        f"{promql} for exactly {sorted(want)}",
        interval=dockerstack.POLL_SECONDS,
        details=lambda: json.dumps(query(stack, f'up{{job="{AGENT}"}}')),
    )


@on_docker
def test_requests_through_the_load_balancer_reach_every_replica(stack: ComposeStack) -> None:
    containers = replicas(stack)
    before = {container: replica_ingests(container) for container in containers}
    for number in range(REQUESTS):
        path = router.url_path_for(INGEST_ROUTE_NAME, user_id=f"scale-{secrets.token_hex(4)}")
        response = httpx.post(
            f"{stack.agent_url}{path}",
            json={"readings": [reading()]},
            headers=stack.api_headers,
            timeout=15,
        )
        assert response.status_code == 201, f"request {number}: {response.text}"

    grown = {c: replica_ingests(c) - before[c] for c in containers}
    assert all(count > 0 for count in grown.values()), f"a replica got nothing: {grown}"
    assert sum(grown.values()) == REQUESTS, f"{REQUESTS} requests, replicas counted {grown}"

    # The same, as Prometheus sees it: one ingest series per replica, each counting.
    promql = (
        f'sum by (instance) ({REQUESTS_FAMILY}_total{{job="{AGENT}",'
        f'route="{INGEST_ROUTE}",method="POST",status="201"}}) > 0'
    )
    want = {f"{address(container)}:{METRICS_PORT}" for container in containers}
    wait_until(
        lambda: {s["metric"]["instance"] for s in query(stack, promql)} == want,
        SCRAPE_DEADLINE,
        f"ingests on every replica in Prometheus ({sorted(want)})",
        interval=dockerstack.POLL_SECONDS,
        details=lambda: json.dumps(query(stack, promql)),
    )


@on_docker
def test_a_reading_written_through_one_replica_is_read_through_the_other(
    stack: ComposeStack,
) -> None:
    writer, reader = replicas(stack)
    user = f"scale-{secrets.token_hex(4)}"
    kpis_path = kpis_router.url_path_for(get_kpis.__name__, user_id=user)

    status, _ = call_replica(stack, reader, "GET", kpis_path)
    assert status == 404, f"user {user} has data before any reading ({status})"

    ingest = router.url_path_for(INGEST_ROUTE_NAME, user_id=user)
    status, written = call_replica(stack, writer, "POST", ingest, {"readings": [reading()]})
    assert status == 201, f"write through {writer[:12]}: {status} {written}"

    status, read = call_replica(stack, reader, "GET", kpis_path)
    assert status == 200, f"read through {reader[:12]}: {status} {read}"
    assert read == written["kpis"], "the other replica reads other KPIs than were written"


@on_docker
def test_population_is_counted_once_and_requests_sum_across_replicas(
    stack: ComposeStack,
) -> None:
    """Every replica exports the whole population (read from the shared database): the
    recording rule counts it once, a naive sum over the instances twice. Each request
    is counted by the one replica that served it: the sum over instances is exact."""
    loaded = {
        rule["name"] for group in stack.prometheus_api("rules")["groups"] for rule in group["rules"]
    }
    assert USERS_RULE in loaded, "the scale stack's Prometheus does not load prometheus/rules"
    containers = replicas(stack)
    ingests = (
        f'sum({REQUESTS_FAMILY}_total{{job="{AGENT}",route="{INGEST_ROUTE}",'
        f'method="POST",status="201"}})'
    )
    # Nothing else sends ingests: Prometheus catches up with the replicas' own counts.
    before = sum(replica_ingests(c) for c in containers)
    wait_until(
        lambda: scalar(stack, ingests) == before,
        SCRAPE_DEADLINE,
        f"{ingests} == {before}",
        interval=dockerstack.POLL_SECONDS,
        details=lambda: json.dumps(query(stack, ingests)),
    )

    now = datetime.now(UTC).replace(microsecond=0)
    for _ in range(POPULATION_USERS):
        user = f"scale-{secrets.token_hex(4)}"
        for minutes in range(READINGS_PER_USER):
            ingest_through_the_load_balancer(
                stack, user, (now - timedelta(minutes=minutes)).isoformat()
            )
    sent = POPULATION_USERS * READINGS_PER_USER
    assert sum(replica_ingests(c) for c in containers) == before + sent
    wait_until(
        lambda: scalar(stack, ingests) == before + sent,
        SCRAPE_DEADLINE,
        f"{ingests} == {before} + {sent} requests sent",
        interval=dockerstack.POLL_SECONDS,
        details=lambda: json.dumps(query(stack, ingests)),
    )

    users = users_with_a_band(stack)
    assert users >= POPULATION_USERS, users
    want = {f"{address(c)}:{METRICS_PORT}": float(users) for c in containers}
    per_instance = f'sum by (instance) ({USERS_FAMILY}{{job="{AGENT}"}})'
    naive = f'sum({USERS_FAMILY}{{job="{AGENT}"}})'
    rule = f'{USERS_RULE}{{job="{AGENT}"}}'

    def counted_once() -> bool:
        # Each replica refreshes its gauge from the database every few seconds.
        return (
            by_instance(stack, per_instance) == want
            and scalar(stack, rule) == users
            and scalar(stack, naive) == REPLICAS * users
        )

    wait_until(
        counted_once,
        SCRAPE_DEADLINE,
        f"{rule} == {users} users in the database, each replica's gauge too, naive sum 2x",
        interval=dockerstack.POLL_SECONDS,
        details=lambda: json.dumps(
            {q: query(stack, q) for q in (per_instance, naive, rule)}, sort_keys=True
        ),
    )


def run_kill_replica(stack: ComposeStack, report: Path) -> subprocess.CompletedProcess[str]:
    """chaos/run-chaos-test.sh --yes kill-replica against the module's stack, through
    the load balancer's published port, with the stack's admin token."""
    environ = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("CHAOS_")}
    environ.update(KILL_REPLICA_ENV)
    environ.update(
        NEUROS_PUBLISHED_PORT=str(stack.published_port), **{TOKEN_VARIABLE: stack.api_token}
    )
    return subprocess.run(
        [str(CHAOS_RUNNER), "--yes", "--project", stack.project, "--report", str(report),
         KILL_REPLICA],
        capture_output=True, text=True, env=environ, timeout=300, check=False, cwd=REPO_ROOT,
    )  # fmt: skip


@on_docker
def test_kill_replica_passes(stack: ComposeStack, tmp_path: Path) -> None:
    victim = next(c for c in replicas(stack) if replica_number(c) == 1)
    restarts_before = int(docker("inspect", "-f", "{{.RestartCount}}", victim))
    instance = f"{address(victim)}:{METRICS_PORT}"

    result = run_kill_replica(stack, tmp_path / "kill-replica")
    run = json.loads((tmp_path / "kill-replica.json").read_text())["experiments"][0]
    assert result.returncode == 0, result.stdout + result.stderr
    assert run["verdict"]["pass"] is True, run["verdict"]
    for phase in ("hypothesis_before", "hypothesis_after"):
        assert run[phase]["met"], run[phase]
        assert all(probe["ok"] for probe in run[phase]["probes"]), run[phase]
    method = {a["name"]: a for a in run["method"]}
    assert all(a["ok"] for a in run["method"]), [a for a in run["method"] if not a["ok"]]
    assert [r["ok"] for r in run["rollbacks"]] == [True]

    # Each hypothesis, from the report: no failed request, all acknowledged read back.
    load = method["load-through-the-load-balancer"]["value"]
    assert load["failures"] == 0, load
    back = method["no-acknowledged-reading-lost"]["value"]
    assert back["lost"] == 0, back
    assert back["acknowledged"] == load["requests"] > 0, (back, load)
    kill = method["sigkill-replica-host-pid"]["output"]
    assert kill["container"] == victim[:12], kill
    assert kill["replica"] == 1
    assert kill["process"] == "python3", kill

    # The same facts, independently: same container restarted by its policy, healthy.
    assert docker("inspect", "-f", "{{.RestartCount}}", victim).strip() == str(restarts_before + 1)
    assert docker("inspect", "-f", "{{.State.Health.Status}}", victim).strip() == "healthy"
    # Prometheus' raw samples of that instance: a 0 after the kill, then a 1.
    fault = datetime.fromisoformat(run["marks"]["fault"]).timestamp()
    window = int(datetime.now(UTC).timestamp() - fault) + 10
    series = query(stack, f'up{{job="{AGENT}",instance="{instance}"}}[{window}s]')
    assert len(series) == 1, series
    samples = [(float(t), v) for t, v in series[0]["values"] if float(t) >= fault]
    down = [t for t, v in samples if v == "0"]
    assert down, f"no up == 0 sample of {instance} after the kill: {samples}"
    up_again = [t for t, v in samples if v == "1" and t > down[0]]
    assert up_again, f"no up == 1 sample of {instance} after it was down: {samples}"
    measures, bounds = run["measures"], run["bounds"]
    for name in ("time_to_recover", "time_to_detect", "time_to_healthy", "time_to_rescrape"):
        assert 0 < measures[name] <= float(bounds[name]), (name, measures, bounds)
    print(
        f"kill-replica: {json.dumps(measures)}; {load['requests']} requests, "
        f"{load['failures']} failed, p95 {load['p95_ms']} ms; Prometheus saw "
        f"{len(down)} down scrape(s), down for {up_again[0] - down[0]:.1f} s"
    )


# Last on the shared stack: it stops the agents and restores over their database.
@on_docker
def test_backup_and_restore_of_the_shared_postgresql(stack: ComposeStack, tmp_path: Path) -> None:
    user = f"scale-backup-{secrets.token_hex(4)}"
    ingest_through_the_load_balancer(stack, user, "2026-11-20T07:00:00+00:00")
    kpis_path = kpis_router.url_path_for(get_kpis.__name__, user_id=user)
    kpis = httpx.get(f"{stack.agent_url}{kpis_path}", headers=stack.api_headers, timeout=15)
    assert kpis.status_code == 200, kpis.text
    users = users_with_a_band(stack)
    backups = tmp_path / "backups"
    # As an operator runs it: the two compose files, .env's settings in the environment.
    project = ["--project", stack.project, "--compose-file", str(COMPOSE_FILE)]
    project += ["--compose-file", str(SCALE_FILE)]
    environment = {**stack.environment(), **env_example()}

    def backup_tool(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(REPO_ROOT / paths.BACKUP_SCRIPT), *args, *project],
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    made = backup_tool("backup", "--backup-dir", str(backups))

    assert made.returncode == 0, made.stdout + made.stderr
    (archive,) = backups.glob("neuros-postgresql-*.tar.gz")
    verified = backup_tool("verify", str(archive))
    assert verified.returncode == 0, verified.stderr
    refused = backup_tool("restore", str(archive), "--force")
    assert refused.returncode == 1
    assert "running" in refused.stderr, refused.stderr

    stack.compose("stop", AGENT)
    restored = backup_tool("restore", str(archive), "--force")
    stack.compose("start", AGENT)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    for replica in replicas(stack):
        wait_healthy_container(stack, replica)
    assert users_with_a_band(stack) == users
    wait_until(
        lambda: httpx.get(f"{stack.agent_url}/ready", timeout=5).status_code == 200,
        HEALTHY_DEADLINE,
        "the load balancer serves again",
        interval=dockerstack.POLL_SECONDS,
    )
    again = httpx.get(f"{stack.agent_url}{kpis_path}", headers=stack.api_headers, timeout=15)
    assert again.status_code == 200, again.text
    assert again.json() == kpis.json()


# --- the local stand-in images, on their own ----------------------------------------


@on_docker
def test_haproxy_image_accepts_the_config() -> None:
    dockerstack.require_docker()
    image = env_example()["HAPROXY_IMAGE"]
    out = subprocess.run(
        [
            "docker", "run", "--rm", "--network", "none",
            "-v", f"{HAPROXY_CONFIG}:{HAPROXY_CONFIG_TARGET}:ro",
            image, "haproxy", "-c", "-f", HAPROXY_CONFIG_TARGET,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, f"{image} rejects {HAPROXY_CONFIG.name}: {out.stderr}"
    assert "ALERT" not in out.stderr, out.stderr
    assert "WARNING" not in out.stderr, out.stderr


@on_docker
def test_postgres_image_refuses_to_initialise_without_a_password() -> None:
    dockerstack.require_docker()
    image = env_example()["POSTGRES_IMAGE"]
    out = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode != 0, f"{image} started without POSTGRES_PASSWORD:\n{out.stdout}"
    assert "POSTGRES_PASSWORD" in out.stderr, out.stderr


@on_docker
def test_postgres_service_initialises_and_accepts_its_password(
    docker_stack: StartStack,
) -> None:
    """The override's postgres alone: initdb as uid 999 with every capability dropped,
    healthy by pg_isready, and a password login over TCP to POSTGRES_DB."""
    password = secrets.token_urlsafe(24)
    pg = docker_stack(
        (POSTGRES,), env={POSTGRES_PASSWORD_VARIABLE: password}, override_files=(SCALE_FILE,)
    )
    pg.wait_healthy(POSTGRES, timeout=HEALTHY_DEADLINE)
    environment = pg.rendered(POSTGRES)["services"][POSTGRES]["environment"]
    user, database = environment["POSTGRES_USER"], environment["POSTGRES_DB"]
    sql = "SELECT current_user || ' ' || current_database()"
    out = subprocess.run(
        [
            "docker", "exec", "-e", f"PGPASSWORD={password}", pg.container_id(POSTGRES),
            "psql", "--host=127.0.0.1", f"--username={user}", f"--dbname={database}",
            "--no-password", "--tuples-only", "--no-align", "--command", sql,
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{user} {database}"
    wrong = subprocess.run(
        [
            "docker", "exec", "-e", "PGPASSWORD=wrong", pg.container_id(POSTGRES),
            "psql", "--host=127.0.0.1", f"--username={user}", f"--dbname={database}",
            "--no-password", "--command", "SELECT 1",
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert wrong.returncode != 0, "a wrong password logged in over TCP"
    assert "password authentication failed" in wrong.stderr, wrong.stderr
