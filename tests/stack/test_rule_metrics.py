"""Every ``neuros_*`` metric a Prometheus rule reads is one the real agent exports,
or one scripts/storage-management.sh writes to its textfile-collector file.

Guards against metric-name drift between ``neuros/metrics.py`` and
``prometheus/rules/*.yml`` (a rule over a series that does not exist never fires and
never errors), against the running agent's exposition rather than the registry
scripts/check-stack builds. The names a rule reads come from the checker's own PromQL
parsing (``stacktools.check_stack``: promql-parser's AST, so strings, comments and label
values are never taken for names); a name a recording rule produces is no export.
Histogram series are compared as exposed: a rule reads ``X_bucket``/``X_count``/
``X_sum``, which are sample names in the scrape, so no suffix mapping is needed (and a
rule reading a bare histogram family name is, rightly, reported).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
import promql_parser
import yaml

from neuros.metrics import PREFIX
from stacktools import check_stack as cs
from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.agent import reading
from tests.support.processes import LiveAgent
from tests.support.textfiles import exported_sample_names, storage_script_sample_names


def rule_metric_reads(repo: Path) -> dict[str, set[str]]:
    """``neuros_*`` metric name -> the rules (``file:name``) whose expression reads it."""
    report = cs.Report()
    rules = cs.load_rules(repo, report)
    assert not report.findings, report.findings
    recorded = {rule.name for rule in rules if rule.kind == "record"}
    reads: dict[str, set[str]] = {}
    for rule in rules:
        for name, _job in cs.metric_reads(promql_parser.parse(rule.expr)).names:
            if name.startswith(f"{PREFIX}_") and name not in recorded:
                reads.setdefault(name, set()).add(f"{Path(rule.file).name}:{rule.name}")
    return reads


def missing_metrics(reads: Mapping[str, set[str]], exported: set[str]) -> dict[str, list[str]]:
    """The names rules read that are not exported, with the rules reading them."""
    return {name: sorted(rules) for name, rules in sorted(reads.items()) if name not in exported}


def test_checker_reports_a_misspelled_metric(tmp_path: Path) -> None:
    rules = tmp_path / paths.RULES_DIR / "rules.yml"
    rules.parent.mkdir(parents=True)
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [
                            {
                                "record": "job:neuros_http_requests:rate5m",
                                "expr": "sum(rate(neuros_http_request_total[5m]))",
                            },
                            {
                                "alert": "Fine",
                                "expr": "job:neuros_http_requests:rate5m > 1"
                                " and neuros_readings_accepted_total > 0",
                            },
                        ],
                    }
                ]
            }
        )
    )
    exported = {"neuros_http_requests_total", "neuros_readings_accepted_total"}
    reads = rule_metric_reads(tmp_path)
    assert set(reads) == {"neuros_http_request_total", "neuros_readings_accepted_total"}
    assert missing_metrics(reads, exported) == {
        "neuros_http_request_total": ["rules.yml:job:neuros_http_requests:rate5m"]
    }
    assert missing_metrics({"neuros_http_requests_total": {"x"}}, exported) == {}


# --- Against the real agent and the repository's rules ------------------------------------


def _drive_every_series_creating_path(agent: LiveAgent) -> None:
    with agent.client(timeout=10) as client:
        bodies = {
            "ana": [reading(sleep_hours=7.5, resting_hr_bpm=52)],
            "ben": [
                reading("2026-11-19T07:00:00+00:00", hrv_rmssd_ms=45.0, sleep_hours=5.0),
                reading(resting_hr_bpm=61, sleep_hours=6.0),
            ],
            "cy": [reading(sleep_hours=3.0, resting_hr_bpm=75, hrv_rmssd_ms=12.0)],
        }
        for user, readings in bodies.items():
            response = client.post(f"/v1/users/{user}/readings", json={"readings": readings})
            assert response.status_code == 201, response.text
            assert client.get(f"/v1/users/{user}/kpis").status_code == 200
            assert client.post(f"/v1/users/{user}/analyze").status_code == 200
        invalid = client.post("/v1/users/ana/readings", json={"readings": []})
        assert invalid.status_code == 422
        assert client.get("/v1/users/nobody/kpis").status_code == 404
        assert client.post("/v1/users/nobody/analyze").status_code == 404
        assert client.get("/no/such/route").status_code == 404
        assert client.get("/ready").status_code == 200
        client.get("/metrics")
    # Refused before the route: no token (its failure reason is counted).
    assert httpx.get(f"{agent.url}/v1/users/ana/kpis", timeout=10).status_code == 401


def backup_tool_sample_names(db_path: Path, tmp_path: Path) -> set[str]:
    """Sample names in the textfile a backup writes (a real backup of the agent's db)."""
    metrics_file = tmp_path / "neuros_backup.prom"
    command = [sys.executable, "-m", "neuros.backup", "backup", "--db", str(db_path)]
    result = subprocess.run(
        [*command, "--backup-dir", str(tmp_path / "backups"), "--metrics-file", str(metrics_file)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return exported_sample_names(metrics_file.read_text())


def test_every_metric_read_by_a_rule_is_exported(
    live_agent: Callable[..., LiveAgent], tmp_path: Path
) -> None:
    reads = rule_metric_reads(REPO_ROOT)
    assert reads, "no rule reads a neuros_* metric: the check would pass vacuously"

    agent = live_agent()
    _drive_every_series_creating_path(agent)
    agent_exported = exported_sample_names(httpx.get(f"{agent.url}/metrics", timeout=10).text)
    assert "neuros_http_requests_total" in agent_exported
    script_exported = storage_script_sample_names(tmp_path)
    assert "neuros_storage_cleanup_last_success_timestamp_seconds" in script_exported
    backup_exported = backup_tool_sample_names(agent.db_path, tmp_path)
    assert "neuros_backup_last_success_timestamp_seconds" in backup_exported
    exported = agent_exported | script_exported | backup_exported

    assert missing_metrics(reads, exported) == {}, (
        "rules read metrics neither the agent nor the storage and backup scripts export;"
        " exported"
        " neuros_* samples: "
        f"{sorted(n for n in exported if n.startswith('neuros_'))}"
    )
    # The same check flags drift against the real exposition.
    assert missing_metrics({"neuros_http_request_total": {"drift"}}, exported)
