"""The real docker-compose.yml, brought up by tests on a real Docker engine.

:class:`ComposeStack` runs ``docker compose -p <unique project> --env-file .env.example
-f docker-compose.yml [-f override ...] up -d --no-deps <services>`` and always tears
it down with ``down -v --remove-orphans``. Images are never built or pulled here:
scripts/docker-setup.sh builds them (scripts/test.sh runs it when Docker tests are on).

Services that are not published (Prometheus, Alertmanager) are reached with
``docker exec <container> wget -qO- http://127.0.0.1:<port>/...``: it needs no route
from the test process to the compose network (the daemon may be remote, or the tests
may run in a container), only the wget every Prometheus image ships.

Every stack gets an API tokens folder of its own (a temporary one, mounted where the
compose file mounts ./secrets/neuros, via ``NEUROS_API_TOKENS_DIR``) holding one admin
token with every scope for every user: ``stack.api_token``, ``stack.api_headers``; a
test adds or revokes tokens with ``TokensFile(stack.tokens_file)`` and the running
agent reloads them. The agent serves /metrics only on its metrics port, inside the
compose network: ``stack.agent_metrics()`` reads it from within its container.

Docker tests are marked ``docker``. :func:`require_docker` skips them unless
``NEUROS_TEST_DOCKER=1`` or ``CI=true``, and fails them when they were asked for but
the engine is not usable. The fixtures ``docker_stack`` (one test) and
``docker_stack_module`` (one module), in tests/conftest.py, yield
``start(services, ...)`` from :func:`compose_stacks`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from neuros.auth.admin_token import bearer
from neuros.auth.tokens import ALL_USERS, Scope
from neuros.auth.tokens_file import TokensFile
from neuros.config import METRICS_PORT
from stacktools.compose import Model, rendered, service_as_written
from stacktools.paths import REPO_ROOT
from tests.support.compose_model import (
    AGENT,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    PASSWORD_VARIABLE,
    TOKENS_DIR_VARIABLE,
    read_env_file,
)
from tests.support.processes import free_port, wait_until
from tests.support.tooling import in_ci

SETUP_HINT = "run scripts/docker-setup.sh (scripts/test.sh --docker runs it)"
PROJECT_LABEL = "com.docker.compose.project"
# The compose file mounts ./secrets/alertmanager unless this is set: a test must not
# make Docker create that folder in the repository.
ALERTMANAGER_SECRETS_VARIABLE = "ALERTMANAGER_SECRETS_DIR"
ADMIN_TOKEN_NAME = "admin"  # noqa: S105 - a name
# Readable by the agent's uid (10001), which is not the test's: as scripts/setup.sh.
TOKENS_DIR_MODE = 0o755
COMMAND_TIMEOUT = 60.0
UP_DOWN_TIMEOUT = 180.0
POLL_SECONDS = 0.5


def docker_requested() -> bool:
    """Docker tests run with ``NEUROS_TEST_DOCKER=1`` and always in CI."""
    return os.environ.get("NEUROS_TEST_DOCKER") == "1" or in_ci()


def docker_problem() -> str | None:
    """Why Docker cannot run the stack here, or None when it can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not on PATH"
    checks = (
        (["docker", "info", "--format", "{{.ServerVersion}}"], "the Docker engine"),
        (["docker", "compose", "version"], "the Compose v2 plugin (docker compose)"),
    )
    for command, what in checks:
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=30, check=False
            )
        except subprocess.TimeoutExpired:
            return f"{what} does not answer (`{' '.join(command)}` timed out)"
        if result.returncode != 0:
            first = (result.stderr.strip() or result.stdout.strip()).splitlines()[:1]
            return f"{what} is not usable: {first[0] if first else 'no output'}"
    return None


def require_docker() -> None:
    """Skip unless Docker tests were asked for; fail if asked for but unusable."""
    if not docker_requested():
        pytest.skip("Docker tests are off: set NEUROS_TEST_DOCKER=1 (scripts/test.sh --docker)")
    problem = docker_problem()
    if problem is not None:
        pytest.fail(f"Docker tests were asked for, but {problem}: {SETUP_HINT}", pytrace=False)


def env_example() -> dict[str, str]:
    """The values the stack runs with: .env.example, the compose env file."""
    return read_env_file(ENV_EXAMPLE)


def exposed_port(service: str) -> int:
    """The one container port ``service`` lists under ``expose:``."""
    ports = [int(str(port).split("/")[0]) for port in service_as_written(service).get("expose", [])]
    if len(ports) != 1:
        raise AssertionError(f"{service}: expected one exposed port, found {ports}")
    return ports[0]


def tokens_file_name() -> str:
    """The tokens file's name in its folder, as the compose file tells the agent."""
    path = str(service_as_written(AGENT)["environment"]["NEUROS_API_TOKENS_FILE"])
    return path.rsplit("/", 1)[-1]


def _run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(command),
        cwd=REPO_ROOT,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{' '.join(command)}` failed (exit {result.returncode}):\n"
            f"{result.stderr.strip() or result.stdout.strip()}"
        )
    return result


@dataclass
class ComposeStack:
    """Some services of docker-compose.yml under a project name of their own."""

    services: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    override_files: Sequence[Path] = ()
    project: str = field(default_factory=lambda: f"neuros-test-{uuid.uuid4().hex[:10]}")
    published_port: int = field(default_factory=free_port)
    # The compose file refuses to start without one.
    grafana_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _secrets_dir: Path | None = None
    _tokens_dir: Path | None = None
    # The admin token of the stack's tokens file (every scope, every user), set by up().
    api_token: str = ""
    _containers: dict[str, str] = field(default_factory=dict)
    _is_up: bool = False

    @property
    def is_up(self) -> bool:
        return self._is_up

    @property
    def agent_url(self) -> str:
        """The agent's published port on the host."""
        return f"http://127.0.0.1:{self.published_port}"

    @property
    def api_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <api_token>``."""
        if not self.api_token:
            raise AssertionError("the stack is not up: no API token yet")
        return bearer(self.api_token)

    @property
    def tokens_file(self) -> Path:
        """The agent's API tokens file on the host (mounted read-only into it)."""
        if self._tokens_dir is None:
            raise AssertionError("the stack is not up: no tokens folder yet")
        return self._tokens_dir / tokens_file_name()

    def environment(self) -> dict[str, str]:
        """The CLI's environment: .env.example's values win over the caller's
        environment (whose same-named variables are dropped), then the test's own."""
        pinned = env_example()
        environ = {
            key: value
            for key, value in os.environ.items()
            if key not in pinned and not key.startswith("COMPOSE_")
        }
        environ.update(
            {
                PASSWORD_VARIABLE: self.grafana_password,
                "NEUROS_PUBLISHED_PORT": str(self.published_port),
                "BIND_ADDRESS": "127.0.0.1",
            }
        )
        if self._secrets_dir is not None:
            environ[ALERTMANAGER_SECRETS_VARIABLE] = str(self._secrets_dir)
        if self._tokens_dir is not None:
            environ[TOKENS_DIR_VARIABLE] = str(self._tokens_dir)
        environ.update(self.env)
        return environ

    def compose(
        self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``docker compose -p PROJECT --env-file .env.example -f ... ARGS``."""
        files = [COMPOSE_FILE, *self.override_files]
        command = ["docker", "compose", "-p", self.project, "--env-file", str(ENV_EXAMPLE)]
        for path in files:
            command += ["-f", str(path)]
        return _run([*command, *args], env=self.environment(), timeout=timeout, check=check)

    def rendered(self, *services: str) -> Model:
        """The stack's model as Compose renders it, of ``services`` if named."""
        return rendered(
            ["docker", "compose"],
            [COMPOSE_FILE, *self.override_files],
            *services,
            env_file=ENV_EXAMPLE,
            environ=self.environment(),
            project=self.project,
        )

    def up(self) -> ComposeStack:
        """Create and start the services (never their dependencies, never a build or
        pull); on failure print the logs, tear down and raise."""
        images = self.compose("config", "--images", *self.services).stdout.split()
        missing = [
            image
            for image in images
            if _run(["docker", "image", "inspect", image], check=False).returncode != 0
        ]
        if missing:
            raise AssertionError(f"images missing: {missing}: {SETUP_HINT}")
        if self._secrets_dir is None:
            # Empty: the webhook URL files are only read when a notification is sent.
            self._secrets_dir = Path(tempfile.mkdtemp(prefix=f"{self.project}-secrets-"))
            self._secrets_dir.chmod(0o755)
        if self._tokens_dir is None:
            self._tokens_dir = Path(tempfile.mkdtemp(prefix=f"{self.project}-tokens-"))
            self._tokens_dir.chmod(TOKENS_DIR_MODE)
            self.api_token = TokensFile(self.tokens_file).add(
                ADMIN_TOKEN_NAME, list(Scope), [ALL_USERS]
            )
        self._containers.clear()
        self._is_up = True
        try:
            self.compose(
                "up",
                "-d",
                "--no-deps",
                "--no-build",
                "--pull",
                "never",
                *self.services,
                timeout=UP_DOWN_TIMEOUT,
            )
        except BaseException:
            print(self.logs())
            self.down()
            raise
        return self

    def down(self) -> None:
        """``down -v --remove-orphans``; raises if a container or volume is left."""
        if not self._is_up:
            return
        self._is_up = False
        self._containers.clear()
        try:
            self.compose(
                "down", "-v", "--remove-orphans", "--timeout", "10", timeout=UP_DOWN_TIMEOUT
            )
        finally:
            for folder in (self._secrets_dir, self._tokens_dir):
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)
            self._secrets_dir = self._tokens_dir = None
            self.api_token = ""
        left = {"containers": self.project_containers(), "volumes": self.project_volumes()}
        if any(left.values()):
            raise AssertionError(f"`down -v` left behind in {self.project}: {left}")

    def __enter__(self) -> ComposeStack:
        return self.up()

    def __exit__(self, exc_type: object, exc: object, traceback: object) -> None:
        if exc is not None:
            print(self.logs())
        self.down()

    # --- containers ------------------------------------------------------------

    def container_id(self, service: str) -> str:
        if service not in self._containers:
            ids = self.compose("ps", "--all", "-q", service).stdout.split()
            if len(ids) != 1:
                raise AssertionError(f"{service}: expected one container, found {ids}")
            self._containers[service] = ids[0]
        return self._containers[service]

    def inspect(self, service: str, template: str) -> str:
        """``docker inspect -f TEMPLATE`` of the service's container."""
        result = _run(["docker", "inspect", "-f", template, self.container_id(service)])
        return result.stdout.strip()

    def host_pid(self, service: str) -> int:
        """PID of the container's main process on the host (0 when not running)."""
        return int(self.inspect(service, "{{.State.Pid}}"))

    def health(self, service: str) -> str:
        """starting, healthy, unhealthy, or none (no healthcheck)."""
        return self.inspect(
            service, "{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}"
        )

    def wait_healthy(self, service: str, timeout: float = 120.0) -> float:
        """Wait for Docker's own healthcheck to pass; returns the seconds waited."""

        def healthy() -> bool:
            state = self.inspect(service, "{{.State.Status}}")
            if state in ("exited", "dead"):
                raise AssertionError(f"{service} is {state}:\n{self.logs(service)}")
            return self.health(service) == "healthy"

        def details() -> str:
            log = self.inspect(service, "{{if .State.Health}}{{json .State.Health.Log}}{{end}}")
            return f"health: {self.health(service)}; checks: {log}\n{self.logs(service)}"

        return wait_until(
            healthy,
            timeout,
            f"{service} healthy",
            interval=POLL_SECONDS,
            details=details,
        )

    def exec(self, service: str, *argv: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run ``argv`` in the service's container (as its user); its stdout."""
        return _run(["docker", "exec", self.container_id(service), *argv], timeout=timeout).stdout

    def fetch(self, service: str, path: str, **params: str) -> str:
        """GET ``http://127.0.0.1:<exposed port><path>`` inside the service's container."""
        query = f"?{urlencode(params)}" if params else ""
        url = f"http://127.0.0.1:{exposed_port(service)}{path}{query}"
        return self.exec(service, "wget", "-q", "-O", "-", url)

    def agent_metrics(self) -> str:
        """The agent's /metrics, read on its metrics port inside its container (the
        published port does not serve it; the image has python3, no wget)."""
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        script = (
            "import sys, urllib.request as u;"
            " sys.stdout.write(u.urlopen(sys.argv[1], timeout=10).read().decode())"
        )
        return self.exec(AGENT, "python3", "-c", script, url)

    def prometheus_api(self, path: str, service: str = "prometheus", **params: str) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` answer of Prometheus."""
        answer = json.loads(self.fetch(service, f"/api/v1/{path}", **params))
        if answer.get("status") != "success":
            raise AssertionError(f"/api/v1/{path} {params}: {answer}")
        return answer["data"]

    def logs(self, *services: str, tail: int = 200) -> str:
        result = self.compose("logs", "--no-color", "--tail", str(tail), *services, check=False)
        return f"--- docker compose logs ({self.project}) ---\n{result.stdout}{result.stderr}"

    # --- what the project owns on the engine -------------------------------------

    def project_containers(self) -> list[str]:
        result = _run(["docker", "ps", "-aq", "--filter", f"label={PROJECT_LABEL}={self.project}"])
        return result.stdout.split()

    def project_volumes(self) -> list[str]:
        result = _run(
            ["docker", "volume", "ls", "-q", "--filter", f"label={PROJECT_LABEL}={self.project}"]
        )
        return result.stdout.split()


StartStack = Callable[..., ComposeStack]


@contextmanager
def compose_stacks(request: pytest.FixtureRequest) -> Iterator[StartStack]:
    """``start(services, env=..., override_files=...)`` brings up one more stack; all
    are torn down on exit, after their logs are shown if a test here failed."""
    require_docker()
    stacks: list[ComposeStack] = []
    failed_before = request.session.testsfailed

    def start(
        services: Sequence[str],
        env: Mapping[str, str] | None = None,
        override_files: Sequence[Path] = (),
    ) -> ComposeStack:
        stack = ComposeStack(services, env=dict(env or {}), override_files=override_files)
        stacks.append(stack)
        return stack.up()

    try:
        yield start
    finally:
        errors: list[BaseException] = []
        for stack in reversed(stacks):
            if request.session.testsfailed > failed_before and stack.is_up:
                show(request, stack.logs())
            try:
                stack.down()
            except (AssertionError, subprocess.SubprocessError) as error:
                errors.append(error)
        if errors:
            raise errors[0]


def show(request: pytest.FixtureRequest, text: str) -> None:
    """Print past output capture: teardown output is not shown otherwise."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(text)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for line in text.splitlines():
            reporter.write_line(line)
