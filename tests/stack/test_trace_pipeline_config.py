"""otel/config.yml and tempo/tempo.yml: valid for the pinned releases, wired to the stack.

Neither image runs on this machine, so the checks are static. They target what breaks a
deployment: a config the pinned version rejects (a restart loop), hosts and ports that
disagree with compose or Prometheus, a user identifier reaching the trace store, and
links between them that Grafana would not follow (exemplar labels, streaming search).
A check whose compose service is missing fails: every service they name is required.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from stacktools import paths
from stacktools.compose import service_as_written
from stacktools.paths import REPO_ROOT
from tests.support.compose_model import IMAGES_WITHOUT_TOOLS
from tests.support.config_schemas import (
    COLLECTOR_COMPONENT_SCHEMAS,
    COLLECTOR_SERVICE_SCHEMA,
    TEMPO_BLOCK_SCHEMAS,
    Schema,
    unknown_key_paths,
)

COLLECTOR_CONFIG = REPO_ROOT / paths.OTEL_CONFIG
TEMPO_CONFIG = REPO_ROOT / paths.TEMPO_CONFIG
PROMETHEUS_CONFIG = REPO_ROOT / paths.PROMETHEUS_CONFIG
COMPOSE_FILE = REPO_ROOT / paths.COMPOSE_FILE
ENV_EXAMPLE = REPO_ROOT / paths.ENV_EXAMPLE
DATASOURCES_DIR = REPO_ROOT / paths.DATASOURCES_DIR
RULE_TESTS_DIR = REPO_ROOT / paths.RULE_TESTS_DIR

# The releases the configs and the allow-lists below were checked against. Moving a pin in
# .env.example without re-checking both fails test_*_image_is_the_checked_release.
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib"
COLLECTOR_VERSION = "0.144.0"
TEMPO_IMAGE = "grafana/tempo"
TEMPO_VERSION = "2.10.7"

# Component types valid in otelcol-contrib 0.144.0, limited to those this stack may use.
# Sources: opentelemetry-collector CHANGELOG v1.50.0/v0.144.0, which renamed the `otlp`
# exporter to `otlp_grpc` and `otlphttp` to `otlp_http` (the old names survive only as
# deprecated aliases, so they are not allowed here); the READMEs of otlpreceiver,
# memorylimiterprocessor, batchprocessor, exporterhelper and debugexporter (core) and of
# attributesprocessor, redactionprocessor, healthcheckextension and filestorage (contrib),
# and the contrib CHANGELOG v0.143.0 and v0.144.0, which change none of them.
COLLECTOR_TYPES: dict[str, frozenset[str]] = {
    "receivers": frozenset({"otlp"}),
    "processors": frozenset({"memory_limiter", "batch", "attributes", "redaction"}),
    "exporters": frozenset({"otlp_grpc", "otlp_http", "debug"}),
    "extensions": frozenset({"health_check", "file_storage"}),
}
COLLECTOR_TOP_LEVEL = frozenset({*COLLECTOR_TYPES, "connectors", "service"})
# Where the contrib image looks for its config when no --config is given (its Dockerfile).
COLLECTOR_DEFAULT_CONFIG_PATH = "/etc/otelcol-contrib/config.yaml"
# The process uses about this much beyond memory_limiter's limit_mib (memorylimiter README).
COLLECTOR_RUNTIME_OVERHEAD_MIB = 50

# Top-level blocks of a Tempo 2.x config: the yaml tags of app.Config in grafana/tempo
# cmd/tempo/app/config.go (the 2.8+ revision with backend_scheduler next to ingester and
# compactor). Tempo unmarshals strictly, so any other key stops it at startup.
TEMPO_TOP_LEVEL = frozenset(
    {
        "target",
        "auth_enabled",
        "multitenancy_enabled",
        "shutdown_delay",
        "stream_over_http_enabled",
        "http_api_prefix",
        "enable_go_runtime_metrics",
        "server",
        "internal_server",
        "distributor",
        "ingester_client",
        "metrics_generator_client",
        "querier",
        "query_frontend",
        "compactor",
        "ingester",
        "metrics_generator",
        "ingest",
        "block_builder",
        "storage",
        "overrides",
        "memberlist",
        "usage_report",
        "cache",
        "backend_scheduler",
        "backend_scheduler_client",
        "backend_worker",
    }
)
# metrics-generator processors of Tempo 2.x (local-blocks was removed in 3.0).
TEMPO_PROCESSORS = frozenset({"service-graphs", "span-metrics", "local-blocks"})
TEMPO_REQUIRED_PROCESSORS = frozenset({"service-graphs", "span-metrics"})
# The label Tempo's metrics generator puts the trace id of an exemplar in, unless the
# overrides set metrics_generator.trace_id_label_name (tempo v2.10.7
# modules/generator/registry/histogram.go and native_histogram.go: "traceID").
TEMPO_DEFAULT_TRACE_ID_LABEL = "traceID"
PROMETHEUS_REMOTE_WRITE_PATH = "/api/v1/write"

# Attribute keys that identify a user (or carry the raw path, which holds the user id):
# the collector must delete every one of them.
USER_IDENTIFYING_KEYS = frozenset(
    {
        "enduser.id",
        "user.id",
        "user_id",
        "http.url",
        "http.target",
        "url.full",
        "url.path",
        "url.query",
    }
)
# Other spellings the delete pattern must catch, and keys it must leave alone.
USER_ID_SPELLINGS = ("userId", "USER_ID", "neuros.user_id", "app.user.id", "enduser.name")
SAFE_KEYS = (
    "http.route",
    "http.request.method",
    "http.response.status_code",
    "service.name",
    "user_agent.original",
    "db.system",
    "neuros.readings.count",
)

_COMPONENT_ID = re.compile(r"^(?P<type>[a-z][a-z0-9_]*)(/(?P<name>[A-Za-z0-9_]+))?$")
_GO_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS_PER_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_MEMORY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmg]?)(?:i?b)?$", re.IGNORECASE)
_MIB_PER_UNIT = {"": 1 / 2**20, "k": 1 / 2**10, "m": 1.0, "g": 2.0**10}
# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ...
_COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<word>[^}]*))?\}")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    assert isinstance(value, dict), f"{where} must be a mapping, got {value!r}"
    return value


def _load(path: Path) -> dict[str, Any]:
    return _mapping(yaml.safe_load(path.read_text()), str(path.relative_to(REPO_ROOT)))


def _collector() -> dict[str, Any]:
    return _load(COLLECTOR_CONFIG)


def _tempo() -> dict[str, Any]:
    return _load(TEMPO_CONFIG)


def _go_duration_seconds(text: object) -> float:
    """Seconds in a Go ``time.Duration`` string; fails on anything Go would refuse (``14d``)."""
    assert isinstance(text, str), f"duration {text!r} must be a string"
    assert _GO_DURATION.match(text), f"{text!r} is not a Go duration (units ns..h, no d or w)"
    return sum(
        float(number) * _SECONDS_PER_UNIT[unit] for number, unit in _GO_DURATION_PART.findall(text)
    )


def _host_port(address: object) -> tuple[str, int]:
    assert isinstance(address, str), f"address {address!r} must be a string"
    host, _, port = address.rpartition(":")
    assert host, f"{address!r} is not host:port"
    assert port.isdigit(), f"{address!r} is not host:port"
    return host, int(port)


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _pinned_image(variable: str, repository: str) -> str:
    """The tag of ``variable`` in .env.example, which must name ``repository``."""
    image = _env_example().get(variable)
    if image is None:
        pytest.fail(f".env.example has no {variable}; add {variable}={repository}:<tag>")
    name, _, tag = image.rpartition(":")
    assert name == repository, f"{variable}={image!r} must be {repository}:<tag>"
    return tag


def _prometheus_target(job_name: str) -> tuple[str, int]:
    """The single static target of ``job_name`` in prometheus.yml."""
    jobs = _load(PROMETHEUS_CONFIG)["scrape_configs"]
    targets = [
        target
        for job in jobs
        if job["job_name"] == job_name
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert len(targets) == 1, f"prometheus job {job_name!r} must scrape one target: {targets}"
    return _host_port(targets[0])


def _mount_targets(service: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(source, target) of each volume of a compose service, short or long syntax."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            yield source, rest.split(":")[0]
        else:
            yield str(volume.get("source", "")), str(volume["target"])


def _is_under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _interpolate(text: str) -> str:
    """``text`` as compose resolves it with .env copied from .env.example."""
    env = _env_example()

    def value(match: re.Match[str]) -> str:
        name, op, word = match["name"], match["op"] or "", match["word"] or ""
        if name in env and (env[name] or not op.startswith(":")):
            return word if op.endswith("+") else env[name]
        assert not op.endswith("?"), f"compose needs {name}: .env.example does not set it"
        return word if op.endswith("-") else ""

    return _COMPOSE_VARIABLE.sub(value, text)


def _container_path(service: dict[str, Any], host_file: Path) -> str | None:
    """Where a bind mount of ``service`` puts ``host_file`` (or a directory holding it)."""
    for source, target in _mount_targets(service):
        if not source.startswith((".", "/")):
            continue  # a named volume
        mounted = (COMPOSE_FILE.parent / _interpolate(source)).resolve()
        if host_file.resolve().is_relative_to(mounted):
            relative = host_file.resolve().relative_to(mounted).as_posix()
            return target if relative == "." else f"{target.rstrip('/')}/{relative}"
    return None


def _memory_mib(value: object) -> float:
    match = _MEMORY.match(_interpolate(str(value)))
    assert match is not None, f"unparsable memory size {value!r}"
    return float(match["number"]) * _MIB_PER_UNIT[match["unit"].lower()]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        pairs = (str(item).partition("=") for item in environment)
        return {key: value for key, _, value in pairs}
    return {str(key): str(value) for key, value in environment.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    if isinstance(command, str):
        return shlex.split(command)
    return [_interpolate(str(argument)) for argument in command]


def _flag_values(command: list[str], flag: str) -> list[str]:
    """Every value of ``flag`` (``-flag=v``, ``--flag=v`` or ``--flag v``) in ``command``."""
    names = {"-" + flag.lstrip("-"), "--" + flag.lstrip("-")}
    values = []
    for argument, following in zip(command, [*command[1:], ""], strict=True):
        name, sep, value = argument.partition("=")
        if name in names:
            values.append(value if sep else following)
    return values


def _flag_value(command: list[str], flag: str) -> str | None:
    """The value ``flag`` takes in ``command`` (the last one wins), None when absent."""
    values = _flag_values(command, flag)
    return values[-1] if values else None


def _component_type(component_id: str) -> str:
    match = _COMPONENT_ID.match(component_id)
    assert match is not None, f"invalid component id {component_id!r}"
    return match["type"]


def _pipelines(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    pipelines = _mapping(config["service"]["pipelines"], "service.pipelines")
    return {name: _mapping(body, f"pipeline {name}") for name, body in pipelines.items()}


def _redaction_actions(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The actions of every `attributes` processor in the traces pipelines."""
    actions: list[dict[str, Any]] = []
    for pipeline in _pipelines(config).values():
        for processor in pipeline.get("processors", []):
            if _component_type(processor) == "attributes":
                actions += config["processors"][processor]["actions"]
    return actions


def _deleted(key: str, actions: list[dict[str, Any]]) -> bool:
    """Whether a `delete` action of the attributes processor removes ``key``.

    The processor matches ``pattern`` with Go's unanchored ``regexp.MatchString``; the
    pattern's syntax is the RE2 subset Python's ``re`` reads the same way.
    """
    for action in actions:
        if action.get("action") != "delete":
            continue
        if action.get("key") == key:
            return True
        pattern = action.get("pattern")
        if pattern is not None and re.search(pattern, key):
            return True
    return False


def _tempo_exporter(config: dict[str, Any]) -> dict[str, Any]:
    exporters = [body for name, body in config["exporters"].items() if name.startswith("otlp_grpc")]
    assert len(exporters) == 1, "exactly one otlp_grpc exporter must send to Tempo"
    return _mapping(exporters[0], "otlp_grpc exporter")


def _prometheus_reader(config: dict[str, Any]) -> dict[str, Any]:
    readers = config["service"]["telemetry"]["metrics"]["readers"]
    pulls = [reader["pull"]["exporter"]["prometheus"] for reader in readers if "pull" in reader]
    assert len(pulls) == 1, "service.telemetry.metrics needs one pull/prometheus reader"
    return _mapping(pulls[0], "prometheus reader")


def _tempo_receiver(protocol: str) -> tuple[str, int]:
    protocols = _tempo()["distributor"]["receivers"]["otlp"]["protocols"]
    receiver = protocols.get(protocol) or {}
    assert "endpoint" in receiver, (
        f"Tempo's OTLP {protocol} receiver needs an explicit endpoint: since 2.7 it "
        "defaults to localhost, unreachable from other containers"
    )
    return _host_port(receiver["endpoint"])


# --- pins -----------------------------------------------------------------------------


def test_collector_image_is_the_checked_release() -> None:
    assert _pinned_image("OTELCOL_IMAGE", COLLECTOR_IMAGE) == COLLECTOR_VERSION, (
        "the collector pin moved: re-check otel/config.yml and COLLECTOR_TYPES against the "
        "new release's changelog, then update COLLECTOR_VERSION"
    )


def test_tempo_image_is_the_checked_release() -> None:
    tag = _pinned_image("TEMPO_IMAGE", TEMPO_IMAGE)
    assert tag.split(".")[0] == "2", "tempo/tempo.yml is a Tempo 2 config (3 removed its blocks)"
    assert tag == TEMPO_VERSION, (
        "the Tempo pin moved: re-check tempo/tempo.yml against the new release's changelog, "
        "then update TEMPO_VERSION"
    )


@pytest.mark.parametrize(
    ("job", "variable"),
    [("otel-collector", "OTELCOL_IMAGE"), ("tempo", "TEMPO_IMAGE")],
)
def test_compose_runs_the_pinned_image(job: str, variable: str) -> None:
    job_host, _ = _prometheus_target(job)
    image = str(service_as_written(job_host).get("image", ""))
    match = _COMPOSE_VARIABLE.fullmatch(image)
    wanted = f"compose service {job_host} must take its image from ${{{variable}}}, not {image!r}"
    assert match is not None, wanted
    assert match["name"] == variable, wanted
    if (match["op"] or "").endswith("-"):
        assert match["word"] == _env_example()[variable], "compose default != .env.example"


# --- collector ------------------------------------------------------------------------


def test_collector_component_types_exist_in_the_pinned_release() -> None:
    config = _collector()
    assert set(config) <= COLLECTOR_TOP_LEVEL, (
        f"unknown top-level keys: {set(config) - COLLECTOR_TOP_LEVEL}"
    )
    for kind, allowed in COLLECTOR_TYPES.items():
        for component_id in config.get(kind, {}):
            assert _component_type(component_id) in allowed, (
                f"{kind}.{component_id}: not a {kind[:-1]} type of otelcol-contrib "
                f"{COLLECTOR_VERSION} (allowed: {sorted(allowed)})"
            )


def test_collector_defines_what_it_uses_and_uses_what_it_defines() -> None:
    config = _collector()
    pipelines = _pipelines(config)
    for kind in ("receivers", "processors", "exporters"):
        used = {
            component for pipeline in pipelines.values() for component in pipeline.get(kind, [])
        }
        defined = set(config.get(kind, {}))
        assert used <= defined, f"pipelines use undefined {kind}: {used - defined}"
        assert defined <= used, f"{kind} defined but in no pipeline: {defined - used}"
    enabled = config["service"].get("extensions", [])
    assert len(enabled) == len(set(enabled)), "service.extensions lists an extension twice"
    assert set(enabled) == set(config.get("extensions", {})), (
        "every defined extension must be enabled in service.extensions, and only those"
    )


def test_collector_runs_a_traces_pipeline_only() -> None:
    pipelines = _pipelines(_collector())
    assert pipelines, "no pipeline"
    assert all(name.split("/")[0] == "traces" for name in pipelines), (
        f"the agent only sends traces: {sorted(pipelines)}"
    )
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "exporters"):
            assert pipeline.get(kind), f"pipeline {name} has no {kind}"


def test_collector_processors_limit_memory_first_then_batch_then_redact() -> None:
    for name, pipeline in _pipelines(_collector()).items():
        types = [_component_type(processor) for processor in pipeline.get("processors", [])]
        assert types[:1] == ["memory_limiter"], f"{name}: memory_limiter must come first: {types}"
        assert types.count("batch") == 1, f"{name}: exactly one batch processor: {types}"
        assert "attributes" in types[types.index("batch") :], (
            f"{name}: the user-id redaction must run in the pipeline, after batch: {types}"
        )


def test_collector_receives_otlp_on_all_interfaces() -> None:
    protocols = _collector()["receivers"]["otlp"]["protocols"]
    assert set(protocols) == {"grpc", "http"}
    for protocol, body in protocols.items():
        host, _ = _host_port(body["endpoint"])
        assert host == "0.0.0.0", f"otlp {protocol} receiver must listen on 0.0.0.0, not {host}"


def test_agent_exports_to_the_collector_http_receiver() -> None:
    collector_host, _ = _prometheus_target("otel-collector")
    agent_host, _ = _prometheus_target("neuros")
    environment = _environment(service_as_written(agent_host))
    endpoint = environment.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environment.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    assert endpoint is not None, "the agent's compose service sets no OTLP endpoint"
    _, http_port = _host_port(_collector()["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
    url = urlsplit(endpoint)
    assert (url.hostname, url.port) == (collector_host, http_port), (
        f"the agent sends OTLP/HTTP to {endpoint}, the collector listens on "
        f"{collector_host}:{http_port}"
    )


def test_memory_limiter_is_consistent() -> None:
    limiter = _collector()["processors"]["memory_limiter"]
    assert _go_duration_seconds(limiter["check_interval"]) > 0
    assert 0 < limiter["spike_limit_mib"] < limiter["limit_mib"], "spike must be below the limit"


def test_memory_limiter_fits_the_container_memory_limit() -> None:
    collector_host, _ = _prometheus_target("otel-collector")
    service = service_as_written(collector_host)
    limit = service.get("mem_limit") or (
        service.get("deploy", {}).get("resources", {}).get("limits", {}).get("memory")
    )
    assert limit is not None, f"compose service {collector_host} sets no memory limit"
    limit_mib = _collector()["processors"]["memory_limiter"]["limit_mib"]
    assert limit_mib + COLLECTOR_RUNTIME_OVERHEAD_MIB <= _memory_mib(limit), (
        f"memory_limiter.limit_mib {limit_mib} + ~{COLLECTOR_RUNTIME_OVERHEAD_MIB} MiB of "
        f"runtime must fit the container's {limit}"
    )


def test_redaction_deletes_every_user_identifier() -> None:
    actions = _redaction_actions(_collector())
    for key in sorted(USER_IDENTIFYING_KEYS) + list(USER_ID_SPELLINGS):
        assert _deleted(key, actions), f"attribute {key!r} reaches Tempo"
    for key in SAFE_KEYS:
        assert not _deleted(key, actions), f"redaction also deletes harmless {key!r}"


def test_exporter_targets_tempo_otlp_grpc_receiver() -> None:
    exporter = _tempo_exporter(_collector())
    host, port = _host_port(exporter["endpoint"])
    tempo_host, _ = _prometheus_target("tempo")
    assert host == tempo_host, f"exporter sends to {host}, Tempo is scraped as {tempo_host}"
    assert port == _tempo_receiver("grpc")[1], "exporter port != Tempo's OTLP gRPC receiver port"
    assert exporter["tls"]["insecure"] is True, "plain gRPC inside the compose network"


# The label naming the collector component a series of its own telemetry is about, and
# the config section holding those ids.
COLLECTOR_COMPONENT_LABELS = {
    "receiver": "receivers",
    "processor": "processors",
    "exporter": "exporters",
}
_LABEL_VALUE = re.compile(r'(?P<label>receiver|processor|exporter)\s*=\s*"(?P<value>[^"]*)"')


def collector_labels_in_rule_tests() -> list[tuple[str, str, str]]:
    """(test file, label, value) of every receiver/processor/exporter label given to an
    otelcol_* series or expected on an alert in the promtool tests."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        for group in _load(path).get("tests") or []:
            for series in group.get("input_series") or []:
                text = str(series.get("series", ""))
                if text.startswith("otelcol_"):
                    found += [
                        (path.name, m["label"], m["value"]) for m in _LABEL_VALUE.finditer(text)
                    ]
            for case in group.get("alert_rule_test") or []:
                for alert in case.get("exp_alerts") or []:
                    labels = alert.get("exp_labels") or {}
                    if labels.get("job") == "otel-collector":
                        found += [
                            (path.name, label, str(labels[label]))
                            for label in COLLECTOR_COMPONENT_LABELS
                            if label in labels
                        ]
    return found


def test_rule_tests_name_the_collectors_real_components() -> None:
    """The collector labels its telemetry with component ids as written in its config
    (``otlp_grpc/tempo``): a promtool test with another id passes against series the
    collector never exports."""
    config = _collector()
    found = collector_labels_in_rule_tests()
    assert {label for _, label, _ in found} >= {"exporter", "receiver"}, found
    wrong = [
        f"{file}: {label}={value!r} is not one of {sorted(config[section])}"
        for file, label, value in found
        if value not in config[(section := COLLECTOR_COMPONENT_LABELS[label])]
    ]
    assert not wrong, wrong


def test_exporter_target_is_a_compose_service() -> None:
    host, _ = _host_port(_tempo_exporter(_collector())["endpoint"])
    service_as_written(host)


def test_exporter_retries_and_queues_on_disk() -> None:
    config = _collector()
    exporter = _tempo_exporter(config)
    retry = exporter["retry_on_failure"]
    assert retry["enabled"] is True
    initial, maximum = (
        _go_duration_seconds(retry[key]) for key in ("initial_interval", "max_interval")
    )
    assert 0 < initial <= maximum
    assert _go_duration_seconds(retry["max_elapsed_time"]) >= maximum
    queue = exporter["sending_queue"]
    assert queue.get("enabled", True) is True
    storage = queue["storage"]
    assert _component_type(storage) == "file_storage", (
        f"queue storage {storage!r} is not file_storage"
    )
    assert storage in config["extensions"], f"queue storage {storage!r} is not defined"
    assert storage in config["service"]["extensions"], f"queue storage {storage!r} is not enabled"


def test_file_storage_directory_is_a_compose_volume() -> None:
    config = _collector()
    collector_host, _ = _prometheus_target("otel-collector")
    targets = [target for _, target in _mount_targets(service_as_written(collector_host))]
    for name, body in config["extensions"].items():
        if _component_type(name) == "file_storage":
            directory = body["directory"]
            assert any(_is_under(directory, target) for target in targets), (
                f"{directory} is not on a compose volume: the queue would not survive a recreate"
            )


def test_compose_loads_this_collector_config() -> None:
    collector_host, _ = _prometheus_target("otel-collector")
    service = service_as_written(collector_host)
    mounted = _container_path(service, COLLECTOR_CONFIG)
    assert mounted is not None, "compose does not mount otel/config.yml into the collector"
    loaded = _flag_value(_command(service), "--config") or COLLECTOR_DEFAULT_CONFIG_PATH
    assert loaded == mounted, f"the collector loads {loaded}, otel/config.yml is at {mounted}"


@pytest.mark.parametrize("job", ["otel-collector", "tempo"])
def test_compose_healthcheck_needs_no_missing_tool(job: str) -> None:
    host, _ = _prometheus_target(job)
    healthcheck = service_as_written(host).get("healthcheck")
    if healthcheck is None or healthcheck.get("disable") is True:
        return
    assert healthcheck.get("test") in (["NONE"], "NONE"), (
        f"{host}: {IMAGES_WITHOUT_TOOLS[job]}, so healthcheck {healthcheck.get('test')!r} "
        "can never pass and everything that depends_on it being healthy never starts"
    )


def test_collector_telemetry_is_where_prometheus_scrapes() -> None:
    config = _collector()
    reader = _prometheus_reader(config)
    _, scrape_port = _prometheus_target("otel-collector")
    assert reader["host"] == "0.0.0.0", "Prometheus scrapes from another container"
    assert reader["port"] == scrape_port, "collector metrics port != Prometheus scrape target"
    assert "address" not in config["service"]["telemetry"]["metrics"], (
        "service.telemetry.metrics.address is ignored since 0.123 (stable in 0.128): use readers"
    )
    assert config["service"]["telemetry"]["logs"]["level"] == "info"


def test_health_check_listens_on_all_interfaces() -> None:
    for name, body in _collector()["extensions"].items():
        if _component_type(name) == "health_check":
            host, _ = _host_port(body["endpoint"])
            assert host == "0.0.0.0", "the health check must be reachable from outside"


# --- Tempo ----------------------------------------------------------------------------


def test_tempo_top_level_blocks_exist_in_tempo_2() -> None:
    unknown = set(_tempo()) - TEMPO_TOP_LEVEL
    assert not unknown, f"Tempo 2 refuses to start on unknown top-level keys: {unknown}"


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_tempo_receivers_listen_on_all_interfaces(protocol: str) -> None:
    host, _ = _tempo_receiver(protocol)
    assert host == "0.0.0.0", f"Tempo's OTLP {protocol} receiver must listen on 0.0.0.0"


def test_tempo_http_port_is_where_prometheus_scrapes() -> None:
    _, scrape_port = _prometheus_target("tempo")
    assert _tempo()["server"]["http_listen_port"] == scrape_port


def test_tempo_remote_writes_exemplars_to_prometheus() -> None:
    remote_writes = _tempo()["metrics_generator"]["storage"]["remote_write"]
    assert remote_writes, "the metrics-generator writes nowhere"
    # Prometheus scrapes itself on its own listen address: that port is the one to write to.
    _, prometheus_port = _prometheus_target("prometheus")
    for remote_write in remote_writes:
        url = urlsplit(remote_write["url"])
        assert url.scheme == "http"
        assert url.port == prometheus_port, (
            f"{url.geturl()}: Prometheus listens on {prometheus_port}"
        )
        assert url.path == PROMETHEUS_REMOTE_WRITE_PATH
        assert remote_write.get("send_exemplars") is True, "span metrics lose their trace links"


def test_remote_write_target_is_the_compose_prometheus() -> None:
    for remote_write in _tempo()["metrics_generator"]["storage"]["remote_write"]:
        host = urlsplit(remote_write["url"]).hostname
        assert host is not None
        command = _command(service_as_written(host))
        assert "--web.enable-remote-write-receiver" in command, f"{host} refuses remote writes"
        features = ",".join(_flag_values(command, "--enable-feature")).split(",")
        assert "exemplar-storage" in features, f"{host} drops the exemplars Tempo sends"


def test_tempo_retention_is_a_go_duration() -> None:
    retention = _tempo()["compactor"]["compaction"]["block_retention"]
    assert _go_duration_seconds(retention) > 0


def test_tempo_generates_span_and_service_graph_metrics() -> None:
    overrides = _tempo()["overrides"]
    assert "metrics_generator_processors" not in overrides, "legacy overrides format"
    processors = set(overrides["defaults"]["metrics_generator"]["processors"])
    assert processors <= TEMPO_PROCESSORS, f"unknown processors: {processors - TEMPO_PROCESSORS}"
    assert processors >= TEMPO_REQUIRED_PROCESSORS


def _grafana_datasources(kind: str) -> list[dict[str, Any]]:
    found = [
        _mapping(entry, "datasource")
        for path in sorted(DATASOURCES_DIR.glob("*.yml"))
        for entry in _load(path).get("datasources") or []
        if entry.get("type") == kind
    ]
    assert found, f"no {kind} datasource provisioned in {DATASOURCES_DIR}"
    return found


def tempo_exemplar_trace_id_label(config: dict[str, Any]) -> str:
    """The exemplar label Tempo's metrics generator writes the trace id to."""
    generator = config.get("overrides", {}).get("defaults", {}).get("metrics_generator", {})
    return str(generator.get("trace_id_label_name") or TEMPO_DEFAULT_TRACE_ID_LABEL)


def test_tempo_exemplars_link_to_their_trace() -> None:
    """Grafana turns an exemplar into a trace link only through a destination naming the
    exemplar's label. Tempo's span-metrics and service-graph exemplars use its own label
    (``traceID`` by default), not the agent's ``trace_id``: without a destination for it
    they show as dots that open nothing."""
    tempo_uids = {entry["uid"] for entry in _grafana_datasources("tempo")}
    label = tempo_exemplar_trace_id_label(_tempo())
    for prometheus in _grafana_datasources("prometheus"):
        destinations = prometheus.get("jsonData", {}).get("exemplarTraceIdDestinations") or []
        names = {d["name"] for d in destinations if d.get("datasourceUid") in tempo_uids}
        assert label in names, (
            f"datasource {prometheus['name']!r}: no exemplarTraceIdDestinations entry named "
            f"{label!r} (Tempo's exemplar label) pointing at Tempo; it has {sorted(names)}"
        )


@pytest.mark.parametrize(
    ("overrides", "label"),
    [
        ({}, "traceID"),
        ({"defaults": {"metrics_generator": {"processors": []}}}, "traceID"),
        ({"defaults": {"metrics_generator": {"trace_id_label_name": "trace_id"}}}, "trace_id"),
    ],
)
def test_tempo_exemplar_label_follows_the_overrides(overrides: dict[str, Any], label: str) -> None:
    assert tempo_exemplar_trace_id_label({"overrides": overrides}) == label


def test_grafana_streams_the_search_tempo_streams() -> None:
    """stream_over_http_enabled only opens Tempo's streaming endpoints; Grafana's Tempo
    data source uses them only with jsonData.streamingEnabled.search (Grafana 11.6)."""
    assert _tempo().get("stream_over_http_enabled") is True
    for tempo in _grafana_datasources("tempo"):
        streaming = tempo.get("jsonData", {}).get("streamingEnabled") or {}
        assert streaming.get("search") is True, (
            f"datasource {tempo['name']!r} does not set jsonData.streamingEnabled.search"
        )


def test_tempo_does_not_report_usage() -> None:
    assert _tempo()["usage_report"]["reporting_enabled"] is False


def test_tempo_data_lives_on_a_compose_volume() -> None:
    config = _tempo()
    tempo_host, _ = _prometheus_target("tempo")
    targets = [target for _, target in _mount_targets(service_as_written(tempo_host))]
    trace = config["storage"]["trace"]
    directories = [
        trace["wal"]["path"],
        trace["local"]["path"],
        config["metrics_generator"]["storage"]["path"],
    ]
    for path in directories:
        assert any(_is_under(path, target) for target in targets), f"{path} is not on a volume"


def test_compose_loads_this_tempo_config() -> None:
    tempo_host, _ = _prometheus_target("tempo")
    service = service_as_written(tempo_host)
    mounted = _container_path(service, TEMPO_CONFIG)
    assert mounted is not None, "compose does not mount tempo/tempo.yml into Tempo"
    loaded = _flag_value(_command(service), "-config.file")
    assert loaded == mounted, f"Tempo loads {loaded}, tempo/tempo.yml is at {mounted}"


# --- the helpers' own contract ----------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("336h", 1_209_600.0), ("1m30s", 90.0), ("1s", 1.0)])
def test_go_duration_parser_reads_go_durations(text: str, seconds: float) -> None:
    assert _go_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["14d", "2w", "336", "", "1h 30m"])
def test_go_duration_parser_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(AssertionError):
        _go_duration_seconds(text)


def collector_unknown_key_paths(config: dict[str, Any]) -> list[str]:
    unknown = [key for key in config if key not in COLLECTOR_TOP_LEVEL]
    for kind, schemas in COLLECTOR_COMPONENT_SCHEMAS.items():
        for component_id, body in (config.get(kind) or {}).items():
            schema = schemas.get(_component_type(component_id))
            if schema is None:
                unknown.append(f"{kind}.{component_id} (no key allow-list for this type)")
            else:
                unknown += unknown_key_paths(body, schema, f"{kind}.{component_id}")
    unknown += unknown_key_paths(config.get("service"), COLLECTOR_SERVICE_SCHEMA, "service")
    return unknown


def collector_value_problems(config: dict[str, Any]) -> list[str]:
    """Cross-field rules the collector's Validate() enforces at start-up."""
    problems: list[str] = []
    for name, body in (config.get("processors") or {}).items():
        kind = _component_type(name)
        if kind == "batch":
            # batchprocessor Config.Validate: a max below the batch size is refused.
            size, maximum = body.get("send_batch_size", 8192), body.get("send_batch_max_size", 0)
            if maximum and maximum < size:
                problems.append(f"{name}: send_batch_max_size {maximum} < send_batch_size {size}")
        if kind == "memory_limiter":
            # memorylimiter Config.Validate: the spike must be below the limit.
            limit, spike = body.get("limit_mib", 0), body.get("spike_limit_mib", 0)
            if not 0 < spike < limit:
                problems.append(f"{name}: spike_limit_mib {spike} is not in (0, {limit})")
    for name, body in (config.get("exporters") or {}).items():
        queue = body.get("sending_queue") or {}
        for key in ("num_consumers", "queue_size"):
            if key in queue and queue[key] <= 0:
                problems.append(f"{name}: sending_queue.{key} must be positive")
    return problems


TEMPO_SCHEMA: Schema = {block: TEMPO_BLOCK_SCHEMAS.get(block) for block in TEMPO_TOP_LEVEL}


def test_every_collector_key_path_exists_in_the_pinned_release() -> None:
    unknown = collector_unknown_key_paths(_collector())
    assert not unknown, (
        f"otelcol-contrib {COLLECTOR_VERSION} refuses unknown keys at start-up: {unknown}"
    )


def test_collector_values_pass_the_collector_validation() -> None:
    assert collector_value_problems(_collector()) == []


def test_every_tempo_key_path_exists_in_tempo_2() -> None:
    unknown = unknown_key_paths(_tempo(), TEMPO_SCHEMA)
    assert not unknown, f"Tempo {TEMPO_VERSION} refuses unknown keys at start-up: {unknown}"


def _at(config: dict[str, Any], path: str) -> dict[str, Any]:
    node: Any = config
    for key in path.split("|"):
        node = node[int(key)] if isinstance(node, list) else node[key]
    return _mapping(node, path)


def _rename(path: str, old: str, new: str) -> Any:
    def mutate(config: dict[str, Any]) -> None:
        parent = _at(config, path)
        parent[new] = parent.pop(old)

    return mutate


def _set(path: str, key: str, value: object) -> Any:
    def mutate(config: dict[str, Any]) -> None:
        _at(config, path)[key] = value

    return mutate


# Paths are split on "|" since component ids and keys may contain dots or slashes.
KEY_MUTATIONS = [
    ("tempo", _rename("ingester", "max_block_bytes", "max_block_byte"), "max_block_byte"),
    (
        "tempo",
        _rename("ingester|lifecycler|ring", "replication_factor", "replication_factr"),
        "ingester.lifecycler.ring.replication_factr",
    ),
    ("tempo", _rename("storage|trace|wal", "path", "pth"), "storage.trace.wal.pth"),
    (
        "tempo",
        _set("metrics_generator|storage|remote_write|0", "send_exemplar", True),
        "metrics_generator.storage.remote_write[0].send_exemplar",
    ),
    (
        "collector",
        _rename("extensions|file_storage", "create_directory", "create_dir"),
        "extensions.file_storage.create_dir",
    ),
    (
        "collector",
        _set("exporters|otlp_grpc/tempo|retry_on_failure", "initial_intervl", "1s"),
        "exporters.otlp_grpc/tempo.retry_on_failure.initial_intervl",
    ),
    (
        "collector",
        _rename("exporters|otlp_grpc/tempo|sending_queue", "num_consumers", "consumers"),
        "exporters.otlp_grpc/tempo.sending_queue.consumers",
    ),
    (
        "collector",
        _set("service|telemetry|metrics|readers|0|pull|exporter|prometheus", "hots", "x"),
        "service.telemetry.metrics.readers[0].pull.exporter.prometheus.hots",
    ),
]


@pytest.mark.parametrize(
    ("target", "mutate", "expected"), KEY_MUTATIONS, ids=[m[2] for m in KEY_MUTATIONS]
)
def test_a_nested_key_typo_is_caught(target: str, mutate: Any, expected: str) -> None:
    config = _tempo() if target == "tempo" else _collector()
    mutate(config)
    unknown = (
        unknown_key_paths(config, TEMPO_SCHEMA)
        if target == "tempo"
        else collector_unknown_key_paths(config)
    )
    assert any(path.endswith(expected) for path in unknown), f"{expected} passed: {unknown}"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set("processors|batch", "send_batch_max_size", 512), "send_batch_max_size 512"),
        (_set("processors|memory_limiter", "spike_limit_mib", 384), "spike_limit_mib 384"),
        (_set("exporters|otlp_grpc/tempo|sending_queue", "queue_size", 0), "queue_size"),
    ],
    ids=["batch-max-below-size", "spike-not-below-limit", "empty-queue"],
)
def test_an_invalid_collector_value_is_caught(mutate: Any, expected: str) -> None:
    config = _collector()
    mutate(config)
    problems = collector_value_problems(config)
    assert any(expected in problem for problem in problems), problems


def test_gomemlimit_sits_between_memory_limiter_and_container_limit() -> None:
    collector_host, _ = _prometheus_target("otel-collector")
    service = service_as_written(collector_host)
    gomemlimit = _environment(service).get("GOMEMLIMIT")
    assert gomemlimit is not None, f"compose service {collector_host} sets no GOMEMLIMIT"
    container = service["deploy"]["resources"]["limits"]["memory"]
    limit_mib = _collector()["processors"]["memory_limiter"]["limit_mib"]
    # Above the limiter, so the limiter (not a GC spiral) sheds load first; below the
    # container limit, so the Go runtime collects before the kernel OOM-kills.
    assert limit_mib < _memory_mib(gomemlimit) < _memory_mib(container), (
        f"GOMEMLIMIT {_interpolate(gomemlimit)} must lie between memory_limiter.limit_mib "
        f"{limit_mib} MiB and the container limit {_interpolate(str(container))}"
    )
