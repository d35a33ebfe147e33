"""Docker access, confined to the containers of one compose project.

Containers are found by their compose labels and checked again on inspect before every
use: an experiment can never reach a container outside its project.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# Compose's own rule for project names.
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_NAME_LINE = re.compile(r"^name:\s*['\"]?([a-z0-9][a-z0-9_-]*)['\"]?\s*(#.*)?$")


class RefusedTarget(Exception):
    """A target outside the compose project, or none at all."""


class DockerError(Exception):
    """A docker command failed."""


def project_from_compose(paths: list[Path]) -> str | None:
    """The top-level ``name:`` of the last compose file that sets one (compose's rule)."""
    found = None
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            match = _NAME_LINE.match(line)
            if match:
                found = match.group(1)
    return found


def docker(*args: str, timeout: float = 60.0) -> str:
    """Runs ``docker ARGS``; stdout, or DockerError with stderr."""
    argv = ["docker", *args]
    try:
        done = subprocess.run(  # noqa: S603 - fixed binary, argument vector
            argv, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DockerError(f"{shlex.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise DockerError(f"{shlex.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


@dataclass(frozen=True)
class Container:
    id: str
    service: str
    running: bool
    pid: int
    restart_count: int
    health: str
    started_at: str

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id[:12],
            "running": self.running,
            "restart_count": self.restart_count,
            "health": self.health,
            "started_at": self.started_at,
        }


@dataclass(frozen=True)
class Project:
    name: str

    def __post_init__(self) -> None:
        if not _PROJECT_NAME.match(self.name):
            raise RefusedTarget(f"{self.name!r} is not a compose project name")

    def container_id(self, service: str) -> str:
        """The one container of ``service`` in this project, by label."""
        out = docker(
            "ps",
            "-aq",
            "--no-trunc",
            "--filter",
            f"label={PROJECT_LABEL}={self.name}",
            "--filter",
            f"label={SERVICE_LABEL}={service}",
        )
        ids = out.split()
        if not ids:
            raise RefusedTarget(
                f"no container of service {service!r} in compose project {self.name!r}"
            )
        if len(ids) > 1:
            raise RefusedTarget(f"{len(ids)} containers of {service!r} in {self.name!r}")
        return ids[0]

    def inspect(self, container_id: str, service: str) -> Container:
        """Inspects the container and refuses it unless its labels name this project
        and ``service``."""
        raw = json.loads(docker("inspect", "--type", "container", container_id))
        data: dict[str, Any] = raw[0]
        labels: dict[str, str] = data["Config"].get("Labels") or {}
        if labels.get(PROJECT_LABEL) != self.name or labels.get(SERVICE_LABEL) != service:
            raise RefusedTarget(
                f"container {container_id[:12]} belongs to project "
                f"{labels.get(PROJECT_LABEL)!r}, service {labels.get(SERVICE_LABEL)!r}; "
                f"refusing (target is {self.name!r}/{service!r})"
            )
        state: dict[str, Any] = data["State"]
        return Container(
            id=data["Id"],
            service=service,
            running=bool(state.get("Running")),
            pid=int(state.get("Pid") or 0),
            restart_count=int(data.get("RestartCount") or 0),
            health=str((state.get("Health") or {}).get("Status", "none")),
            started_at=str(state.get("StartedAt", "")),
        )

    def container(self, service: str) -> Container:
        return self.inspect(self.container_id(service), service)

    def exec(self, service: str, *argv: str, timeout: float = 30.0) -> str:
        target = self.container(service)
        return docker("exec", target.id, *argv, timeout=timeout)

    def http_get(self, via: str, url: str, params: dict[str, str] | None = None) -> str:
        """GET ``url`` from inside the compose network, with the wget of ``via``
        (Prometheus' image, upstream busybox or ours, has one; Tempo's has nothing)."""
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        return self.exec(via, "wget", "-q", "-T", "10", "-O", "-", url)

    def describe(self, service: str) -> str:
        """The target as a dry run names it: the short container id, or a placeholder
        when the project has no such container (the real run would refuse)."""
        try:
            return self.container(service).id[:12]
        except (RefusedTarget, DockerError):
            return f"NO-CONTAINER[{self.name}/{service}]"
