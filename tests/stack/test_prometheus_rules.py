"""Prometheus configuration, alerting/recording rules and their unit tests.

Runs the real ``promtool`` (``check config``, ``check rules``, ``test rules``) and
checks the conventions every rule file in ``prometheus/rules/`` must follow, whoever
wrote it: alert naming, severities, annotations, runbook sections, recording-rule
names, and that every alert is seen firing in a promtool unit test, with the moment it
starts firing pinned (expected silent one evaluation before, firing then), so its ``for``
cannot change unnoticed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuros.auth.authenticator import AuthError
from neuros.auth.tokens import Scope
from neuros.metrics import AuthFailure
from stacktools import paths
from stacktools.check_stack.files import load_yaml
from stacktools.generate import runbook_links
from stacktools.paths import REPO_ROOT
from tests.support.tooling import tool

PROMETHEUS_DIR = REPO_ROOT / paths.PROMETHEUS_DIR
CONFIG_FILE = REPO_ROOT / paths.PROMETHEUS_CONFIG
RULES_DIR = REPO_ROOT / paths.RULES_DIR
RULE_TESTS_DIR = REPO_ROOT / paths.RULE_TESTS_DIR
RUNBOOK = REPO_ROOT / paths.RUNBOOK
RUNBOOK_BASE_URL = runbook_links.load_base_url()

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
        document = load_yaml(path) or {}
        for group in document.get("groups") or []:
            rules.extend((path.name, rule) for rule in group.get("rules") or [])
    return rules


def all_alerts() -> list[tuple[str, dict[str, Any]]]:
    return [(file, rule) for file, rule in all_rules() if "alert" in rule]


def alert_rule_tests() -> list[tuple[str, int, dict[str, Any]]]:
    """(test file, test group index, alert_rule_test entry) over prometheus/tests/."""
    entries: list[tuple[str, int, dict[str, Any]]] = []
    for path in RULE_TEST_FILES:
        document = load_yaml(path) or {}
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
    config = load_yaml(CONFIG_FILE)
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
        prefix = f"{RUNBOOK_BASE_URL}#"
        if not url.startswith(prefix):
            problems.append(f"{file}: {rule['alert']} runbook_url {url!r} is not {prefix}...")
            continue
        anchor = url.removeprefix(prefix)
        if anchor != rule["alert"].lower():
            problems.append(
                f"{file}: {rule['alert']} anchor {anchor!r} is not the lower-cased name"
            )
        if anchor not in anchors:
            problems.append(f"{file}: {rule['alert']}: no '## {rule['alert']}' in docs/runbook.md")
    assert not problems, problems


def test_the_default_runbook_base_is_the_runbook_in_the_repository() -> None:
    assert RUNBOOK_BASE_URL == runbook_links.DEFAULT_BASE_URL == "docs/runbook.md"
    assert (REPO_ROOT / RUNBOOK_BASE_URL).is_file()


def test_runbook_links_move_to_a_new_base_url(tmp_path: Path) -> None:
    """``--base-url`` sets the one setting and rewrites every rule file and promtool test
    to it; the SLO generator follows, and going back restores the files byte for byte."""
    repo = tmp_path / "repo"
    for rel in (runbook_links.CONFIG, runbook_links.RULES_DIR, runbook_links.RULE_TESTS_DIR):
        src = REPO_ROOT / rel
        if src.is_dir():
            shutil.copytree(src, repo / rel)
        else:
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, repo / rel)
    before = {p: p.read_bytes() for p in runbook_links.files(repo)}
    base = "https://runbooks.example.com/neuros: on-call/runbook.md"  # ": " needs quoting
    assert runbook_links.main(["--repo", str(repo), "--base-url", base]) == 0
    assert runbook_links.load_base_url(repo) == base
    assert runbook_links.problems(repo) == []
    changed = [p for p, text in before.items() if p.read_bytes() != text]
    assert len(changed) == len([p for p, text in before.items() if b"runbook_url" in text])
    rules = yaml.safe_load((repo / runbook_links.RULES_DIR / "meta-alerts.yml").read_text())
    (watchdog,) = (r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "Watchdog")
    assert watchdog["annotations"]["runbook_url"] == f"{base}#watchdog"
    assert runbook_links.main(["--repo", str(repo), "--check", "--base-url", "x"]) == 1
    assert runbook_links.main(["--repo", str(repo), "--base-url", "http://x/r.md#a"]) == 2
    assert runbook_links.main(["--repo", str(repo), "--base-url", RUNBOOK_BASE_URL]) == 0
    assert {p: p.read_bytes() for p in runbook_links.files(repo)} == before


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


@dataclass(frozen=True)
class AlertCheck:
    """One alert_rule_test entry: where it is, and whether it expects the alert firing."""

    file: str
    group: int
    interval: float  # the test file's evaluation_interval, in seconds
    at: float  # eval_time, in seconds
    firing: bool


def alert_checks() -> dict[str, list[AlertCheck]]:
    """Every promtool check of every alert, by alert name."""
    checks: dict[str, list[AlertCheck]] = defaultdict(list)
    for path in RULE_TEST_FILES:
        document = load_yaml(path) or {}
        interval = parse_duration(document.get("evaluation_interval", "1m"))
        for index, group in enumerate(document.get("tests") or []):
            for case in group.get("alert_rule_test") or []:
                checks[case["alertname"]].append(
                    AlertCheck(
                        path.name,
                        index,
                        interval,
                        parse_duration(case["eval_time"]),
                        bool(case.get("exp_alerts")),
                    )
                )
    return checks


def onset_problem(name: str, for_seconds: float, checks: list[AlertCheck]) -> str | None:
    """Why ``checks`` do not pin the moment the alert starts firing, or None.

    Wanted, in one test group: a check expecting the alert silent at T and one
    expecting it firing at T + d, with 0 < d <= one evaluation interval. promtool passing
    both means the alert started firing in (T, T + d]. With a ``for`` it was then pending
    since that moment minus the ``for``, with its condition true at every evaluation in
    between, T included. So a ``for`` one evaluation shorter (or none) fires by T: the
    silent check fails; one evaluation longer fires after T + d: the firing check fails.
    Without a ``for`` the pair pins the same way that it fires at the first evaluation
    its condition holds. Only an alert with no ``for`` that fires at the very first
    evaluation (a Watchdog) has no silent moment before: a firing check then suffices.
    """
    if not any(check.firing for check in checks):
        return f"{name}: never expected firing"
    if for_seconds == 0 and any(c.firing and c.at < c.interval for c in checks):
        return None  # fires from the first evaluation: nothing can be silent before it
    for firing in (c for c in checks if c.firing and c.at >= for_seconds):
        for silent in checks:
            same_group = (silent.file, silent.group) == (firing.file, firing.group)
            if same_group and not silent.firing and 0 < firing.at - silent.at <= firing.interval:
                return None
    return (
        f"{name} (for {for_seconds:g}s): no test group expects it silent at some T and"
        " firing at most one evaluation interval later, at or after its `for`"
    )


def onset_problems(
    alerts: list[tuple[str, dict[str, Any]]], checks: dict[str, list[AlertCheck]]
) -> list[str]:
    problems = []
    for _, rule in alerts:
        problem = onset_problem(
            rule["alert"], parse_duration(rule.get("for", "0")), checks.get(rule["alert"], [])
        )
        if problem:
            problems.append(problem)
    return problems


def test_every_for_is_exercised() -> None:
    """Every alert is expected silent one evaluation before it fires, and firing then
    (see :func:`onset_problem`): a test checking only the firing state, or a silent state
    long before, would still pass if the `for` were dropped or changed."""
    problems = onset_problems(all_alerts(), alert_checks())
    assert not problems, problems


def _hrv_drop() -> tuple[list[tuple[str, dict[str, Any]]], dict[str, list[AlertCheck]]]:
    alerts = [(f, r) for f, r in all_alerts() if r["alert"] == "NeurosHrvPopulationDrop"]
    assert alerts, "NeurosHrvPopulationDrop is gone: pick another alert with a `for`"
    return alerts, alert_checks()


def test_onset_check_catches_a_deleted_silent_check() -> None:
    """The review's mutant: the check one evaluation before the `for` elapses deleted
    (with the `for` itself removed too, or kept)."""
    alerts, checks = _hrv_drop()
    assert not onset_problems(alerts, checks)
    [(file, rule)] = alerts
    firing = [c for c in checks[rule["alert"]] if c.firing]
    silent_before = {(c.file, c.group, c.at - c.interval) for c in firing}
    checks[rule["alert"]] = [
        c for c in checks[rule["alert"]] if (c.file, c.group, c.at) not in silent_before
    ]
    assert onset_problems(alerts, checks)
    without_for = [(file, {k: v for k, v in rule.items() if k != "for"})]
    assert onset_problems(without_for, checks)


def _c(at: float, firing: bool, group: int = 0, interval: float = 60) -> AlertCheck:
    return AlertCheck("a.yml", group, interval, at, firing)


@pytest.mark.parametrize(
    ("for_seconds", "checks", "ok"),
    [
        # A Watchdog: no `for`, firing from the first evaluation.
        (0, [_c(0, True, interval=15), _c(86400, True, interval=15)], True),
        # No `for` but never seen firing at the start: its onset is not pinned.
        (0, [_c(300, True)], False),
        (0, [_c(240, False), _c(300, True)], True),
        # Silent two evaluations before, or in another group: not pinned.
        (300, [_c(480, False), _c(600, True)], False),
        (300, [_c(540, False, group=1), _c(600, True)], False),
        (300, [_c(540, False), _c(600, True)], True),
        # Firing before its `for` could have elapsed: the pair cannot be about the `for`.
        (900, [_c(540, False), _c(600, True)], False),
    ],
)
def test_onset_problem(for_seconds: float, checks: list[AlertCheck], ok: bool) -> None:
    assert (onset_problem("A", for_seconds, checks) is None) is ok


AUTH_ALERTS = [r["alert"] for f, r in all_alerts() if f == "auth-alerts.yml" and r.get("for")]


@pytest.mark.parametrize("alert", AUTH_ALERTS)
@pytest.mark.parametrize("shift", [-1, 1])
def test_a_pinned_onset_fails_promtool_when_the_for_moves(
    tmp_path: Path, alert: str, shift: int
) -> None:
    """The claim of :func:`onset_problem`, shown with promtool on the alerts whose test
    file runs fastest: their `for` one evaluation shorter or longer fails their tests."""
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS_DIR, copy)
    path = copy / "rules" / "auth-alerts.yml"
    document = load_yaml(path)
    [rule] = [r for g in document["groups"] for r in g["rules"] if r.get("alert") == alert]
    interval = parse_duration(
        load_yaml(RULE_TESTS_DIR / "auth-alerts-test.yml")["evaluation_interval"]
    )
    rule["for"] = f"{int(parse_duration(rule['for']) + shift * interval)}s"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "tests/auth-alerts-test.yml"],
        capture_output=True,
        text=True,
        cwd=copy,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, f"{alert} with for {rule['for']} still passes"
    assert alert in result.stdout + result.stderr


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
        for line in (REPO_ROOT / paths.ENV_EXAMPLE).read_text(encoding="utf-8").splitlines()
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
