"""Where things are in the repository: the one definition of every path more than one
module uses.

``REPO_ROOT`` is this checkout. The other names are relative to a repository root, so
that a check can run on any checkout (``check-stack --repo DIR``) or a mutated copy in
a test: join them to ``REPO_ROOT`` (or that root) to read a file.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# Compose: the stack, the opt-in scale-out override, and the env file it documents.
COMPOSE_FILE = Path("docker-compose.yml")
SCALE_COMPOSE_FILE = Path("docker-compose.scale.yml")
ENV_EXAMPLE = Path(".env.example")
PYPROJECT = Path("pyproject.toml")
LOCK_FILE = Path("uv.lock")

NEUROS_DIR = Path("neuros")
NEUROS_DOCKERFILE = NEUROS_DIR / "Dockerfile"

PROMETHEUS_DIR = Path("prometheus")
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
PROMETHEUS_SCALE_CONFIG = PROMETHEUS_DIR / "prometheus-scale.yml"
ALERTMANAGER_CONFIG = PROMETHEUS_DIR / "alertmanager.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
SLO_SPEC = PROMETHEUS_DIR / "slo.yml"
RUNBOOK_CONFIG = PROMETHEUS_DIR / "runbook.yml"

GRAFANA_DIR = Path("grafana")
GRAFANA_PROVISIONING_DIR = GRAFANA_DIR / "provisioning"
DATASOURCES_DIR = GRAFANA_PROVISIONING_DIR / "datasources"
DATASOURCES_FILE = DATASOURCES_DIR / "datasources.yml"
DASHBOARD_PROVIDERS = GRAFANA_PROVISIONING_DIR / "dashboards" / "dashboards.yml"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
EXPECTED_EMPTY_FILE = GRAFANA_DIR / "expected-empty.yml"

OTEL_CONFIG = Path("otel") / "config.yml"
TEMPO_CONFIG = Path("tempo") / "tempo.yml"
HAPROXY_CONFIG = Path("haproxy") / "haproxy.cfg"

K6_DIR = Path("k6")
K6_SCENARIOS_DIR = K6_DIR / "scenarios"
K6_BASELINES_DIR = K6_DIR / "baselines"
K6_RESULTS_DIR = K6_DIR / "results"
K6_RUNNER = K6_DIR / "run-load-tests.sh"

CHAOS_RUNNER = Path("chaos") / "run-chaos-test.sh"

DOCS_DIR = Path("docs")
RUNBOOK = DOCS_DIR / "runbook.md"

SCRIPTS_DIR = Path("scripts")
SETUP_SCRIPT = SCRIPTS_DIR / "setup.sh"
TEST_SCRIPT = SCRIPTS_DIR / "test.sh"
CHECK_STACK = SCRIPTS_DIR / "check-stack"
BACKUP_SCRIPT = SCRIPTS_DIR / "backup.sh"
STORAGE_SCRIPT = SCRIPTS_DIR / "storage-management.sh"

# What scripts/test.sh creates and installs: the venv and the external tools.
VENV_DIR = Path(".venv")
TOOLS_DIR = Path(".tools")
