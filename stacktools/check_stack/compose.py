"""docker-compose services and the ports they expose; every host:port a component
reaches names one, and the collector and Tempo listen on what their service exposes."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compose import ComposeError, as_written
from ..paths import COMPOSE_FILE, OTEL_CONFIG, PROMETHEUS_CONFIG, TEMPO_CONFIG
from .files import as_dict, as_list, walk_json
from .grafana import Datasource
from .report import Report

# Hosts that never name a compose service: a component talking to itself.
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::", "::1"})  # noqa: S104
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# Set on the agent, /metrics is served on this port only, not on its API port
# (neuros/config.py, Settings.metrics_port).
METRICS_PORT_VARIABLE = "NEUROS_METRICS_PORT"


_COMPOSE_VARIABLE = re.compile(r"\$\{\w+(?::?(?P<op>[-?+])(?P<word>[^}]*))?\}|\$\w+")


def interpolate(text: str) -> str:
    """Compose interpolation with every variable unset: ``${VAR:-default}`` -> default.

    The file's own defaults, not this machine's environment, so the result is the same
    wherever the check runs.
    """

    def value(match: re.Match[str]) -> str:
        return match.group("word") if match.group("op") == "-" else ""

    return _COMPOSE_VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


_OTEL_VARIABLE = re.compile(r"\$\{(?:env:)?\w+(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Service:
    name: str
    built: bool  # built from this repository: the agent
    ports: frozenset[int]  # container ports: exposed and published
    published: frozenset[int]  # container ports published on the host
    host_network: bool
    environment: dict[str, str]
    mounts: tuple[Path, ...]  # bind-mounted host paths, absolute


def _container_port(entry: Any) -> int | None:
    if isinstance(entry, dict):
        entry = entry.get("target")
    if isinstance(entry, int):
        return entry
    if not isinstance(entry, str):
        return None
    text = interpolate(entry).split("/")[0]
    last = text.rsplit(":", 1)[-1]
    return int(last) if last.isdigit() else None


def _expose_ports(entry: Any) -> set[int]:
    text = interpolate(str(entry)).split("/")[0]
    low, _, high = text.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        return set()
    return set(range(int(low), int(high or low) + 1))


def _bind_mounts(repo: Path, volumes: list[Any]) -> Iterator[Path]:
    for volume in volumes:
        if isinstance(volume, dict):
            source = str(volume.get("source", "")) if volume.get("type") == "bind" else ""
        else:
            source = interpolate(str(volume)).split(":")[0]
        # Only this repository's files: a host-wide "/" mount (node-exporter) runs none.
        path = (repo / source).resolve() if source.startswith((".", "/")) else None
        if path is not None and path.is_relative_to(repo.resolve()):
            yield path


def load_compose(repo: Path, report: Report) -> dict[str, Service]:
    """Every name a service answers to on the compose network -> the service."""
    try:
        document = as_written(repo / COMPOSE_FILE)
    except ComposeError as error:
        report.add(COMPOSE_FILE, str(error))
        return {}
    hosts: dict[str, Service] = {}
    for name, spec in as_dict(document.get("services")).items():
        spec = as_dict(spec)
        ports: set[int] = set()
        published: set[int] = set()
        for entry in as_list(spec.get("expose")):
            ports |= _expose_ports(entry)
        for entry in as_list(spec.get("ports")):
            port = _container_port(entry)
            if port is not None:
                published.add(port)
        ports |= published
        environment = spec.get("environment")
        if isinstance(environment, list):
            environment = dict(str(e).partition("=")[::2] for e in environment)
        service = Service(
            name=str(name),
            built="build" in spec,
            ports=frozenset(ports),
            published=frozenset(published),
            host_network=spec.get("network_mode") == "host",
            environment={str(k): interpolate(str(v)) for k, v in as_dict(environment).items()},
            mounts=tuple(_bind_mounts(repo, as_list(spec.get("volumes")))),
        )
        aliases = [name, spec.get("hostname"), spec.get("container_name")]
        for network in as_dict(spec.get("networks")).values():
            aliases += as_list(as_dict(network).get("aliases"))
        for alias in aliases:
            if isinstance(alias, str) and alias:
                hosts.setdefault(alias, service)
    if not hosts:
        report.add(COMPOSE_FILE, "no services")
    return hosts


def parse_endpoint(value: str) -> tuple[str, int] | None:
    """(host, port) of ``host:port``, ``scheme://host[:port]/...`` or ``dns:///host:port``."""
    value = value.strip()
    if value.startswith("dns:///"):
        value = value[len("dns:///") :]
    if "://" in value:
        parts = urllib.parse.urlsplit(value)
        if not parts.hostname:
            return None
        try:
            port = parts.port
        except ValueError:
            return None
        default = {"http": 80, "https": 443}.get(parts.scheme)
        port = port or default
        return (parts.hostname, port) if port else None
    host, _, port_text = value.rpartition(":")
    return (host, int(port_text)) if host and port_text.isdigit() else None


@dataclass(frozen=True)
class Endpoint:
    file: str
    what: str
    value: str


def check_endpoint(endpoint: Endpoint, hosts: Mapping[str, Service], report: Report) -> None:
    parsed = parse_endpoint(endpoint.value)
    if parsed is None:
        report.add(endpoint.file, f"{endpoint.what} {endpoint.value!r} is no host:port or URL")
        return
    host, port = parsed
    if host in LOCAL_HOSTS:
        return
    service = hosts.get(host)
    prefix = f"{endpoint.what} {endpoint.value!r}"
    if service is None:
        report.add(
            endpoint.file,
            f"{prefix}: no compose service {host!r} in {COMPOSE_FILE}"
            f" (services: {', '.join(sorted({s.name for s in hosts.values()}))})",
        )
    elif service.host_network:
        report.add(
            endpoint.file,
            f"{prefix}: service {service.name!r} uses the host"
            " network, so its name does not resolve on the compose network",
        )
    elif port not in service.ports:
        exposed = ", ".join(map(str, sorted(service.ports))) or "nothing (add expose:)"
        report.add(
            endpoint.file,
            f"{prefix}: compose service {service.name!r} does not expose port {port}"
            f" (exposes {exposed})",
        )


def agent_jobs(config: Mapping[str, Any], hosts: Mapping[str, Service]) -> frozenset[str]:
    """Scrape jobs whose every target is a compose service built from this repository."""
    jobs: set[str] = set()
    for job in as_list(config.get("scrape_configs")):
        job = as_dict(job)
        targets = [
            parse_endpoint(str(target))
            for static in as_list(job.get("static_configs"))
            for target in as_list(as_dict(static).get("targets"))
        ]
        services = [hosts.get(t[0]) if t else None for t in targets]
        if services and all(s is not None and s.built for s in services):
            jobs.add(str(job.get("job_name")))
    return frozenset(jobs)


def check_agent_metrics_port(
    config: Mapping[str, Any], hosts: Mapping[str, Service], report: Report
) -> None:
    """An agent with METRICS_PORT_VARIABLE serves /metrics there only: that port is
    exposed, never published, and every scrape target on the agent names it."""
    for service in {id(s): s for s in hosts.values()}.values():
        value = service.environment.get(METRICS_PORT_VARIABLE)
        if not service.built or value is None:
            continue
        where = f"service {service.name!r} {METRICS_PORT_VARIABLE}={value}"
        if not value.isdigit():
            report.add(COMPOSE_FILE, f"{where} is not a port number")
            continue
        port = int(value)
        if port not in service.ports:
            report.add(COMPOSE_FILE, f"{where} is not exposed (add it to expose:)")
        if port in service.published:
            report.add(COMPOSE_FILE, f"{where} is published: /metrics must stay internal")
        names = {name for name, s in hosts.items() if s is service}
        for job in as_list(config.get("scrape_configs")):
            job = as_dict(job)
            for static in as_list(job.get("static_configs")):
                for target in as_list(as_dict(static).get("targets")):
                    parsed = parse_endpoint(str(target))
                    if parsed is not None and parsed[0] in names and parsed[1] != port:
                        report.add(
                            PROMETHEUS_CONFIG,
                            f"scrape job {job.get('job_name')!r} target {target!r}: the agent"
                            f" serves /metrics only on {METRICS_PORT_VARIABLE}={port}"
                            f" ({COMPOSE_FILE})",
                        )


def stack_endpoints(
    config: Mapping[str, Any],
    otel: Mapping[str, Any],
    tempo: Mapping[str, Any],
    datasources: Sequence[Datasource],
    hosts: Mapping[str, Service],
) -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    for job in as_list(config.get("scrape_configs")):
        job = as_dict(job)
        for static in as_list(job.get("static_configs")):
            for target in as_list(as_dict(static).get("targets")):
                what = f"scrape job {job.get('job_name')!r} target"
                endpoints.append(Endpoint(str(PROMETHEUS_CONFIG), what, str(target)))
    for manager in as_list(as_dict(config.get("alerting")).get("alertmanagers")):
        for static in as_list(as_dict(manager).get("static_configs")):
            for target in as_list(as_dict(static).get("targets")):
                endpoints.append(Endpoint(str(PROMETHEUS_CONFIG), "alertmanager target", target))
    for remote in as_list(config.get("remote_write")):
        endpoints.append(
            Endpoint(str(PROMETHEUS_CONFIG), "remote_write url", str(as_dict(remote).get("url")))
        )

    for name, exporter in as_dict(otel.get("exporters")).items():
        for node in walk_json(exporter):
            for key, value in node.items():
                if (key == "endpoint" or key.endswith("_endpoint")) and isinstance(value, str):
                    value = _OTEL_VARIABLE.sub(lambda m: m.group(1) or "", value)
                    what = f"exporter {name!r} {key}"
                    endpoints.append(Endpoint(str(OTEL_CONFIG), what, value))

    for url in tempo_remote_writes(tempo):
        endpoints.append(Endpoint(str(TEMPO_CONFIG), "remote_write url", url))

    for datasource in datasources:
        if datasource.url and "$" not in datasource.url:
            what = f"datasource {datasource.name!r} url"
            endpoints.append(Endpoint(datasource.file, what, datasource.url))

    for service in {id(s): s for s in hosts.values()}.values():
        for variable in OTLP_ENDPOINT_VARIABLES:
            value = service.environment.get(variable)
            if value:
                what = f"service {service.name!r} {variable}"
                endpoints.append(Endpoint(str(COMPOSE_FILE), what, value))
    return endpoints


def tempo_remote_writes(tempo: Mapping[str, Any]) -> list[str]:
    """Where Tempo's metrics generator sends span metrics and service graphs."""
    return [
        str(remote["url"])
        for node in walk_json(tempo)
        for remote in as_list(node.get("remote_write"))
        if isinstance(remote, dict) and "url" in remote
    ]


def otel_listeners(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(host, port) the collector listens on: receivers, extensions, own metrics."""
    listeners = [
        parsed
        for section in ("receivers", "extensions")
        for node in walk_json(config.get(section))
        if isinstance(node.get("endpoint"), str)
        and (
            parsed := parse_endpoint(
                _OTEL_VARIABLE.sub(lambda m: m.group(1) or "", node["endpoint"])
            )
        )
    ]
    metrics = as_dict(as_dict(as_dict(config.get("service")).get("telemetry")).get("metrics"))
    for reader in as_list(metrics.get("readers")):
        exporter = as_dict(as_dict(as_dict(reader).get("pull")).get("exporter"))
        prometheus = as_dict(exporter.get("prometheus"))
        if isinstance(prometheus.get("port"), int):
            listeners.append((str(prometheus.get("host", "localhost")), prometheus["port"]))
    return listeners


def tempo_listeners(config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(host, port) Tempo listens on: its HTTP and gRPC servers, the OTLP receivers."""
    server = as_dict(config.get("server"))
    listeners = [
        (str(server.get(f"{kind}_listen_address") or ""), server[f"{kind}_listen_port"])
        for kind in ("http", "grpc")
        if isinstance(server.get(f"{kind}_listen_port"), int)
    ]
    receivers = as_dict(config.get("distributor")).get("receivers")
    listeners += [
        parsed
        for node in walk_json(receivers)
        if isinstance(node.get("endpoint"), str) and (parsed := parse_endpoint(node["endpoint"]))
    ]
    return listeners


def check_listeners(
    rel: Path,
    listeners: Sequence[tuple[str, int]],
    repo: Path,
    hosts: Mapping[str, Service],
    report: Report,
) -> None:
    """The compose service that mounts ``rel`` exposes only ports its config listens on,
    and none of them on loopback (unreachable from the other containers)."""
    path = (repo / rel).resolve()
    mounting = [
        (len(mount.parts), service)
        for service in {id(s): s for s in hosts.values()}.values()
        for mount in service.mounts
        if path.is_relative_to(mount)
    ]
    if not mounting:
        report.add(rel, f"no compose service mounts it ({COMPOSE_FILE})")
        return
    service = max(mounting, key=lambda item: item[0])[1]
    for host, port in listeners:
        if host in ("localhost", "127.0.0.1", "::1"):
            report.add(rel, f"listens on {host}:{port}: unreachable from other containers")
    ports = {port for _, port in listeners}
    for port in sorted(service.ports - ports):
        report.add(
            COMPOSE_FILE,
            f"service {service.name!r} exposes {port}, but {rel} listens on no such port"
            f" (listens on {', '.join(map(str, sorted(ports))) or 'nothing'})",
        )
