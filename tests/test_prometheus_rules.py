"""Prometheus configuration, alerting/recording rules and their unit tests.

Runs the real ``promtool`` (``check config``, ``check rules``, ``test rules``) and
checks the conventions every rule file in ``prometheus/rules/`` must follow, whoever
wrote it: alert naming, severities, annotations, runbook sections, recording-rule
names, and that every alert is seen firing in a promtool unit test, with its ``for``
exercised (expected silent first, firing later).
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuros.auth.authenticator import AuthError
from neuros.auth.tokens import Scope
from neuros.metrics import AuthFailure
from tests.tooling import REPO_ROOT, tool

PROMETHEUS_DIR = REPO_ROOT / "prometheus"
CONFIG_FILE = PROMETHEUS_DIR / "prometheus.yml"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
RUNBOOK_URL_PREFIX = "https://github.com/neuros/neuros/blob/main/docs/runbook.md#"

RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
RULE_TEST_FILES = sorted(RULE_TESTS_DIR.glob("*.yml"))

SCRAPE_JOBS = {
    "neuros",
    "prometheus",
    "alertmanager",
    "otel-collector",
    "tempo",
    "node-exporter",
    "grafana",
}
SEVERITIES = {"page", "ticket", "info"}
ALERT_NAME = re.compile(r"^[A-Z][A-Za-z0-9]+$")
RECORD_NAME = re.compile(r"^[a-z_]+:[a-z0-9_]+:[a-z0-9_]+$")
TEMPLATE_REF = re.compile(r"\{\{[^}]*\$(?:value|labels)")
DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
DURATION_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "y": 31536000.0,
}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        check=False,
    )


def _assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)}\n{result.stdout}\n{result.stderr}"


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def _load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def parse_duration(text: str) -> float:
    """Seconds in a Prometheus duration such as ``90s``, ``1h30m`` or ``0``."""
    text = str(text).strip()
    if text == "0":
        return 0.0
    parts = DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * DURATION_SECONDS[u] for n, u in parts)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def all_rules() -> list[tuple[str, dict[str, Any]]]:
    """(file, rule) for every rule of every group of every file in prometheus/rules/."""
    rules: list[tuple[str, dict[str, Any]]] = []
    for path in RULE_FILES:
        document = _load_yaml(path) or {}
        for group in document.get("groups") or []:
            rules.extend((path.name, rule) for rule in group.get("rules") or [])
    return rules


def all_alerts() -> list[tuple[str, dict[str, Any]]]:
    return [(file, rule) for file, rule in all_rules() if "alert" in rule]


def alert_rule_tests() -> list[tuple[str, int, dict[str, Any]]]:
    """(test file, test group index, alert_rule_test entry) over prometheus/tests/."""
    entries: list[tuple[str, int, dict[str, Any]]] = []
    for path in RULE_TEST_FILES:
        document = _load_yaml(path) or {}
        for index, group in enumerate(document.get("tests") or []):
            entries.extend((path.name, index, case) for case in group.get("alert_rule_test") or [])
    return entries


def runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {github_anchor(m) for m in re.findall(r"^## (.+)$", text, flags=re.MULTILINE)}


# --- The real tools. ---------------------------------------------------------------


def test_promtool_check_config() -> None:
    """The config is valid, and so is every rule file its rule_files glob loads."""
    _assert_ok(_promtool("check", "config", _rel(CONFIG_FILE)))


@pytest.mark.parametrize("path", RULE_FILES, ids=[p.name for p in RULE_FILES])
def test_promtool_check_rules(path: Path) -> None:
    _assert_ok(_promtool("check", "rules", _rel(path)))


@pytest.mark.parametrize("path", RULE_TEST_FILES, ids=[p.name for p in RULE_TEST_FILES])
def test_promtool_test_rules(path: Path) -> None:
    _assert_ok(_promtool("test", "rules", _rel(path)))


# --- Configuration conventions. -----------------------------------------------------


def test_scrape_jobs_are_the_documented_ones() -> None:
    config = _load_yaml(CONFIG_FILE)
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    assert jobs == SCRAPE_JOBS
    runbook = RUNBOOK.read_text(encoding="utf-8")
    config_text = CONFIG_FILE.read_text(encoding="utf-8")
    undocumented = sorted(j for j in jobs if f"`{j}`" not in runbook or j not in config_text)
    assert not undocumented, f"jobs missing from docs/runbook.md: {undocumented}"
    assert config["rule_files"] == ["rules/*.yml"]
    assert config["global"]["external_labels"] == {"stack": "neuros"}


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("15s") == 15
    assert parse_duration("0") == 0
    with pytest.raises(ValueError, match="duration"):
        parse_duration("1 h")


# --- Rule hygiene, over every rule file (ours and generated ones). --------------


def test_rule_files_exist() -> None:
    assert RULE_FILES, "no rule files in prometheus/rules/"
    assert all_alerts(), "no alerting rules in prometheus/rules/"


def test_alert_names_are_camel_case() -> None:
    bad = [f"{f}: {r['alert']}" for f, r in all_alerts() if not ALERT_NAME.match(r["alert"])]
    assert not bad, bad


def test_alert_names_are_unique() -> None:
    seen: dict[str, str] = {}
    duplicates = []
    for file, rule in all_alerts():
        if rule["alert"] in seen:
            duplicates.append(f"{rule['alert']} in {seen[rule['alert']]} and {file}")
        seen[rule["alert"]] = file
    assert not duplicates, duplicates


def test_alert_severities() -> None:
    bad = [
        f"{file}: {rule['alert']} severity={(rule.get('labels') or {}).get('severity')!r}"
        for file, rule in all_alerts()
        if (rule.get("labels") or {}).get("severity") not in SEVERITIES
    ]
    assert not bad, bad


def test_alert_annotations() -> None:
    problems = []
    for file, rule in all_alerts():
        annotations = rule.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key) or "").strip():
                problems.append(f"{file}: {rule['alert']} has no {key}")
        if not TEMPLATE_REF.search(str(annotations.get("description") or "")):
            problems.append(f"{file}: {rule['alert']} description uses neither $value nor $labels")
    assert not problems, problems


def test_runbook_urls_have_a_section() -> None:
    anchors = runbook_anchors()
    problems = []
    for file, rule in all_alerts():
        url = str((rule.get("annotations") or {}).get("runbook_url") or "")
        if not url.startswith(RUNBOOK_URL_PREFIX):
            problems.append(
                f"{file}: {rule['alert']} runbook_url {url!r} is not {RUNBOOK_URL_PREFIX}..."
            )
            continue
        anchor = url.removeprefix(RUNBOOK_URL_PREFIX)
        if anchor != rule["alert"].lower():
            problems.append(
                f"{file}: {rule['alert']} anchor {anchor!r} is not the lower-cased name"
            )
        if anchor not in anchors:
            problems.append(f"{file}: {rule['alert']}: no '## {rule['alert']}' in docs/runbook.md")
    assert not problems, problems


def test_recording_rule_names() -> None:
    bad = [
        f"{file}: {rule['record']}"
        for file, rule in all_rules()
        if "record" in rule and not RECORD_NAME.match(rule["record"])
    ]
    assert not bad, f"not level:metric:operations: {bad}"


# --- Every alert is unit-tested. ----------------------------------------------------


def test_every_alert_is_seen_firing() -> None:
    firing = {case["alertname"] for _, _, case in alert_rule_tests() if case.get("exp_alerts")}
    missing = sorted({rule["alert"] for _, rule in all_alerts()} - firing)
    assert not missing, f"never expected firing in prometheus/tests/*.yml: {missing}"


def test_every_for_is_exercised() -> None:
    """An alert with a `for` is expected silent, then firing later, in one test group.

    That pins the pending period: a test checking only the firing state would still
    pass if the `for` were dropped.
    """
    silent: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    firing: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for file, index, case in alert_rule_tests():
        key = (case["alertname"], file, index)
        at = parse_duration(case["eval_time"])
        (firing if case.get("exp_alerts") else silent)[key].append(at)
    missing = []
    for _, rule in all_alerts():
        name = rule["alert"]
        if parse_duration(rule.get("for", "0")) == 0:
            continue
        exercised = any(
            min(silent[key], default=float("inf")) < max(times)
            for key, times in firing.items()
            if key[0] == name
        )
        if not exercised:
            missing.append(name)
    assert not missing, f"no test expects these silent before firing: {missing}"


_MIB_THRESHOLD = re.compile(r">\s*(\d+)\s*\*\s*1024\s*\*\s*1024")
_COMPOSE_MEMORY = re.compile(r"^(\d+)([mg])$")


def test_agent_memory_alert_fires_before_the_container_limit() -> None:
    """An alert above the container's memory limit could never fire: OOM comes first."""
    rules = yaml.safe_load((RULES_DIR / "infra-alerts.yml").read_text(encoding="utf-8"))
    [rule] = [
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "NeurosAgentHighMemory"
    ]
    threshold = _MIB_THRESHOLD.search(rule["expr"])
    assert threshold is not None, rule["expr"]
    env = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    limit = _COMPOSE_MEMORY.match(env["NEUROS_MEMORY_LIMIT"].lower())
    assert limit is not None, env["NEUROS_MEMORY_LIMIT"]
    limit_mib = int(limit.group(1)) * (1024 if limit.group(2) == "g" else 1)
    assert int(threshold.group(1)) <= 0.85 * limit_mib


_REASON_REGEX = re.compile(r'reason=~"([^"]+)"')


def test_auth_failure_rule_counts_exactly_the_401_reasons() -> None:
    """The recording rule behind NeurosAuthFailuresHigh counts the reasons the agent
    answers with 401 (no valid token), not the 403 ones (a valid token refused)."""
    unauthenticated = {
        reason.value
        for reason in AuthFailure
        if AuthError(reason, Scope.ANALYZE, None).unauthenticated
    }
    records = {rule["record"]: rule for _, rule in all_rules() if "record" in rule}
    expr = records["job:neuros_auth_failures_unauthenticated:rate5m"]["expr"]
    found = _REASON_REGEX.findall(expr)
    assert len(found) == 1, expr
    assert set(found[0].split("|")) == unauthenticated
