"""The SLO spec and its rule generator (stacktools/generate/slo.py)."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from neuros.metrics import HTTP_LATENCY_BUCKETS_SECONDS
from stacktools.generate import slo

SPEC: dict[str, Any] = yaml.safe_load(slo.SPEC_PATH.read_text())


def _write_spec(tmp_path: Path, **changes: object) -> Path:
    raw: dict[str, Any] = {**SPEC, "slos": {k: dict(v) for k, v in SPEC["slos"].items()}}
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = raw
        for parent in parents:
            target = target[parent]
        target[key] = value
    path = tmp_path / "slo.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_check_fails_when_the_spec_changes(tmp_path: Path) -> None:
    spec = _write_spec(tmp_path, slos__availability__objective=0.999)
    assert slo.main(["--check", "--spec", str(spec), "--out", str(slo.RULES_DIR)]) == 1
    out = tmp_path / "rules"
    assert slo.main(["--spec", str(spec), "--out", str(out)]) == 0
    assert "> 0.0144" in (out / slo.ALERTS_FILE).read_text()  # 14.4 x 0.001
    assert slo.main(["--check", "--spec", str(spec), "--out", str(out)]) == 0


def test_spec_is_readable_as_data() -> None:
    spec = slo.load_spec()
    assert {s.name for s in spec.slos} == {"availability", "latency"}
    assert spec.slo("latency").threshold_seconds in HTTP_LATENCY_BUCKETS_SECONDS
    availability = spec.slo("availability")
    assert availability.budget == pytest.approx(1 - availability.objective)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slos__latency__threshold_seconds": 0.33}, "not a bucket bound"),
        ({"slos__availability__objective": 1.0}, "must be in (0, 1)"),
        ({"window": "thirty days"}, "not a duration"),
        ({"min_request_rate": -1}, "must not be negative"),
    ],
)
def test_invalid_specs_are_refused(tmp_path: Path, change: dict[str, object], message: str) -> None:
    with pytest.raises(slo.SpecError, match=re.escape(message)):
        slo.load_spec(_write_spec(tmp_path, **change))


def test_generated_rules_cover_every_window_and_pair() -> None:
    spec = slo.load_spec()
    recorded = {
        (rule["record"], rule["labels"].get("slo"))
        for group in slo.recording_rules(spec)["groups"]
        for rule in group["rules"]
    }
    for s in spec.slos:
        for window in slo.SLI_WINDOWS:
            assert (f"slo:sli_error:ratio_rate{window}", s.name) in recorded
            assert (f"slo:burn_rate:ratio_rate{window}", s.name) in recorded
        assert ("slo:objective:ratio", s.name) in recorded
        assert ("slo:error_budget_remaining:ratio", s.name) in recorded
    alerts = slo.alert_rules(spec)["groups"][0]["rules"]
    assert sorted(p.factor for a in slo.BURN_ALERTS for p in a.pairs) == [1, 3, 6, 14.4]
    assert {a["labels"]["severity"] for a in alerts} == {"page", "ticket"}
    for alert in alerts:
        # Each pair: long AND short window AND the low-traffic guard.
        assert alert["expr"].count("and on ()") == 2
        assert alert["expr"].count("slo:sli_requests:rate") == 2


def test_latency_sli_reads_the_threshold_bucket_in_prometheus_3_form() -> None:
    spec = slo.load_spec()
    assert 'le="0.3"' in slo.error_ratio(spec, spec.slo("latency"), "5m")
    assert slo._le(1) == "1.0"


def test_the_generator_types_no_metric_name() -> None:
    """neuros/metrics.py is the one source of the agent's metric names: slo.py reads
    them off the registry, as the dashboards do, and spells none itself."""
    source = Path(slo.__file__).read_text()
    assert not re.findall(r"""["'][^"'\n]*\bneuros_\w+""", source)


def test_generated_rules_follow_the_registry_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import neuros.metrics

    monkeypatch.setattr(neuros.metrics, "PREFIX", "renamed")
    slo.agent_metrics.cache_clear()
    try:
        spec = slo.load_spec()
        text = slo.render(slo.recording_rules(spec)) + slo.render(slo.alert_rules(spec))
    finally:
        monkeypatch.undo()
        slo.agent_metrics.cache_clear()
    assert "renamed_http_requests_total{" in text
    assert "renamed_http_request_duration_seconds_bucket{" in text
    assert "renamed_http_request_duration_seconds_count{" in text
    assert "neuros_" not in text
    assert slo.agent_metrics() == slo.AgentMetrics(
        "neuros_http_requests_total", "neuros_http_request_duration_seconds"
    )
