"""No component of the stack phones home: a health-data stack makes no outbound calls
on its own (update checks, usage statistics). Tempo's usage report is checked in
tests/stack/test_trace_pipeline_config.py; Grafana's switches here."""

from __future__ import annotations

from collections.abc import Mapping

from stacktools.compose import service_as_written

GRAFANA_SERVICE = "grafana"
# Grafana 11.6's [analytics] settings that make Grafana call out, as environment
# variables (GF_<SECTION>_<KEY>), each to be "false".
GRAFANA_OUTBOUND_SWITCHES = {
    "GF_ANALYTICS_REPORTING_ENABLED": "usage statistics to stats.grafana.org",
    "GF_ANALYTICS_CHECK_FOR_UPDATES": "grafana.com, for new Grafana releases",
    "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "grafana.com, for updates of installed plugins",
}


def switches_left_on(environment: Mapping[str, object]) -> list[str]:
    """The outbound switches ``environment`` does not turn off, with what they call."""
    return [
        f"{name}: {calls}"
        for name, calls in GRAFANA_OUTBOUND_SWITCHES.items()
        if str(environment.get(name, "")).lower() != "false"
    ]


def _grafana_environment() -> dict[str, object]:
    environment = service_as_written(GRAFANA_SERVICE).get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    assert isinstance(environment, dict)
    return environment


def test_grafana_makes_no_outbound_calls() -> None:
    left_on = switches_left_on(_grafana_environment())
    assert not left_on, f"docker-compose.yml's grafana service calls out: {left_on}"


def test_a_missing_switch_is_caught() -> None:
    """Grafana's default for each of these is on: leaving one out calls out."""
    environment = _grafana_environment()
    for name in GRAFANA_OUTBOUND_SWITCHES:
        without = {k: v for k, v in environment.items() if k != name}
        assert switches_left_on(without) == [f"{name}: {GRAFANA_OUTBOUND_SWITCHES[name]}"]
        assert switches_left_on({**environment, name: "true"})


def test_the_demo_k6_sends_no_usage_report() -> None:
    """k6 reports anonymous usage to Grafana Labs unless K6_NO_USAGE_REPORT is true."""
    environment = service_as_written("demo").get("environment") or {}
    assert str(environment.get("K6_NO_USAGE_REPORT", "")).lower() == "true"
