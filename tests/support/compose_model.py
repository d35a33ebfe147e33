"""The stack's hardening rules, checked on the model Compose v2 itself renders.

Every check takes a ``Stack`` (a compose file, an env file and a way to render them
with the real ``docker-compose config``) and returns the broken properties, one
message each, so that tests/stack/test_compose.py runs the same checks on the repository
and on mutated copies (which proves each check can fail).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from neuros.auth.admin_token import ADMIN_TOKEN_FILE
from neuros.config import DEFAULT_PORT, METRICS_PORT
from stacktools import compose, paths
from stacktools.check_stack.files import load_yaml
from stacktools.paths import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / paths.COMPOSE_FILE
# The opt-in scale override, rendered on top of COMPOSE_FILE.
SCALE_FILE = REPO_ROOT / paths.SCALE_COMPOSE_FILE
HAPROXY_CONFIG = REPO_ROOT / paths.HAPROXY_CONFIG
ENV_EXAMPLE = REPO_ROOT / paths.ENV_EXAMPLE
OTEL_CONFIG = REPO_ROOT / paths.OTEL_CONFIG
TEMPO_CONFIG = REPO_ROOT / paths.TEMPO_CONFIG
ALERTMANAGER_CONFIG = REPO_ROOT / paths.ALERTMANAGER_CONFIG
DASHBOARD_PROVIDERS = REPO_ROOT / paths.DASHBOARD_PROVIDERS
PYPROJECT = REPO_ROOT / paths.PYPROJECT

PASSWORD_VARIABLE = "GRAFANA_ADMIN_PASSWORD"  # noqa: S105 - a name, not a value
# The demo profile: its token file (scripts/setup.sh writes it) and the id space its
# synthetic users live in (k6/scenarios/demo.js builds them; the token reaches only
# them). Checked against setup.sh, the compose file and the k6 script.
DEMO_SERVICE = "demo"
DEMO_TOKEN_FILE = "secrets/neuros-demo-token"  # noqa: S105 - a path, not a value
DEMO_USER_PREFIX = "demo-"
POSTGRES_PASSWORD_VARIABLE = "POSTGRES_PASSWORD"  # noqa: S105 - a name, not a value
REPLICAS_VARIABLE = "NEUROS_REPLICAS"
LOOPBACK = "127.0.0.1"

Model = dict[str, Any]
Service = dict[str, Any]

# The image each service runs, by the .env.example variable that pins it.
IMAGE_VARIABLES: dict[str, str] = {
    "prometheus": "PROMETHEUS_IMAGE",
    "alertmanager": "ALERTMANAGER_IMAGE",
    "grafana": "GRAFANA_IMAGE",
    "tempo": "TEMPO_IMAGE",
    "otel-collector": "OTELCOL_IMAGE",
    "node-exporter": "NODE_EXPORTER_IMAGE",
}
# The scale override's services, by the same rule.
POSTGRES = "postgres"
LOAD_BALANCER = "neuros-lb"
SCALE_IMAGE_VARIABLES: dict[str, str] = {
    POSTGRES: "POSTGRES_IMAGE",
    LOAD_BALANCER: "HAPROXY_IMAGE",
}
# The majors (and for HAProxy the minor: 3.0 is the LTS branch) the scale images pin.
SCALE_IMAGE_VERSIONS: dict[str, str] = {POSTGRES: "17", LOAD_BALANCER: "3.0"}
POSTGRES_DATA = "/var/lib/postgresql/data"
POSTGRES_PORT = 5432
HAPROXY_CONFIG_TARGET = "/usr/local/etc/haproxy/haproxy.cfg"
# HAProxy's `server-template` slots: NEUROS_REPLICAS may not exceed them.
SERVER_TEMPLATE = re.compile(r"^\s*server-template\s+\S+\s+(?P<slots>\d+)\s+(?P<address>\S+)", re.M)
# The agent's own image (built from neuros/Dockerfile), also used by the one-shot.
AGENT_IMAGE_SERVICES = ("neuros", "volume-init")
AGENT_TAG_VARIABLE = "NEUROS_IMAGE_TAG"
AGENT_DOCKERFILE = "neuros/Dockerfile"
EXPECTED_SERVICES = frozenset(IMAGE_VARIABLES) | frozenset(AGENT_IMAGE_SERVICES)

# Runs once at `up` and exits; exempt from restart, healthcheck and the non-root rule.
ONE_SHOT = "volume-init"
# Images with no shell, HTTP client or busybox, so a compose healthcheck has nothing to
# run; their "target down" alerts in Prometheus watch them instead.
IMAGES_WITHOUT_TOOLS: dict[str, str] = {
    # opentelemetry-collector-releases distributions/otelcol-contrib/Dockerfile
    "otel-collector": "the contrib image is FROM scratch with only /otelcol-contrib",
    # Tempo 2.10 upgrade notes, "Busybox removed from Tempo image" (grafana/tempo#5717)
    "tempo": "Tempo 2.10 images are distroless static without busybox (grafana/tempo#5717)",
}
HEALTHCHECK_EXEMPT = frozenset({*IMAGES_WITHOUT_TOOLS, ONE_SHOT})
# volume-init must chown fresh (root-owned) named volumes, so it runs as root, but
# with CAP_CHOWN as its only capability.
ROOT_EXEMPT: dict[str, frozenset[str]] = {ONE_SHOT: frozenset({"CHOWN"})}
PUBLISHING_SERVICES = frozenset({"grafana", "neuros"})
# With the scale override the load balancer publishes the API in the agent's place.
SCALE_PUBLISHING_SERVICES = frozenset({"grafana", "neuros-lb"})
AGENT = "neuros"
# The agent's tokens folder: compose mounts ${TOKENS_DIR_VARIABLE:-./secrets/neuros} there
# (tests/support/dockerstack.py points the variable at a temporary folder).
TOKENS_DIR_VARIABLE = "NEUROS_API_TOKENS_DIR"

# Read-only config bind mounts: service -> (repository path, container path).
CONFIG_MOUNTS: dict[str, tuple[tuple[str, str], ...]] = {
    "prometheus": (("prometheus", "/etc/prometheus"),),
    "alertmanager": (("prometheus/alertmanager.yml", "/etc/alertmanager/alertmanager.yml"),),
    "grafana": (
        ("grafana/provisioning", "/etc/grafana/provisioning"),
        ("grafana/dashboards", "/var/lib/grafana/dashboards"),
    ),
    "tempo": (("tempo", "/etc/tempo"),),
    "otel-collector": (("otel", "/etc/otelcol-contrib"),),
}
# The flag naming each service's config file, which must be inside its config mount.
CONFIG_FLAGS: dict[str, str] = {
    "prometheus": "--config.file",
    "alertmanager": "--config.file",
    "tempo": "-config.file",
    "otel-collector": "--config",
}
# Data directories on named volumes; the collector queue's is read from otel/config.yml
# (see data_volume_targets), and the agent's must hold NEUROS_DB_PATH.
DATA_VOLUMES: dict[str, str] = {
    "neuros": "/data",
    "prometheus": "/prometheus",
    "grafana": "/var/lib/grafana",
    "tempo": "/var/tempo",
    "alertmanager": "/alertmanager",
}
# Tools that exist in each image family, for healthcheck commands.
IMAGE_TOOLS: dict[str, frozenset[str]] = {
    "prom/": frozenset({"wget"}),  # busybox-based
    "grafana/grafana:": frozenset({"wget"}),  # alpine/ubuntu-based, ships wget
    "neuros:": frozenset({"python3"}),  # python slim, no curl or wget
    "postgres:": frozenset({"pg_isready"}),
    "haproxy:": frozenset({"bash"}),  # Debian-based upstream image: bash, no HTTP client
}

EXACT_TAG = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
# PostgreSQL numbers its releases major.minor since 10: 17.12 is one exact release.
TWO_PART_TAG = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)$")
TWO_PART_VERSIONED = frozenset({POSTGRES})


def exact_tag(service: str, tag: str) -> re.Match[str] | None:
    pattern = TWO_PART_TAG if service in TWO_PART_VERSIONED else EXACT_TAG
    return pattern.match(tag)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a Compose env file (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


@dataclass(frozen=True)
class Stack:
    """A compose file and env file, rendered by the real Compose v2."""

    compose_binary: str
    password: str
    compose_file: Path = COMPOSE_FILE
    env_file: Path = ENV_EXAMPLE
    # Files rendered on top of compose_file (the scale override), and the database
    # password the override requires; None renders without it.
    overrides: tuple[Path, ...] = ()
    postgres_password: str | None = None
    # Read by the scale checks; tests point it at a mutated copy.
    haproxy_config: Path = HAPROXY_CONFIG

    @property
    def is_scale(self) -> bool:
        return bool(self.overrides)

    def environ(
        self, env: Mapping[str, str] | None = None, *, with_password: bool = True
    ) -> dict[str, str]:
        """A clean environment for Compose (PATH, HOME, the passwords), plus ``env``."""
        environ = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/")}
        if with_password:
            environ[PASSWORD_VARIABLE] = self.password
            if self.postgres_password is not None:
                environ[POSTGRES_PASSWORD_VARIABLE] = self.postgres_password
        environ.update(env or {})
        return environ

    def render(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        env_file: Path | None = None,
        with_password: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """``docker-compose config ARGS`` in a clean environment, plus ``env``.

        Relative paths resolve against the repository even for a copy elsewhere.
        """
        return compose.render(
            self.compose_binary,
            [self.compose_file, *self.overrides],
            *args,
            env_file=env_file or self.env_file,
            environ=self.environ(env, with_password=with_password),
        )

    def render_model(
        self, *, env: Mapping[str, str] | None = None, env_file: Path | None = None
    ) -> Model:
        return compose.rendered(
            self.compose_binary,
            [self.compose_file, *self.overrides],
            env_file=env_file or self.env_file,
            environ=self.environ(env),
        )

    @cached_property
    def model(self) -> Model:
        return self.render_model()

    @cached_property
    def env(self) -> dict[str, str]:
        return read_env_file(self.env_file)

    @property
    def services(self) -> dict[str, Service]:
        services: dict[str, Service] = self.model["services"]
        return services


Check = Callable[[Stack], list[str]]


# --- helpers on the rendered model -------------------------------------------------


def mounts(service: Service, kind: str) -> list[dict[str, Any]]:
    return [volume for volume in service.get("volumes") or [] if volume.get("type") == kind]


def flag_value(service: Service, flag: str) -> str | None:
    for argument in service.get("command") or []:
        name, _, value = str(argument).partition("=")
        if name == flag:
            return value
    return None


def under(path: str, directory: str) -> bool:
    return (
        PurePosixPath(path) == PurePosixPath(directory)
        or PurePosixPath(directory) in PurePosixPath(path).parents
    )


def host_path(service: Service, container_path: str) -> Path | None:
    """Where a container path of a bind mount lives on the host (the deepest mount
    wins, as in the container: the scale override mounts a file into a folder mount)."""
    binds = sorted(mounts(service, "bind"), key=lambda m: len(PurePosixPath(m["target"]).parts))
    for mount in reversed(binds):
        if under(container_path, mount["target"]):
            relative = PurePosixPath(container_path).relative_to(mount["target"])
            return Path(mount["source"]) / relative
    return None


def expected_image(service: str, env: Mapping[str, str]) -> str | None:
    if service in AGENT_IMAGE_SERVICES:
        tag = env.get(AGENT_TAG_VARIABLE)
        return None if tag is None else f"neuros:{tag}"
    variable = IMAGE_VARIABLES.get(service) or SCALE_IMAGE_VARIABLES.get(service)
    return None if variable is None else env.get(variable)


def split_image(image: str) -> tuple[str, str | None]:
    """``(repository, tag)`` of an image reference, ignoring any digest."""
    reference = image.split("@", 1)[0]
    name, colon, tag = reference.rpartition(":")
    if not colon or "/" in tag:
        return reference, None
    return name, tag


def has_healthcheck(service: Service) -> bool:
    check = service.get("healthcheck")
    if not check or check.get("disable"):
        return False
    test = check.get("test") or []
    return bool(test) and test[0] != "NONE"


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key), value
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def otel_queue_directory() -> str:
    directory: str = load_yaml(OTEL_CONFIG)["extensions"]["file_storage"]["directory"]
    return directory


def otlp_http_port() -> str:
    endpoint: str = load_yaml(OTEL_CONFIG)["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    return endpoint.rsplit(":", 1)[1]


def data_volume_targets(stack: Stack) -> dict[str, str]:
    targets = dict(DATA_VOLUMES)
    targets["otel-collector"] = otel_queue_directory()
    return targets


def grafana_sdk_minor() -> str:
    """``major.minor`` of the Grafana the pinned grafana-foundation-sdk is built for."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for requirement in project["optional-dependencies"]["test"]:
        if requirement.startswith("grafana-foundation-sdk=="):
            version = str(requirement).split("!", 1)[1]
            return ".".join(version.split(".")[:2])
    raise AssertionError("pyproject.toml pins no grafana-foundation-sdk")


# --- checks ------------------------------------------------------------------------


def check_services(stack: Stack) -> list[str]:
    problems: list[str] = []
    names = set(stack.services)
    if missing := sorted(EXPECTED_SERVICES - names):
        problems.append(f"services missing: {missing}")
    if extra := sorted(names - EXPECTED_SERVICES):
        problems.append(f"unexpected services (add them to the rules first): {extra}")
    build = stack.services.get("neuros", {}).get("build") or {}
    if build.get("dockerfile") != AGENT_DOCKERFILE or build.get("context") != str(REPO_ROOT):
        problems.append(f"neuros: not built from {AGENT_DOCKERFILE} in the repository: {build}")
    return problems


def check_images(stack: Stack) -> list[str]:
    problems: list[str] = []
    for name, service in stack.services.items():
        image = str(service.get("image") or "")
        want = expected_image(name, stack.env)
        if want is None or image != want:
            problems.append(f"{name}: image {image!r} is not the .env.example pin {want!r}")
        _, tag = split_image(image)
        if tag is None:
            problems.append(f"{name}: image {image!r} has no tag")
        elif tag == "latest" or not exact_tag(name, tag):
            problems.append(f"{name}: image {image!r} is not pinned to an exact version")
    majors = {"prometheus": "3", "tempo": "2"}
    for name, major in majors.items():
        _, tag = split_image(str(stack.services.get(name, {}).get("image") or ""))
        found = EXACT_TAG.match(tag or "")
        if found is None or found["major"] != major:
            problems.append(f"{name}: image tag {tag!r} is not major version {major}")
    collector, _ = split_image(str(stack.services.get("otel-collector", {}).get("image") or ""))
    if not collector.endswith("opentelemetry-collector-contrib"):
        problems.append(f"otel-collector: {collector!r} is not the contrib distribution")
    _, tag = split_image(str(stack.services.get("grafana", {}).get("image") or ""))
    found = EXACT_TAG.match(tag or "")
    sdk = grafana_sdk_minor()
    if found is None or f"{found['major']}.{found['minor']}" != sdk:
        problems.append(f"grafana: tag {tag!r} is not the {sdk}.x the dashboards SDK is for")
    return problems


def check_image_variables(stack: Stack) -> list[str]:
    """Each image follows its variable: nothing is hard-coded in the compose file."""
    variables = [*IMAGE_VARIABLES.values(), *SCALE_IMAGE_VARIABLES.values()]
    probe = {variable: f"{stack.env.get(variable, 'x:1')}-probe" for variable in variables}
    probe[AGENT_TAG_VARIABLE] = f"{stack.env.get(AGENT_TAG_VARIABLE, '0')}-probe"
    rendered = stack.render_model(env=probe)["services"]
    problems: list[str] = []
    for name, service in rendered.items():
        want = expected_image(name, probe)
        if service.get("image") != want:
            problems.append(
                f"{name}: image {service.get('image')!r} ignores its variable (wanted {want!r})"
            )
    return problems


def check_config_mounts(stack: Stack) -> list[str]:
    problems: list[str] = []
    for name, service in stack.services.items():
        for mount in mounts(service, "bind"):
            if not mount.get("read_only"):
                problems.append(f"{name}: bind mount {mount['target']} is not read-only")
    for name, wanted in CONFIG_MOUNTS.items():
        binds = {mount["target"]: mount for mount in mounts(stack.services.get(name, {}), "bind")}
        for source, target in wanted:
            bind = binds.get(target)
            if bind is None or bind.get("source") != str(REPO_ROOT / source):
                problems.append(f"{name}: ./{source} is not bind-mounted at {target}")
            elif not bind.get("read_only"):
                problems.append(f"{name}: config mount {target} is not read-only")
    for name, flag in CONFIG_FLAGS.items():
        service = stack.services.get(name, {})
        value = flag_value(service, flag)
        config = host_path(service, value) if value else None
        if value is None:
            problems.append(f"{name}: command has no {flag}")
        elif config is None or not config.is_file():
            problems.append(f"{name}: {flag}={value} is not a file in its config mount")
    grafana = stack.services.get("grafana", {})
    provisioning = (grafana.get("environment") or {}).get("GF_PATHS_PROVISIONING")
    provisioned = host_path(grafana, provisioning) if provisioning else None
    if provisioned != REPO_ROOT / paths.GRAFANA_PROVISIONING_DIR:
        problems.append(
            f"grafana: GF_PATHS_PROVISIONING={provisioning} is not ./grafana/provisioning"
        )
    for provider in load_yaml(DASHBOARD_PROVIDERS)["providers"]:
        path = provider["options"]["path"]
        if host_path(grafana, path) != REPO_ROOT / paths.DASHBOARDS_DIR:
            problems.append(f"grafana: dashboard provider path {path} is not ./grafana/dashboards")
    return problems


def check_wiring(stack: Stack) -> list[str]:
    problems: list[str] = []
    services = stack.services
    endpoint = (services.get("neuros", {}).get("environment") or {}).get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    want = f"http://otel-collector:{otlp_http_port()}"
    if endpoint != want:
        problems.append(f"neuros: OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r}, not {want!r}")
    for name, service in services.items():
        for target, spec in (service.get("depends_on") or {}).items():
            condition = spec.get("condition")
            if target not in services:
                problems.append(f"{name}: depends_on unknown service {target!r}")
            elif target == ONE_SHOT:
                if condition != "service_completed_successfully":
                    problems.append(f"{name}: depends_on {target} with {condition}")
            elif has_healthcheck(services[target]) and condition != "service_healthy":
                problems.append(
                    f"{name}: depends_on {target} with {condition}, not service_healthy"
                )
    return problems


def check_healthchecks(stack: Stack) -> list[str]:
    problems: list[str] = []
    for name, service in stack.services.items():
        restart = service.get("restart")
        if name == ONE_SHOT:
            if restart not in (None, "no"):
                problems.append(f"{name}: a one-shot must not restart ({restart!r})")
        elif restart != "unless-stopped":
            problems.append(f"{name}: restart is {restart!r}, not 'unless-stopped'")
        if not has_healthcheck(service):
            if name not in HEALTHCHECK_EXEMPT:
                problems.append(f"{name}: no healthcheck")
            continue
        test = service["healthcheck"]["test"]
        tool = str(test[1]).split()[0] if test[0] == "CMD-SHELL" else str(test[1])
        image = str(service.get("image") or "")
        tools = next((t for prefix, t in IMAGE_TOOLS.items() if image.startswith(prefix)), None)
        if tools is None or tool not in tools:
            problems.append(f"{name}: healthcheck runs {tool!r}, which {image!r} does not have")
    return problems


def check_data_volumes(stack: Stack) -> list[str]:
    problems: list[str] = []
    declared = set(stack.model.get("volumes") or {})
    for name, target in data_volume_targets(stack).items():
        service = stack.services.get(name, {})
        named = {mount["target"]: mount["source"] for mount in mounts(service, "volume")}
        source = named.get(target)
        if source is None or source not in declared:
            problems.append(f"{name}: no named volume at {target}")
    environment = stack.services.get("neuros", {}).get("environment") or {}
    db_path = environment.get("NEUROS_DB_PATH") or ""
    if str(PurePosixPath(db_path).parent) != DATA_VOLUMES["neuros"]:
        problems.append(f"neuros: NEUROS_DB_PATH={db_path!r} is not in {DATA_VOLUMES['neuros']}")
    storage_flags = {"prometheus": "--storage.tsdb.path", "alertmanager": "--storage.path"}
    for name, flag in storage_flags.items():
        value = flag_value(stack.services.get(name, {}), flag)
        if value != DATA_VOLUMES[name]:
            problems.append(f"{name}: {flag}={value} is not its data volume {DATA_VOLUMES[name]}")
    for key, value in walk(load_yaml(TEMPO_CONFIG)):
        if key == "path" and isinstance(value, str) and not under(value, DATA_VOLUMES["tempo"]):
            problems.append(f"tempo: tempo.yml path {value} is outside its data volume")
    return problems


def check_prometheus_flags(stack: Stack) -> list[str]:
    problems: list[str] = []
    prometheus = stack.services.get("prometheus", {})
    for flag, variable in (
        ("--storage.tsdb.retention.time", "PROMETHEUS_RETENTION_TIME"),
        ("--storage.tsdb.retention.size", "PROMETHEUS_RETENTION_SIZE"),
    ):
        value = flag_value(prometheus, flag)
        if value is None or value != stack.env.get(variable):
            problems.append(f"prometheus: {flag}={value}, not {variable}={stack.env.get(variable)}")
    command = prometheus.get("command") or []
    for flag in ("--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage"):
        if flag not in command:
            problems.append(f"prometheus: command lacks {flag}")
    return problems


def check_retention_variable(stack: Stack) -> list[str]:
    """A different PROMETHEUS_RETENTION_TIME in the env file reaches the flag."""
    values = dict(stack.env)
    values["PROMETHEUS_RETENTION_TIME"] = f"{values.get('PROMETHEUS_RETENTION_TIME', '1d')}1"
    with tempfile.TemporaryDirectory() as directory:
        env_file = Path(directory) / "retention.env"
        write_env_file(env_file, values)
        prometheus = stack.render_model(env_file=env_file)["services"].get("prometheus", {})
    value = flag_value(prometheus, "--storage.tsdb.retention.time")
    if value != values["PROMETHEUS_RETENTION_TIME"]:
        return [f"prometheus: retention.time={value} ignores PROMETHEUS_RETENTION_TIME"]
    return []


def check_limits(stack: Stack) -> list[str]:
    problems: list[str] = []
    for name, service in stack.services.items():
        limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        if not limits.get("memory"):
            problems.append(f"{name}: no memory limit")
        logging = service.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file":
            problems.append(f"{name}: logging driver {logging.get('driver')!r}, not json-file")
        for option in ("max-size", "max-file"):
            if not options.get(option):
                problems.append(f"{name}: logging has no {option}")
    return problems


def published(model: Model) -> list[tuple[str, dict[str, Any]]]:
    return [
        (name, port)
        for name, service in model["services"].items()
        for port in service.get("ports") or []
        if port.get("published")
    ]


def check_ports(stack: Stack) -> list[str]:
    problems: list[str] = []
    publishing = SCALE_PUBLISHING_SERVICES if stack.is_scale else PUBLISHING_SERVICES
    for name, port in published(stack.model):
        if name not in publishing:
            problems.append(f"{name}: publishes port {port.get('target')}")
        if port.get("host_ip") != LOOPBACK:
            problems.append(
                f"{name}: port {port.get('published')} binds to {port.get('host_ip')!r},"
                f" not {LOOPBACK}"
            )
    return problems


def check_bind_address_variable(stack: Stack) -> list[str]:
    everywhere = "0.0.0.0"
    model = stack.render_model(env={"BIND_ADDRESS": everywhere})
    return [
        f"{name}: port {port.get('published')} ignores BIND_ADDRESS ({port.get('host_ip')!r})"
        for name, port in published(model)
        if port.get("host_ip") != everywhere
    ]


def check_grafana_security(stack: Stack) -> list[str]:
    problems: list[str] = []
    environment = stack.services.get("grafana", {}).get("environment") or {}
    if environment.get("GF_SECURITY_ADMIN_PASSWORD") != stack.password:
        problems.append(f"grafana: GF_SECURITY_ADMIN_PASSWORD is not {PASSWORD_VARIABLE}")
    for key in ("GF_AUTH_ANONYMOUS_ENABLED", "GF_USERS_ALLOW_SIGN_UP"):
        if environment.get(key) != "false":
            problems.append(f"grafana: {key}={environment.get(key)!r}, not 'false'")
    for label, env in (("unset", {}), ("empty", {PASSWORD_VARIABLE: ""})):
        result = stack.render("-q", env=env, with_password=False)
        if result.returncode == 0 or PASSWORD_VARIABLE not in result.stderr:
            problems.append(
                f"grafana: rendering with {PASSWORD_VARIABLE} {label} does not fail naming it"
                f" (exit {result.returncode})"
            )
    if stack.env.get(PASSWORD_VARIABLE):
        problems.append(f"{stack.env_file.name}: commits a {PASSWORD_VARIABLE} value")
    return problems


def no_new_privileges(service: Service) -> bool:
    allowed = {"no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"}
    return any(option in allowed for option in service.get("security_opt") or [])


def check_hardening(stack: Stack) -> list[str]:
    problems: list[str] = []
    for name, service in stack.services.items():
        user = str(service.get("user") or "")
        uid = user.split(":", 1)[0]
        allowed_caps = ROOT_EXEMPT.get(name, frozenset())
        if name not in ROOT_EXEMPT and (not uid or uid in ("0", "root")):
            problems.append(f"{name}: user {user!r} is not a non-root user")
        if not no_new_privileges(service):
            problems.append(f"{name}: no no-new-privileges:true")
        if "ALL" not in (service.get("cap_drop") or []):
            problems.append(f"{name}: does not cap_drop ALL")
        if extra := set(service.get("cap_add") or []) - allowed_caps:
            problems.append(f"{name}: cap_add {sorted(extra)} beyond {sorted(allowed_caps)}")
    return problems


def check_agent_ports(stack: Stack) -> list[str]:
    """/metrics on neuros/config.py's METRICS_PORT, exposed and scraped but never
    published; the API port (DEFAULT_PORT) is the only one published, and the
    healthcheck asks it for /ready."""
    agent = stack.services.get(AGENT, {})
    problems: list[str] = []
    value = (agent.get("environment") or {}).get("NEUROS_METRICS_PORT")
    if value != str(METRICS_PORT):
        problems.append(
            f"{AGENT}: NEUROS_METRICS_PORT={value!r}, not neuros/config.py's {METRICS_PORT}"
        )
    exposed = {str(port).split("/")[0] for port in agent.get("expose") or []}
    for port in (DEFAULT_PORT, METRICS_PORT):
        if str(port) not in exposed:
            problems.append(f"{AGENT}: does not expose port {port} (exposes {sorted(exposed)})")
    targets = sorted(int(port.get("target", 0)) for port in agent.get("ports") or [])
    if targets != [DEFAULT_PORT]:
        problems.append(
            f"{AGENT}: publishes container ports {targets}; only the API port {DEFAULT_PORT}"
            f" (/metrics is on {METRICS_PORT}, for Prometheus only)"
        )
    test = " ".join(str(part) for part in (agent.get("healthcheck") or {}).get("test") or [])
    if f"127.0.0.1:{DEFAULT_PORT}/ready" not in test:
        problems.append(f"{AGENT}: healthcheck does not ask port {DEFAULT_PORT} for /ready")
    prometheus = stack.services.get("prometheus", {})
    config_flag = flag_value(prometheus, "--config.file")
    config = host_path(prometheus, config_flag) if config_flag else None
    if config is None or not config.is_file():
        return [*problems, f"prometheus: no config file at --config.file={config_flag}"]
    scraped = [
        str(target)
        for job in load_yaml(config).get("scrape_configs") or []
        for static in job.get("static_configs") or []
        for target in static.get("targets") or []
        if str(target).rpartition(":")[0] == AGENT
    ]
    if scraped != [f"{AGENT}:{value}"]:
        problems.append(
            f"prometheus: {config.name} scrapes {scraped}, not the agent's"
            f" NEUROS_METRICS_PORT ({AGENT}:{value})"
        )
    return problems


def check_api_tokens(stack: Stack) -> list[str]:
    """The tokens file is in a read-only bind mount of its folder (an atomic replace of
    the file is seen inside), whose host folder follows TOKENS_DIR_VARIABLE."""
    agent = stack.services.get(AGENT, {})
    path = (agent.get("environment") or {}).get("NEUROS_API_TOKENS_FILE")
    if not path:
        return [f"{AGENT}: no NEUROS_API_TOKENS_FILE"]
    folder = str(PurePosixPath(path).parent)
    binds = {mount["target"]: mount for mount in mounts(agent, "bind")}
    problems: list[str] = []
    if path in binds:
        problems.append(f"{AGENT}: mounts the file {path}, not its folder: replaces stay unseen")
    mount = binds.get(folder)
    if mount is None:
        return [*problems, f"{AGENT}: NEUROS_API_TOKENS_FILE's folder {folder} is not mounted"]
    if not mount.get("read_only"):
        problems.append(f"{AGENT}: tokens folder {folder} is not read-only")
    probe = "/srv/neuros-tokens-probe"  # rendered only, never created
    rendered = stack.render_model(env={TOKENS_DIR_VARIABLE: probe})["services"].get(AGENT, {})
    sources = {m["target"]: m.get("source") for m in mounts(rendered, "bind")}
    if sources.get(folder) != probe:
        problems.append(
            f"{AGENT}: tokens folder {folder} ignores {TOKENS_DIR_VARIABLE}"
            f" (mounts {sources.get(folder)!r})"
        )
    return problems


def check_secrets_ignored(stack: Stack) -> list[str]:
    """.env, the admin token, and the Alertmanager webhook files and the API tokens file
    mounted into the containers are git-ignored."""
    alertmanager = stack.services.get("alertmanager", {})
    candidates = [REPO_ROOT / ".env", REPO_ROOT / ADMIN_TOKEN_FILE]
    agent = stack.services.get(AGENT, {})
    tokens_file = (agent.get("environment") or {}).get("NEUROS_API_TOKENS_FILE")
    tokens_source = host_path(agent, tokens_file) if tokens_file else None
    if tokens_source is None:
        return [f"{AGENT}: NEUROS_API_TOKENS_FILE {tokens_file} is not in a mounted directory"]
    candidates.append(tokens_source)
    for key, value in walk(load_yaml(ALERTMANAGER_CONFIG)):
        if key.endswith("_file") and isinstance(value, str):
            source = host_path(alertmanager, value)
            if source is None:
                return [f"alertmanager: {key} {value} is not in a mounted directory"]
            candidates.append(source)
    problems: list[str] = []
    for path in candidates:
        relative = os.path.relpath(path, REPO_ROOT)
        result = subprocess.run(
            ["git", "check-ignore", "--quiet", "--no-index", relative],
            cwd=REPO_ROOT,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            problems.append(f"secret file {relative} is not git-ignored")
    return problems


CHECKS: tuple[Check, ...] = (
    check_services,
    check_images,
    check_image_variables,
    check_config_mounts,
    check_wiring,
    check_healthchecks,
    check_data_volumes,
    check_prometheus_flags,
    check_retention_variable,
    check_limits,
    check_ports,
    check_bind_address_variable,
    check_grafana_security,
    check_hardening,
    check_agent_ports,
    check_api_tokens,
    check_secrets_ignored,
)


# --- the scale override ------------------------------------------------------------


def haproxy_directives(text: str) -> list[list[str]]:
    """Each non-comment line of an HAProxy config, split into words."""
    lines = (line.split("#", 1)[0].split() for line in text.splitlines())
    return [words for words in lines if words]


def scale_agent_replicas(stack: Stack) -> int:
    replicas = (stack.services.get(AGENT, {}).get("deploy") or {}).get("replicas")
    return int(replicas) if replicas is not None else 1


def check_scale_services(stack: Stack) -> list[str]:
    """The override adds postgres and the load balancer, runs NEUROS_REPLICAS agents
    (at least two, at most HAProxy's server-template slots) and nothing else."""
    problems: list[str] = []
    names = set(stack.services)
    wanted = EXPECTED_SERVICES | frozenset(SCALE_IMAGE_VARIABLES)
    if missing := sorted(wanted - names):
        problems.append(f"services missing: {missing}")
    if extra := sorted(names - wanted):
        problems.append(f"unexpected services (add them to the rules first): {extra}")
    replicas = scale_agent_replicas(stack)
    default = int(stack.env.get(REPLICAS_VARIABLE, "0") or 0)
    if replicas < 2 or replicas != default:
        problems.append(
            f"{AGENT}: {replicas} replica(s), not {REPLICAS_VARIABLE}={default} (at least 2)"
        )
    probe = stack.render_model(env={REPLICAS_VARIABLE: "3"})["services"].get(AGENT, {})
    if (probe.get("deploy") or {}).get("replicas") != 3:
        problems.append(f"{AGENT}: replicas ignore {REPLICAS_VARIABLE}")
    template = SERVER_TEMPLATE.search(stack.haproxy_config.read_text())
    slots = int(template["slots"]) if template else 0
    if replicas > slots:
        problems.append(
            f"{HAPROXY_CONFIG.name}: {slots} server-template slot(s) for {replicas} replicas"
        )
    return problems


def check_scale_images(stack: Stack) -> list[str]:
    problems: list[str] = []
    for name, version in SCALE_IMAGE_VERSIONS.items():
        _, tag = split_image(str(stack.services.get(name, {}).get("image") or ""))
        found = exact_tag(name, tag or "")
        have = "" if found is None else f"{found['major']}.{found['minor']}"
        if found is None or not f"{have}.".startswith(f"{version}."):
            problems.append(f"{name}: image tag {tag!r} is not {version}.x")
    return problems


def check_scale_postgres(stack: Stack) -> list[str]:
    """postgres: never published, password required from the env, data on a named
    volume, pg_isready healthcheck; the agents' URL names it and its credentials."""
    problems: list[str] = []
    postgres = stack.services.get(POSTGRES, {})
    if postgres.get("ports"):
        problems.append(f"{POSTGRES}: publishes {postgres['ports']}; only the agents reach it")
    environment = postgres.get("environment") or {}
    if environment.get(POSTGRES_PASSWORD_VARIABLE) != stack.postgres_password:
        problems.append(f"{POSTGRES}: POSTGRES_PASSWORD is not {POSTGRES_PASSWORD_VARIABLE}")
    for label, env in (("unset", {}), ("empty", {POSTGRES_PASSWORD_VARIABLE: ""})):
        result = stack.render(
            "-q", env={PASSWORD_VARIABLE: stack.password, **env}, with_password=False
        )
        if result.returncode == 0 or POSTGRES_PASSWORD_VARIABLE not in result.stderr:
            problems.append(
                f"{POSTGRES}: rendering with {POSTGRES_PASSWORD_VARIABLE} {label} does not"
                f" fail naming it (exit {result.returncode})"
            )
    if stack.env.get(POSTGRES_PASSWORD_VARIABLE):
        problems.append(f"{stack.env_file.name}: commits a {POSTGRES_PASSWORD_VARIABLE} value")
    declared = set(stack.model.get("volumes") or {})
    named = {m["target"]: m["source"] for m in mounts(postgres, "volume")}
    if named.get(POSTGRES_DATA) not in declared:
        problems.append(f"{POSTGRES}: no named volume at {POSTGRES_DATA}")
    test = (postgres.get("healthcheck") or {}).get("test") or []
    if not has_healthcheck(postgres) or "pg_isready" not in [str(part) for part in test]:
        problems.append(f"{POSTGRES}: healthcheck does not run pg_isready ({test})")
    exposed = {str(port).split("/")[0] for port in postgres.get("expose") or []}
    if str(POSTGRES_PORT) not in exposed:
        problems.append(f"{POSTGRES}: does not expose {POSTGRES_PORT}")
    agent = stack.services.get(AGENT, {})
    agent_env = agent.get("environment") or {}
    url = str(agent_env.get("NEUROS_DATABASE_URL") or "")
    found = re.fullmatch(
        r"postgresql://(?P<user>[^:@]+):(?P<password>[^@]*)@(?P<host>[^:/]+):(?P<port>\d+)/(?P<db>\w+)",
        url,
    )
    want = (
        environment.get("POSTGRES_USER"),
        stack.postgres_password,
        POSTGRES,
        str(POSTGRES_PORT),
        environment.get("POSTGRES_DB"),
    )
    if found is None or found.group("user", "password", "host", "port", "db") != want:
        problems.append(
            f"{AGENT}: NEUROS_DATABASE_URL does not name {POSTGRES}:{POSTGRES_PORT} with its"
            " POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB"
        )
    if "NEUROS_DB_PATH" in agent_env:
        problems.append(f"{AGENT}: NEUROS_DB_PATH is still set: the replicas share postgres")
    condition = ((agent.get("depends_on") or {}).get(POSTGRES) or {}).get("condition")
    if condition != "service_healthy":
        problems.append(f"{AGENT}: does not wait for a healthy {POSTGRES} ({condition})")
    return problems


def check_scale_load_balancer(stack: Stack) -> list[str]:
    """The load balancer publishes the API port in the agent's place (the agent
    publishes nothing), forwards to every replica found through Docker's DNS on the
    agent's API port, checks /ready, retries on connection failures on another
    replica, and its config is the repository's haproxy/haproxy.cfg."""
    problems: list[str] = []
    lb = stack.services.get(LOAD_BALANCER, {})
    agent = stack.services.get(AGENT, {})
    if agent.get("ports"):
        problems.append(f"{AGENT}: publishes {agent['ports']}; the load balancer does")
    ports = lb.get("ports") or []
    published_port = stack.env.get("NEUROS_PUBLISHED_PORT")
    if [str(port.get("published")) for port in ports] != [published_port]:
        problems.append(
            f"{LOAD_BALANCER}: publishes {[p.get('published') for p in ports]}, not only"
            f" NEUROS_PUBLISHED_PORT={published_port}"
        )
    binds = {m["target"]: m for m in mounts(lb, "bind")}
    config = binds.get(HAPROXY_CONFIG_TARGET)
    if config is None or config.get("source") != str(HAPROXY_CONFIG):
        problems.append(f"{LOAD_BALANCER}: ./haproxy/haproxy.cfg is not at {HAPROXY_CONFIG_TARGET}")
    directives = haproxy_directives(stack.haproxy_config.read_text())
    bound = [words[1].rpartition(":")[2] for words in directives if words[0] == "bind"]
    targets = [str(port.get("target")) for port in ports]
    if bound != targets:
        problems.append(
            f"{HAPROXY_CONFIG.name}: binds {bound}, the published targets are {targets}"
        )
    template = SERVER_TEMPLATE.search(stack.haproxy_config.read_text())
    address = template["address"] if template else None
    if address != f"{AGENT}:{DEFAULT_PORT}":
        problems.append(
            f"{HAPROXY_CONFIG.name}: server-template forwards to {address},"
            f" not the agent's API {AGENT}:{DEFAULT_PORT}"
        )
    lines = {" ".join(words) for words in directives}
    for wanted in ("option httpchk GET /ready", "option redispatch 1"):
        if wanted not in lines:
            problems.append(f"{HAPROXY_CONFIG.name}: no `{wanted}`")
    retry_on = next((words[1:] for words in directives if words[0] == "retry-on"), [])
    if "conn-failure" not in retry_on:
        problems.append(f"{HAPROXY_CONFIG.name}: retry-on {retry_on} lacks conn-failure")
    if not any(
        words[:2] == ["nameserver", "dns"] and words[2] == "127.0.0.11:53"
        for words in directives
        if len(words) > 2
    ):
        problems.append(f"{HAPROXY_CONFIG.name}: does not resolve through Docker's DNS")
    condition = ((lb.get("depends_on") or {}).get(AGENT) or {}).get("condition")
    if condition != "service_healthy":
        problems.append(f"{LOAD_BALANCER}: does not wait for a healthy {AGENT} ({condition})")
    return problems


def check_scale_prometheus(stack: Stack) -> list[str]:
    """Prometheus reads the generated scale config, whose job `neuros` discovers every
    replica by DNS (type A) on the agent's service name and metrics port."""
    from stacktools.generate import prometheus_scale

    prometheus = stack.services.get("prometheus", {})
    config_flag = flag_value(prometheus, "--config.file")
    config = host_path(prometheus, config_flag) if config_flag else None
    if config != prometheus_scale.TARGET:
        return [f"prometheus: --config.file={config_flag} is {config}, not the scale config"]
    problems: list[str] = []
    if config.read_text() != prometheus_scale.render():
        problems.append(
            f"{config.name}: stale, run `python -m stacktools.generate.prometheus_scale`"
        )
    port = (stack.services.get(AGENT, {}).get("environment") or {}).get("NEUROS_METRICS_PORT")
    jobs = [
        job for job in load_yaml(config).get("scrape_configs") or [] if job.get("job_name") == AGENT
    ]
    discovery = [sd for job in jobs for sd in job.get("dns_sd_configs") or []]
    statics = [static for job in jobs for static in job.get("static_configs") or []]
    want = {"names": [AGENT], "type": "A", "port": int(port or 0)}
    if len(discovery) != 1 or {k: discovery[0].get(k) for k in want} != want or statics:
        problems.append(
            f"prometheus: {config.name} job {AGENT} finds {discovery} (static {statics}),"
            f" not dns_sd type A on {AGENT}:{port} (NEUROS_METRICS_PORT)"
        )
    return problems


SCALE_CHECKS: tuple[Check, ...] = (
    check_scale_services,
    check_scale_images,
    check_scale_postgres,
    check_scale_load_balancer,
    check_scale_prometheus,
    # The base file's rules, on the merged model: the override's services must be
    # as hardened, capped, health-checked and pinned as the rest.
    check_images,
    check_image_variables,
    check_config_mounts,
    check_wiring,
    check_healthchecks,
    check_limits,
    check_ports,
    check_bind_address_variable,
    check_hardening,
    check_api_tokens,
)
