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
  is read through the other: the replicas share the database.

It runs wherever Docker tests run, CI included. The images come from
scripts/docker-setup.sh. Smaller tests check the two local stand-in images on their
own: HAProxy accepts haproxy/haproxy.cfg, and the postgres image refuses to
initialise without a password, as the upstream one does.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable
from typing import Any, TypeVar, cast

import httpx
import pytest
import yaml
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from neuros.api.kpis import get_kpis
from neuros.api.kpis import router as kpis_router
from neuros.api.readings import INGEST_ROUTE_NAME, router
from neuros.config import DEFAULT_PORT, METRICS_PORT
from neuros.metrics import build_metrics
from tests import dockerstack
from tests.compose_model import (
    AGENT,
    HAPROXY_CONFIG,
    HAPROXY_CONFIG_TARGET,
    LOAD_BALANCER,
    POSTGRES,
    POSTGRES_PASSWORD_VARIABLE,
    REPLICAS_VARIABLE,
    SCALE_FILE,
)
from tests.conftest import reading, wait_until
from tests.dockerstack import ComposeStack, StartStack, env_example

Test = TypeVar("Test", bound=Callable[..., None])


def on_docker(test: Test) -> Test:
    """Marks a test that needs Docker (and is slow)."""
    return cast(Test, pytest.mark.slow(pytest.mark.docker(test)))


docker_stack = dockerstack.docker_stack
docker_stack_module = dockerstack.docker_stack_module

PROMETHEUS = "prometheus"
SERVICES = (POSTGRES, AGENT, LOAD_BALANCER, PROMETHEUS)
REPLICAS = 2
HEALTHY_DEADLINE = 180.0
# dns_sd refresh (5 s in prometheus-scale.yml) plus a few scrape intervals (15 s).
SCRAPE_DEADLINE = 90.0
REQUESTS = 20
# The route label of the ingest requests: its template, as neuros.metrics records it.
INGEST_ROUTE = next(
    route.path
    for route in router.routes
    if isinstance(route, APIRoute) and route.name == INGEST_ROUTE_NAME
)
REQUESTS_FAMILY = next(iter(build_metrics().http_requests.describe())).name


@pytest.fixture(scope="module")
def stack(docker_stack_module: StartStack) -> ComposeStack:
    started = docker_stack_module(
        SERVICES,
        env={
            POSTGRES_PASSWORD_VARIABLE: secrets.token_urlsafe(24),
            REPLICAS_VARIABLE: str(REPLICAS),
        },
        override_files=(SCALE_FILE,),
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
    model = yaml.safe_load(pg.compose("config", POSTGRES).stdout)
    environment = model["services"][POSTGRES]["environment"]
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
