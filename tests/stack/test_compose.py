"""docker-compose.yml, as rendered by the real Compose v2, keeps its hardening.

The checks live in tests/support/compose_model.py; here they run on the repository (no
problem allowed) and on mutated copies (each must report what was broken).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuros.auth.admin_token import ADMIN_TOKEN_FILE
from neuros.auth.tokens import TOKEN_PREFIX, Scope, new_token
from neuros.auth.tokens_file import TokensFile, dump
from neuros.config import DEFAULT_API_TOKENS_FILE
from stacktools import paths
from stacktools.compose import as_written, service_as_written
from stacktools.paths import REPO_ROOT
from tests.support import compose_model as cm
from tests.support.compose_model import DEMO_TOKEN_FILE, DEMO_USER_PREFIX
from tests.support.tooling import tool


@pytest.fixture(scope="module")
def compose_binary() -> str:
    return tool("docker-compose")


@pytest.fixture(scope="module")
def password() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="module")
def stack(compose_binary: str, password: str) -> cm.Stack:
    return cm.Stack(compose_binary=compose_binary, password=password)


@pytest.mark.parametrize("check", cm.CHECKS, ids=lambda check: check.__name__)
def test_repository_stack(stack: cm.Stack, check: cm.Check) -> None:
    problems = check(stack)
    assert problems == [], f"{check.__name__}: docker-compose.yml broke:\n" + "\n".join(problems)


def test_compose_config_quiet_validates(compose_binary: str, password: str) -> None:
    """The validation step itself: `docker compose config -q` with .env.example."""
    result = subprocess.run(
        [compose_binary, "--env-file", ".env.example", "config", "-q"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", cm.PASSWORD_VARIABLE: password},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"compose config -q rejects the stack: {result.stderr}"
    assert result.stdout == "", f"config -q printed output: {result.stdout!r}"


def test_no_env_file_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    env_files = [
        path
        for path in tracked
        if (name := Path(path).name) == ".env"
        or (name.startswith(".env.") and name != ".env.example")
    ]
    assert env_files == [], f"env files with possible secrets are committed: {env_files}"


# --- mutations: every check must notice what it guards ------------------------------

Compose = dict[str, Any]
Env = dict[str, str]


@dataclass(frozen=True)
class Mutation:
    id: str
    check: cm.Check
    mutate: Callable[[Compose, Env], None]
    expect: str


def services(compose: Compose) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def set_in(path: str, value: Any) -> Callable[[Compose, Env], None]:
    """A mutation setting (or, for None, deleting) ``service.key.key...``."""

    def mutate(compose: Compose, env: Env) -> None:
        *parents, last = path.split(".")
        node = services(compose)
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return mutate


def set_env(variable: str, value: str) -> Callable[[Compose, Env], None]:
    def mutate(compose: Compose, env: Env) -> None:
        env[variable] = value

    return mutate


def replace_in_list(path: str, old: str, new: str | None) -> Callable[[Compose, Env], None]:
    """Replace (or, for None, drop) the list item of ``path`` that starts with ``old``."""

    def mutate(compose: Compose, env: Env) -> None:
        *parents, last = path.split(".")
        node = services(compose)
        for key in parents:
            node = node[key]
        items = [item for item in node[last] if not str(item).startswith(old)]
        assert len(items) == len(node[last]) - 1, f"{old!r} not in {path}"
        index = next(i for i, item in enumerate(node[last]) if str(item).startswith(old))
        node[last] = items if new is None else [*items[:index], new, *items[index:]]

    return mutate


def hard_code_env(
    service: str, key: str, variable: str, template: str
) -> Callable[[Compose, Env], None]:
    """Put the env file's current value into the compose file literally."""

    def mutate(compose: Compose, env: Env) -> None:
        services(compose)[service][key] = template.format(env[variable])

    return mutate


def hard_code_retention(compose: Compose, env: Env) -> None:
    flag = "--storage.tsdb.retention.time="
    replace_in_list("prometheus.command", flag, flag + env["PROMETHEUS_RETENTION_TIME"])(
        compose, env
    )


MUTATIONS = (
    Mutation("drop-node-exporter", cm.check_services, set_in("node-exporter", None), "missing"),
    Mutation(
        "agent-other-dockerfile",
        cm.check_services,
        set_in("neuros.build.dockerfile", "Dockerfile"),
        "neuros/Dockerfile",
    ),
    Mutation(
        "latest-in-compose",
        cm.check_images,
        set_in("prometheus.image", "prom/prometheus:latest"),
        "prometheus: image 'prom/prometheus:latest' is not pinned",
    ),
    Mutation(
        "untagged", cm.check_images, set_env("ALERTMANAGER_IMAGE", "prom/alertmanager"), "no tag"
    ),
    Mutation(
        "minor-only-tag", cm.check_images, set_env("GRAFANA_IMAGE", "grafana/grafana:11.6"), "exact"
    ),
    Mutation(
        "prometheus-2",
        cm.check_images,
        set_env("PROMETHEUS_IMAGE", "prom/prometheus:v2.55.1"),
        "major version 3",
    ),
    Mutation(
        "tempo-3", cm.check_images, set_env("TEMPO_IMAGE", "grafana/tempo:3.0.0"), "major version 2"
    ),
    Mutation(
        "core-collector",
        cm.check_images,
        set_env("OTELCOL_IMAGE", "otel/opentelemetry-collector:0.144.0"),
        "contrib",
    ),
    Mutation(
        "grafana-12",
        cm.check_images,
        set_env("GRAFANA_IMAGE", "grafana/grafana:12.0.0"),
        "dashboards SDK",
    ),
    Mutation(
        "image-hard-coded",
        cm.check_image_variables,
        hard_code_env("alertmanager", "image", "ALERTMANAGER_IMAGE", "{}"),
        "alertmanager: image",
    ),
    Mutation(
        "config-not-read-only",
        cm.check_config_mounts,
        replace_in_list("prometheus.volumes", "./prometheus:", "./prometheus:/etc/prometheus"),
        "prometheus: bind mount /etc/prometheus is not read-only",
    ),
    Mutation(
        "config-not-mounted",
        cm.check_config_mounts,
        replace_in_list("otel-collector.volumes", "./otel:", None),
        "./otel is not bind-mounted",
    ),
    Mutation(
        "config-flag-elsewhere",
        cm.check_config_mounts,
        set_in("tempo.command", ["-config.file=/etc/tempo/missing.yml"]),
        "tempo: -config.file",
    ),
    Mutation(
        "dashboards-mounted-elsewhere",
        cm.check_config_mounts,
        replace_in_list(
            "grafana.volumes", "./grafana/dashboards:", "./grafana/dashboards:/dashboards:ro"
        ),
        "provider path",
    ),
    Mutation(
        "agent-exports-grpc-port",
        cm.check_wiring,
        set_in("neuros.environment.OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel-collector:4317"),
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ),
    Mutation(
        "depends-on-started",
        cm.check_wiring,
        set_in("grafana.depends_on.prometheus.condition", "service_started"),
        "grafana: depends_on prometheus",
    ),
    Mutation(
        "no-healthcheck",
        cm.check_healthchecks,
        set_in("alertmanager.healthcheck", None),
        "alertmanager: no healthcheck",
    ),
    Mutation(
        "healthcheck-curl",
        cm.check_healthchecks,
        set_in("grafana.healthcheck.test", ["CMD", "curl", "-f", "http://127.0.0.1:3000/"]),
        "'curl'",
    ),
    Mutation("no-restart", cm.check_healthchecks, set_in("tempo.restart", "no"), "tempo: restart"),
    Mutation(
        "data-on-bind-mount",
        cm.check_data_volumes,
        replace_in_list("prometheus.volumes", "prometheus-data:", "./data:/prometheus"),
        "prometheus: no named volume at /prometheus",
    ),
    Mutation(
        "db-outside-volume",
        cm.check_data_volumes,
        set_in("neuros.environment.NEUROS_DB_PATH", "/var/lib/neuros/neuros.db"),
        "NEUROS_DB_PATH",
    ),
    Mutation(
        "collector-queue-not-persisted",
        cm.check_data_volumes,
        replace_in_list("otel-collector.volumes", "otel-queue:", None),
        "otel-collector: no named volume",
    ),
    Mutation(
        "retention-literal",
        cm.check_prometheus_flags,
        replace_in_list(
            "prometheus.command",
            "--storage.tsdb.retention.size=",
            "--storage.tsdb.retention.size=50GB",
        ),
        "retention.size",
    ),
    Mutation(
        "no-remote-write",
        cm.check_prometheus_flags,
        replace_in_list("prometheus.command", "--web.enable-remote-write-receiver", None),
        "--web.enable-remote-write-receiver",
    ),
    Mutation(
        "retention-ignores-variable",
        cm.check_retention_variable,
        hard_code_retention,
        "PROMETHEUS_RETENTION_TIME",
    ),
    Mutation(
        "no-memory-limit",
        cm.check_limits,
        set_in("alertmanager.deploy", None),
        "alertmanager: no memory limit",
    ),
    Mutation(
        "uncapped-logs",
        cm.check_limits,
        set_in("grafana.logging", {"driver": "json-file", "options": {"max-size": "10m"}}),
        "grafana: logging has no max-file",
    ),
    Mutation(
        "local-log-driver",
        cm.check_limits,
        set_in("tempo.logging", {"driver": "local"}),
        "tempo: logging driver",
    ),
    Mutation(
        "publish-prometheus",
        cm.check_ports,
        set_in("prometheus.ports", ["${BIND_ADDRESS:-127.0.0.1}:9090:9090"]),
        "prometheus: publishes",
    ),
    Mutation(
        "publish-all-interfaces",
        cm.check_ports,
        set_in("grafana.ports", ["3000:3000"]),
        "grafana: port 3000 binds",
    ),
    Mutation(
        "bind-address-in-env-example",
        cm.check_ports,
        set_env("BIND_ADDRESS", "0.0.0.0"),
        "not 127.0.0.1",
    ),
    Mutation(
        "bind-address-ignored",
        cm.check_bind_address_variable,
        set_in("neuros.ports", ["127.0.0.1:8000:8000"]),
        "neuros: port 8000 ignores BIND_ADDRESS",
    ),
    Mutation(
        "password-default",
        cm.check_grafana_security,
        set_in(
            "grafana.environment.GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_ADMIN_PASSWORD:-admin}"
        ),
        "GRAFANA_ADMIN_PASSWORD unset",
    ),
    Mutation(
        "password-may-be-empty",
        cm.check_grafana_security,
        set_in(
            "grafana.environment.GF_SECURITY_ADMIN_PASSWORD", "${GRAFANA_ADMIN_PASSWORD?required}"
        ),
        "GRAFANA_ADMIN_PASSWORD empty",
    ),
    Mutation(
        "password-committed",
        cm.check_grafana_security,
        set_env("GRAFANA_ADMIN_PASSWORD", "hunter2"),
        "commits a GRAFANA_ADMIN_PASSWORD",
    ),
    Mutation(
        "anonymous-grafana",
        cm.check_grafana_security,
        set_in("grafana.environment.GF_AUTH_ANONYMOUS_ENABLED", "true"),
        "GF_AUTH_ANONYMOUS_ENABLED",
    ),
    Mutation(
        "sign-up-open",
        cm.check_grafana_security,
        set_in("grafana.environment.GF_USERS_ALLOW_SIGN_UP", "true"),
        "GF_USERS_ALLOW_SIGN_UP",
    ),
    Mutation("root-user", cm.check_hardening, set_in("grafana.user", "0"), "grafana: user"),
    Mutation("no-user", cm.check_hardening, set_in("prometheus.user", None), "prometheus: user"),
    Mutation(
        "new-privileges",
        cm.check_hardening,
        set_in("node-exporter.security_opt", None),
        "node-exporter: no no-new-privileges",
    ),
    Mutation(
        "capabilities-kept",
        cm.check_hardening,
        set_in("neuros.cap_drop", None),
        "neuros: does not cap_drop ALL",
    ),
    Mutation(
        "one-shot-extra-capability",
        cm.check_hardening,
        set_in("volume-init.cap_add", ["CHOWN", "DAC_OVERRIDE"]),
        "volume-init: cap_add ['DAC_OVERRIDE']",
    ),
    Mutation(
        "metrics-port-published",
        cm.check_agent_ports,
        set_in(
            "neuros.ports",
            [
                "${BIND_ADDRESS:-127.0.0.1}:${NEUROS_PUBLISHED_PORT:-8000}:8000",
                "${BIND_ADDRESS:-127.0.0.1}:9464:9464",
            ],
        ),
        "neuros: publishes container ports [8000, 9464]",
    ),
    Mutation(
        "metrics-on-api-port",
        cm.check_agent_ports,
        set_in("neuros.environment.NEUROS_METRICS_PORT", None),
        "NEUROS_METRICS_PORT=None",
    ),
    Mutation(
        "metrics-port-moved",
        cm.check_agent_ports,
        set_in("neuros.environment.NEUROS_METRICS_PORT", "9465"),
        "scrapes ['neuros:9464'], not the agent's NEUROS_METRICS_PORT (neuros:9465)",
    ),
    Mutation(
        "metrics-port-not-exposed",
        cm.check_agent_ports,
        replace_in_list("neuros.expose", "9464", None),
        "neuros: does not expose port 9464",
    ),
    Mutation(
        "healthcheck-on-metrics-port",
        cm.check_agent_ports,
        set_in(
            "neuros.healthcheck.test",
            [
                "CMD",
                "python3",
                "-c",
                "import urllib.request as u; u.urlopen('http://127.0.0.1:9464/')",
            ],
        ),
        "healthcheck does not ask port 8000",
    ),
    Mutation(
        "tokens-file-mounted",
        cm.check_api_tokens,
        replace_in_list(
            "neuros.volumes",
            "${NEUROS_API_TOKENS_DIR",
            "./secrets/neuros/tokens.yml:/run/secrets/neuros/tokens.yml:ro",
        ),
        "mounts the file /run/secrets/neuros/tokens.yml, not its folder",
    ),
    Mutation(
        "tokens-dir-hard-coded",
        cm.check_api_tokens,
        replace_in_list(
            "neuros.volumes", "${NEUROS_API_TOKENS_DIR", "./secrets/neuros:/run/secrets/neuros:ro"
        ),
        "ignores NEUROS_API_TOKENS_DIR",
    ),
    Mutation(
        "tokens-writable",
        cm.check_api_tokens,
        replace_in_list(
            "neuros.volumes",
            "${NEUROS_API_TOKENS_DIR",
            "${NEUROS_API_TOKENS_DIR:-./secrets/neuros}:/run/secrets/neuros",
        ),
        "tokens folder /run/secrets/neuros is not read-only",
    ),
    Mutation(
        "tokens-from-tracked-dir",
        cm.check_secrets_ignored,
        replace_in_list(
            "neuros.volumes",
            "${NEUROS_API_TOKENS_DIR",
            "${NEUROS_API_TOKENS_DIR:-./prometheus}:/run/secrets/neuros:ro",
        ),
        "secret file prometheus/tokens.yml is not git-ignored",
    ),
    Mutation(
        "webhooks-from-tracked-dir",
        cm.check_secrets_ignored,
        replace_in_list(
            "alertmanager.volumes",
            "${ALERTMANAGER_SECRETS_DIR",
            "./prometheus:/etc/alertmanager/secrets:ro",
        ),
        "is not git-ignored",
    ),
)


def load_compose() -> Compose:
    # Through JSON: YAML anchors share one object between services, and a mutation
    # must change one service only.
    loaded: Compose = json.loads(json.dumps(as_written()))
    return loaded


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda mutation: mutation.id)
def test_check_reports_mutation(
    mutation: Mutation, tmp_path: Path, compose_binary: str, password: str
) -> None:
    compose, env = load_compose(), cm.read_env_file(cm.ENV_EXAMPLE)
    mutation.mutate(compose, env)
    compose_file, env_file = tmp_path / "docker-compose.yml", tmp_path / "mutated.env"
    compose_file.write_text(yaml.safe_dump(compose, sort_keys=False))
    cm.write_env_file(env_file, env)
    mutated = cm.Stack(compose_binary, password, compose_file=compose_file, env_file=env_file)

    problems = mutation.check(mutated)

    assert any(mutation.expect in problem for problem in problems), (
        f"{mutation.check.__name__} missed mutation {mutation.id!r}"
        f" (wanted {mutation.expect!r}): {problems}"
    )


def test_mutation_cases_cover_every_check() -> None:
    untested = {check.__name__ for check in cm.CHECKS} - {m.check.__name__ for m in MUTATIONS}
    assert not untested, f"checks never shown to fail: {sorted(untested)}"


def test_config_quiet_rejects_an_invalid_file(tmp_path: Path, stack: cm.Stack) -> None:
    compose = load_compose()
    services(compose)["grafana"]["not_a_compose_key"] = True
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(yaml.safe_dump(compose, sort_keys=False))
    invalid = cm.Stack(stack.compose_binary, stack.password, compose_file=compose_file)
    result = invalid.render("-q")
    assert result.returncode != 0, "config -q accepted an unknown service key"
    assert "not_a_compose_key" in result.stderr, result.stderr


def _readme_stack_command() -> str:
    """The first shell block of the README: the command that runs the stack."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0].strip()
    assert block.endswith("docker compose up -d"), block
    return block


SETUP_SCRIPT = REPO_ROOT / paths.SETUP_SCRIPT
TOKEN_SHAPE = re.compile(rf"^{re.escape(TOKEN_PREFIX)}[A-Za-z0-9_-]+$")


def _stack_folder(tmp_path: Path) -> Path:
    """What the README command needs of a checkout: compose, env example, set-up."""
    for name in ("docker-compose.yml", ".env.example"):
        (tmp_path / name).write_text((REPO_ROOT / name).read_text(encoding="utf-8"))
    (tmp_path / "scripts").mkdir()
    shutil.copy2(SETUP_SCRIPT, tmp_path / "scripts" / "setup.sh")
    # The host may have no Python: any use of it by the script fails loudly.
    stubs = tmp_path / "no-python"
    stubs.mkdir()
    for name in ("python", "python3"):
        (stubs / name).write_text("#!/bin/sh\necho 'setup.sh must not need python' >&2\nexit 99\n")
        (stubs / name).chmod(0o755)
    return tmp_path


def _run_in(folder: Path, command: str) -> subprocess.CompletedProcess[str]:
    path = f"{folder / 'no-python'}:/usr/bin:/bin"
    return subprocess.run(
        ["bash", "-c", command],
        cwd=folder,
        env={"PATH": path, "HOME": str(folder)},
        capture_output=True,
        text=True,
        check=False,
    )


def _secrets(folder: Path) -> dict[str, bytes]:
    """Every file the set-up writes, by path, with its content."""
    files = [folder / ".env", folder / ADMIN_TOKEN_FILE, folder / DEFAULT_API_TOKENS_FILE]
    files.append(folder / DEMO_TOKEN_FILE)
    return {str(path.relative_to(folder)): path.read_bytes() for path in files if path.exists()}


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_readme_stack_command_creates_env_and_admin_token_once(tmp_path: Path) -> None:
    """The newcomer's command: a new .env with a random password and an admin API token
    the agent accepts, both kept on re-runs."""
    folder = _stack_folder(tmp_path)
    # Same command, but validating the model instead of starting containers.
    command = _readme_stack_command().replace(
        "docker compose up -d", f"{tool('docker-compose')} config -q"
    )

    def run() -> dict[str, bytes]:
        result = _run_in(folder, command)
        assert result.returncode == 0, result.stderr
        return _secrets(folder)

    first = run()
    passwords = [
        line
        for line in first[".env"].decode().splitlines()
        if line.startswith(cm.PASSWORD_VARIABLE)
    ]
    assert len(passwords) == 1, passwords
    assert len(passwords[0].split("=", 1)[1]) >= 32
    # a second run keeps .env, the password Grafana stored, and the token clients hold
    assert run() == first

    token = first[ADMIN_TOKEN_FILE].decode().strip()
    assert TOKEN_SHAPE.match(token), token
    assert len(token) == len(new_token()), token
    tokens = TokensFile(folder / DEFAULT_API_TOKENS_FILE)
    text = first[DEFAULT_API_TOKENS_FILE].decode()
    assert dump(tokens.read()) == text, "not the layout `python -m neuros tokens` writes"
    token_set, _ = tokens.load()
    principal = token_set.authenticate(token)
    assert principal is not None, "the agent would refuse the admin token"
    assert (principal.name, principal.scopes, principal.all_users) == (
        "admin",
        frozenset(Scope),
        True,
    )
    entries = tokens.read().tokens
    assert [e.name for e in entries] == ["admin", "demo"]
    assert all(e.created is not None for e in entries)
    assert token not in text
    assert {
        "secrets": _mode(folder / "secrets"),
        "token": _mode(folder / ADMIN_TOKEN_FILE),
        "tokens folder": _mode((folder / DEFAULT_API_TOKENS_FILE).parent),
        "tokens file": _mode(folder / DEFAULT_API_TOKENS_FILE),
    } == {"secrets": 0o700, "token": 0o600, "tokens folder": 0o755, "tokens file": 0o644}


def test_setup_demo_token_reaches_demo_users_only(tmp_path: Path) -> None:
    folder = _stack_folder(tmp_path)
    assert _run_in(folder, "scripts/setup.sh").returncode == 0
    token = (folder / DEMO_TOKEN_FILE).read_text().strip()
    token_set, _ = TokensFile(folder / DEFAULT_API_TOKENS_FILE).load()

    principal = token_set.authenticate(token)

    assert principal is not None, "the agent would refuse the demo token"
    assert principal.name == "demo"
    assert principal.scopes == {Scope.READINGS_WRITE, Scope.KPIS_READ}
    assert principal.may_touch(f"{DEMO_USER_PREFIX}s1-u001")
    assert not principal.may_touch("ana")
    assert not principal.may_touch(f"x{DEMO_USER_PREFIX}s1-u001")
    # The k6 container's user reads it; it reaches synthetic users only.
    assert _mode(folder / DEMO_TOKEN_FILE) == 0o644
    assert _mode(folder / "secrets") == 0o700


def test_setup_dry_run_changes_nothing(tmp_path: Path) -> None:
    folder = _stack_folder(tmp_path)
    result = _run_in(folder, "scripts/setup.sh --dry-run")
    assert result.returncode == 0, result.stderr
    assert "would create" in result.stdout
    assert _secrets(folder) == {}
    assert not (folder / "secrets").exists()


def test_setup_appends_admin_to_a_tokens_file_of_the_cli(tmp_path: Path) -> None:
    folder = _stack_folder(tmp_path)
    tokens = TokensFile(folder / DEFAULT_API_TOKENS_FILE)
    other = tokens.add("k6", [Scope.READINGS_WRITE], ["load-*"])
    result = _run_in(folder, "scripts/setup.sh")
    assert result.returncode == 0, result.stderr
    token = (folder / ADMIN_TOKEN_FILE).read_text().strip()
    token_set, _ = tokens.load()
    names = {name: token_set.authenticate(t) for name, t in (("k6", other), ("admin", token))}
    assert {name: p.name if p else None for name, p in names.items()} == {
        "k6": "k6",
        "admin": "admin",
    }
    assert dump(tokens.read()) == tokens.path.read_text()
    # From an empty file too (all tokens revoked: `tokens: []`).
    tokens.revoke("admin")
    tokens.revoke("k6")
    (folder / ADMIN_TOKEN_FILE).unlink()
    assert _run_in(folder, "scripts/setup.sh").returncode == 0
    token_set, _ = tokens.load()
    assert token_set.names == {"admin", "demo"}
    assert token_set.authenticate((folder / ADMIN_TOKEN_FILE).read_text().strip()) is not None


def test_setup_leaves_a_tokens_file_with_an_unknown_admin_alone(tmp_path: Path) -> None:
    folder = _stack_folder(tmp_path)
    tokens = TokensFile(folder / DEFAULT_API_TOKENS_FILE)
    tokens.add("admin", list(Scope), ["*"])
    before = tokens.path.read_bytes()
    result = _run_in(folder, "scripts/setup.sh")
    assert result.returncode == 0, result.stderr
    assert "NOTE" in result.stderr, result.stderr
    assert "revoke" in result.stderr, result.stderr
    # The admin entry is left as it was; only the demo token's entry is appended.
    assert tokens.path.read_bytes().startswith(before.rstrip(b"\n"))
    assert [e.name for e in tokens.read().tokens] == ["admin", "demo"]
    assert not (folder / ADMIN_TOKEN_FILE).exists()
    # A file not in the CLI's layout is never rewritten either.
    tokens.path.write_text("tokens: [{name: x, sha256: '0'}]\n")
    result = _run_in(folder, "scripts/setup.sh")
    assert result.returncode == 0, result.stderr
    assert "NOTE" in result.stderr, result.stderr
    assert tokens.path.read_text() == "tokens: [{name: x, sha256: '0'}]\n"


def test_setup_registers_a_surviving_admin_token(tmp_path: Path) -> None:
    folder = _stack_folder(tmp_path)
    assert _run_in(folder, "scripts/setup.sh").returncode == 0
    token = (folder / ADMIN_TOKEN_FILE).read_text().strip()
    (folder / DEFAULT_API_TOKENS_FILE).unlink()
    result = _run_in(folder, "scripts/setup.sh")
    assert result.returncode == 0, result.stderr
    assert (folder / ADMIN_TOKEN_FILE).read_text().strip() == token
    token_set, _ = TokensFile(folder / DEFAULT_API_TOKENS_FILE).load()
    assert token_set.authenticate(token) is not None


def test_setup_refuses_unknown_arguments(tmp_path: Path) -> None:
    folder = _stack_folder(tmp_path)
    result = _run_in(folder, "scripts/setup.sh --force")
    assert result.returncode == 2
    assert "unknown argument: --force" in result.stderr
    assert "Usage:" in result.stderr


# --- the scale override (docker-compose.scale.yml) ----------------------------------


@pytest.fixture(scope="module")
def scale_stack(compose_binary: str, password: str) -> cm.Stack:
    return cm.Stack(
        compose_binary,
        password,
        overrides=(cm.SCALE_FILE,),
        postgres_password=secrets.token_urlsafe(24),
    )


@pytest.mark.parametrize("check", cm.SCALE_CHECKS, ids=lambda check: check.__name__)
def test_repository_scale_stack(scale_stack: cm.Stack, check: cm.Check) -> None:
    problems = check(scale_stack)
    assert problems == [], f"{check.__name__}: the scale override broke:\n" + "\n".join(problems)


def test_scale_override_config_quiet_validates(scale_stack: cm.Stack) -> None:
    """`docker compose -f docker-compose.yml -f docker-compose.scale.yml config -q`."""
    result = scale_stack.render("-q")
    assert result.returncode == 0, f"compose config -q rejects the override: {result.stderr}"
    assert result.stdout == "", f"config -q printed output: {result.stdout!r}"


def test_default_stack_ignores_the_scale_override(stack: cm.Stack) -> None:
    """Without the override: one agent on SQLite, publishing the API itself."""
    assert not {cm.POSTGRES, cm.LOAD_BALANCER} & set(stack.services)
    agent = stack.services[cm.AGENT]
    assert (agent.get("deploy") or {}).get("replicas") in (None, 1)
    assert "NEUROS_DATABASE_URL" not in (agent.get("environment") or {})


@dataclass(frozen=True)
class ScaleMutation:
    """A text replacement in the override or haproxy.cfg, or an env change."""

    id: str
    check: cm.Check
    expect: str
    file: str = "override"  # "override", "haproxy" or "env"
    old: str = ""
    new: str = ""
    count: int = 1  # occurrences replaced; -1: all


SCALE_MUTATIONS: tuple[ScaleMutation, ...] = (
    ScaleMutation(
        "extra-service",
        cm.check_scale_services,
        "unexpected services",
        old="  neuros-lb:\n",
        new="  debug:\n    image: busybox:1.36.1\n  neuros-lb:\n",
    ),
    ScaleMutation(
        "one-replica",
        cm.check_scale_services,
        "1 replica(s)",
        file="env",
        old="NEUROS_REPLICAS",
        new="1",
    ),
    ScaleMutation(
        "replicas-hard-coded",
        cm.check_scale_services,
        "replicas ignore NEUROS_REPLICAS",
        old="replicas: ${NEUROS_REPLICAS:-2}",
        new="replicas: 2",
    ),
    ScaleMutation(
        "too-few-template-slots",
        cm.check_scale_services,
        "server-template slot(s) for 2 replicas",
        file="haproxy",
        old="server-template agent 10 ",
        new="server-template agent 1 ",
    ),
    ScaleMutation(
        "postgres-16",
        cm.check_scale_images,
        "is not 17.x",
        file="env",
        old="POSTGRES_IMAGE",
        new="postgres:16.9",
    ),
    ScaleMutation(
        "haproxy-2.8",
        cm.check_scale_images,
        "is not 3.0.x",
        file="env",
        old="HAPROXY_IMAGE",
        new="haproxy:2.8.15",
    ),
    ScaleMutation(
        "postgres-published",
        cm.check_scale_postgres,
        "postgres: publishes",
        old='    expose:\n      - "5432"\n',
        new='    expose:\n      - "5432"\n    ports:\n      - "127.0.0.1:5432:5432"\n',
    ),
    ScaleMutation(
        "postgres-password-default",
        cm.check_scale_postgres,
        "does not fail naming it",
        old="${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env (the scale override needs it)}",
        new="${POSTGRES_PASSWORD:-changeme}",
        count=-1,
    ),
    ScaleMutation(
        "postgres-no-volume",
        cm.check_scale_postgres,
        "no named volume at /var/lib/postgresql/data",
        old="      - postgres-data:/var/lib/postgresql/data\n",
        new="      - /tmp/pg:/var/lib/postgresql/other:ro\n",
    ),
    ScaleMutation(
        "postgres-healthcheck-not-pg-isready",
        cm.check_scale_postgres,
        "does not run pg_isready",
        old="        - pg_isready\n",
        new="        - psql\n",
    ),
    ScaleMutation(
        "agents-on-another-database-host",
        cm.check_scale_postgres,
        "NEUROS_DATABASE_URL does not name postgres:5432",
        old="@postgres:5432/",
        new="@db.example:5432/",
    ),
    ScaleMutation(
        "agents-keep-sqlite",
        cm.check_scale_postgres,
        "NEUROS_DB_PATH is still set",
        old="      NEUROS_DB_PATH: !reset null\n",
        new="",
    ),
    ScaleMutation(
        "agent-still-published",
        cm.check_scale_load_balancer,
        "neuros: publishes",
        old="    ports: !reset []\n",
        new="",
    ),
    ScaleMutation(
        "lb-on-another-port",
        cm.check_scale_load_balancer,
        "not only NEUROS_PUBLISHED_PORT",
        old="${NEUROS_PUBLISHED_PORT:-8000}:8000",
        new="8080:8000",
    ),
    ScaleMutation(
        "lb-binds-another-port",
        cm.check_scale_load_balancer,
        "binds ['8080']",
        file="haproxy",
        old="    bind :8000\n",
        new="    bind :8080\n",
    ),
    ScaleMutation(
        "lb-forwards-to-metrics-port",
        cm.check_scale_load_balancer,
        "server-template forwards to neuros:9464",
        file="haproxy",
        old="agent 10 neuros:8000",
        new="agent 10 neuros:9464",
    ),
    ScaleMutation(
        "lb-checks-health-not-ready",
        cm.check_scale_load_balancer,
        "no `option httpchk GET /ready`",
        file="haproxy",
        old="option httpchk GET /ready",
        new="option httpchk GET /health",
    ),
    ScaleMutation(
        "lb-never-retries",
        cm.check_scale_load_balancer,
        "lacks conn-failure",
        file="haproxy",
        old="retry-on conn-failure empty-response response-timeout",
        new="retry-on none",
    ),
    ScaleMutation(
        "lb-without-redispatch",
        cm.check_scale_load_balancer,
        "no `option redispatch 1`",
        file="haproxy",
        old="option redispatch 1",
        new="option redispatch 0",
    ),
    ScaleMutation(
        "lb-resolves-elsewhere",
        cm.check_scale_load_balancer,
        "does not resolve through Docker's DNS",
        file="haproxy",
        old="nameserver dns 127.0.0.11:53",
        new="nameserver dns 1.1.1.1:53",
    ),
    ScaleMutation(
        "prometheus-default-config",
        cm.check_scale_prometheus,
        "not the scale config",
        old="      - ./prometheus/prometheus-scale.yml:/etc/prometheus/prometheus.yml:ro\n",
        new="      - ./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro\n",
    ),
    ScaleMutation(
        "lb-unhardened",
        cm.check_hardening,
        "neuros-lb: user '0:0' is not a non-root user",
        old='    user: "99:99"\n',
        new='    user: "0:0"\n',
    ),
    ScaleMutation(
        "postgres-without-memory-limit",
        cm.check_limits,
        "postgres: no memory limit",
        old="          memory: ${POSTGRES_MEMORY_LIMIT:-512m}\n",
        new="          cpus: '1'\n",
    ),
)


@pytest.mark.parametrize("mutation", SCALE_MUTATIONS, ids=lambda mutation: mutation.id)
def test_scale_check_reports_mutation(
    mutation: ScaleMutation, tmp_path: Path, scale_stack: cm.Stack
) -> None:
    override, haproxy = tmp_path / "docker-compose.scale.yml", tmp_path / "haproxy.cfg"
    env_file = tmp_path / "mutated.env"
    texts = {"override": cm.SCALE_FILE.read_text(), "haproxy": cm.HAPROXY_CONFIG.read_text()}
    env = cm.read_env_file(cm.ENV_EXAMPLE)
    if mutation.file == "env":
        env[mutation.old] = mutation.new
    else:
        assert mutation.old in texts[mutation.file], f"{mutation.id}: {mutation.old!r} not found"
        texts[mutation.file] = texts[mutation.file].replace(
            mutation.old, mutation.new, mutation.count
        )
    override.write_text(texts["override"])
    haproxy.write_text(texts["haproxy"])
    cm.write_env_file(env_file, env)
    mutated = cm.Stack(
        scale_stack.compose_binary,
        scale_stack.password,
        env_file=env_file,
        overrides=(override,),
        postgres_password=scale_stack.postgres_password,
        haproxy_config=haproxy,
    )

    problems = mutation.check(mutated)

    assert any(mutation.expect in problem for problem in problems), (
        f"{mutation.check.__name__} missed mutation {mutation.id!r}"
        f" (wanted {mutation.expect!r}): {problems}"
    )


def test_scale_mutation_cases_cover_every_scale_check() -> None:
    scale_only = {check.__name__ for check in cm.SCALE_CHECKS} - {c.__name__ for c in cm.CHECKS}
    untested = scale_only - {m.check.__name__ for m in SCALE_MUTATIONS}
    assert not untested, f"scale checks never shown to fail: {sorted(untested)}"


# --- the demo profile -----------------------------------------------------------------


def test_default_stack_leaves_the_demo_out(stack: cm.Stack) -> None:
    """`docker compose up -d` starts no demo: it is the `demo` profile's only service."""
    assert cm.DEMO_SERVICE not in stack.services
    assert service_as_written(cm.DEMO_SERVICE)["profiles"] == ["demo"]


def test_demo_runs_the_k6_script_with_the_demo_token() -> None:
    demo = service_as_written(cm.DEMO_SERVICE)
    assert demo["image"].startswith("${K6_IMAGE:?")
    # source:target[:ro], where the source may be ${VAR:-default}.
    volumes = {
        target: source
        for source, target, *_ in (re.split(r":(?![-?])", str(v)) for v in demo["volumes"])
    }
    k6_mount = next(target for target, source in volumes.items() if source == "./k6")
    script = demo["command"][-1]
    assert script.startswith(f"{k6_mount}/")
    assert (REPO_ROOT / paths.K6_DIR / Path(script).relative_to(k6_mount)).is_file(), script
    environment = demo["environment"]
    token_target = environment["NEUROS_API_TOKEN_FILE"]
    assert volumes[token_target] == f"${{NEUROS_DEMO_TOKEN_FILE:-./{DEMO_TOKEN_FILE}}}"
    api_port = service_as_written(cm.AGENT)["expose"][0]
    assert environment["BASE_URL"] == f"http://{cm.AGENT}:{api_port}"
    # The same file and id space as scripts/setup.sh and the k6 script.
    setup = (REPO_ROOT / paths.SETUP_SCRIPT).read_text()
    assert f'DEMO_TOKEN_FILE="{DEMO_TOKEN_FILE}"' in setup
    assert f'DEMO_USERS="{DEMO_USER_PREFIX}*"' in setup
    k6_sources = "".join(p.read_text() for p in (REPO_ROOT / paths.K6_DIR).rglob("*.js"))
    assert f"'{DEMO_USER_PREFIX}" in k6_sources


def test_grafana_opens_on_the_kpi_overview() -> None:
    grafana = service_as_written("grafana")
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in grafana["volumes"]}
    source = mounts[str(home.parent)]
    dashboard = json.loads((REPO_ROOT / source / home.name).read_text())
    assert dashboard["title"] == "NEUROS KPI Overview"
