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
from typing import Any

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# Compose numbers the containers of a service 1..N (`deploy.replicas`, `--scale`); a
# restart by the restart policy keeps the container, so its number too.
NUMBER_LABEL = "com.docker.compose.container-number"
# Compose's own rule for project names.
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class RefusedTarget(Exception):
    """A target outside the compose project, or none at all."""


class DockerError(Exception):
    """A docker command failed."""


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
    # The compose container number (the replica) and its address on the compose
    # network ("" while it is not running): Prometheus' instance label is address:port.
    number: int = 1
    address: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id[:12],
            "replica": self.number,
            "address": self.address,
            "running": self.running,
            "restart_count": self.restart_count,
            "health": self.health,
            "started_at": self.started_at,
        }


def _address(data: dict[str, Any]) -> str:
    networks: dict[str, Any] = (data.get("NetworkSettings") or {}).get("Networks") or {}
    addresses = sorted(str(n.get("IPAddress") or "") for n in networks.values())
    return next((a for a in addresses if a), "")


@dataclass(frozen=True)
class Project:
    name: str

    def __post_init__(self) -> None:
        if not _PROJECT_NAME.match(self.name):
            raise RefusedTarget(f"{self.name!r} is not a compose project name")

    def container_ids(self, service: str, replica: int | None = None) -> list[str]:
        """The containers of ``service`` in this project, by label (only the replica
        numbered ``replica`` when given)."""
        filters = [f"label={PROJECT_LABEL}={self.name}", f"label={SERVICE_LABEL}={service}"]
        if replica is not None:
            filters.append(f"label={NUMBER_LABEL}={int(replica)}")
        out = docker("ps", "-aq", "--no-trunc", *(f for flt in filters for f in ("--filter", flt)))
        return out.split()

    def container_id(self, service: str, replica: int | None = None) -> str:
        """The one container of ``service`` (or of its replica ``replica``) in this
        project, by label."""
        ids = self.container_ids(service, replica)
        which = f"service {service!r}" + ("" if replica is None else f" replica {replica}")
        if not ids:
            raise RefusedTarget(f"no container of {which} in compose project {self.name!r}")
        if len(ids) > 1:
            raise RefusedTarget(f"{len(ids)} containers of {which} in {self.name!r}")
        return ids[0]

    def inspect(self, container_id: str, service: str, replica: int | None = None) -> Container:
        """Inspects the container and refuses it unless its labels name this project
        and ``service`` (and the replica number, when given)."""
        raw = json.loads(docker("inspect", "--type", "container", container_id))
        data: dict[str, Any] = raw[0]
        labels: dict[str, str] = data["Config"].get("Labels") or {}
        if labels.get(PROJECT_LABEL) != self.name or labels.get(SERVICE_LABEL) != service:
            raise RefusedTarget(
                f"container {container_id[:12]} belongs to project "
                f"{labels.get(PROJECT_LABEL)!r}, service {labels.get(SERVICE_LABEL)!r}; "
                f"refusing (target is {self.name!r}/{service!r})"
            )
        number = int(labels.get(NUMBER_LABEL) or 0)
        if replica is not None and number != int(replica):
            raise RefusedTarget(
                f"container {container_id[:12]} is replica {number} of {service!r}, "
                f"not {replica}; refusing"
            )
        state: dict[str, Any] = data["State"]
        return Container(
            id=data["Id"],
            service=service,
            # Docker reports Running during the restart policy's back-off too, with no
            # process (Pid 0): not running for anyone who needs the service.
            running=bool(state.get("Running")) and not state.get("Restarting"),
            pid=int(state.get("Pid") or 0),
            restart_count=int(data.get("RestartCount") or 0),
            health=str((state.get("Health") or {}).get("Status", "none")),
            started_at=str(state.get("StartedAt", "")),
            number=number,
            address=_address(data),
        )

    def container(self, service: str, replica: int | None = None) -> Container:
        return self.inspect(self.container_id(service, replica), service, replica)

    def containers(self, service: str) -> list[Container]:
        """Every container of ``service`` (each replica), ordered by replica number."""
        found = [self.inspect(cid, service) for cid in self.container_ids(service)]
        return sorted(found, key=lambda c: c.number)

    def exec(self, service: str, *argv: str, timeout: float = 30.0) -> str:
        target = self.container(service)
        return docker("exec", target.id, *argv, timeout=timeout)

    def http_get(self, via: str, url: str, params: dict[str, str] | None = None) -> str:
        """GET ``url`` from inside the compose network, with the wget of ``via``
        (Prometheus' image, upstream busybox or ours, has one; Tempo's has nothing)."""
        if params:
            url = f"{url}?{urllib.parse.urlencode(params)}"
        return self.exec(via, "wget", "-q", "-T", "10", "-O", "-", url)

    def describe(self, service: str, replica: int | None = None) -> str:
        """The target as a dry run names it: the short container id, or a placeholder
        when the project has no such container (the real run would refuse)."""
        try:
            return self.container(service, replica).id[:12]
        except (RefusedTarget, DockerError):
            which = service if replica is None else f"{service}#{replica}"
            return f"NO-CONTAINER[{self.name}/{which}]"
