"""SLO spec (prometheus/slo.yml) to Prometheus rules, multi-window multi-burn-rate.

``python -m stacktools.generate.slo`` writes ``prometheus/rules/slo-recording.yml`` and
``prometheus/rules/slo-alerts.yml``; ``--check`` fails when they differ from what the
spec generates. Other parts (k6 thresholds, the SLO dashboard) call :func:`load_spec`.
The burn-rate pairs follow the SRE workbook, chapter "Alerting on SLOs".
"""

import argparse
import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from neuros.metrics import HTTP_LATENCY_BUCKETS_SECONDS, build_metrics
from stacktools import paths
from stacktools.generate import runbook_links
from stacktools.paths import REPO_ROOT

SPEC_PATH = REPO_ROOT / paths.SLO_SPEC
RULES_DIR = REPO_ROOT / paths.RULES_DIR
RECORDING_FILE = "slo-recording.yml"
ALERTS_FILE = "slo-alerts.yml"
SLI_WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
_DURATION = re.compile(r"^[1-9][0-9]*[mhd]$")


@dataclass(frozen=True, slots=True)
class AgentMetrics:
    """Series names the SLIs read, as the agent's registry names them."""

    requests: str  # the request counter's series, ``..._total``
    duration: str  # the request-duration histogram's family (``_bucket``/``_count`` added)


@functools.cache
def agent_metrics() -> AgentMetrics:
    """Read the names off a throwaway registry, so neuros/metrics.py is their one source."""
    m = build_metrics()
    (requests,) = m.http_requests.describe()
    (duration,) = m.http_request_duration.describe()
    if requests.type != "counter" or duration.type != "histogram":
        raise SpecError(f"{requests.name}, {duration.name}: expected a counter and a histogram")
    return AgentMetrics(requests=f"{requests.name}_total", duration=duration.name)


@dataclass(frozen=True, slots=True)
class BurnPair:
    factor: float
    long: str
    short: str


@dataclass(frozen=True, slots=True)
class BurnAlert:
    suffix: str
    severity: str
    for_: str
    pairs: tuple[BurnPair, ...]


# Page: 2 % of a 30-day budget in 1 h, or 5 % in 6 h. Ticket: 10 % in 1 d, or 10 % in 3 d.
BURN_ALERTS = (
    BurnAlert("BurnRateHigh", "page", "2m", (BurnPair(14.4, "1h", "5m"), BurnPair(6, "6h", "30m"))),
    BurnAlert(
        "BurnRateElevated", "ticket", "15m", (BurnPair(3, "1d", "2h"), BurnPair(1, "3d", "6h"))
    ),
)


@dataclass(frozen=True, slots=True)
class Slo:
    name: str
    description: str
    objective: float
    threshold_seconds: float | None = None

    @property
    def budget(self) -> float:
        return round(1 - self.objective, 10)


@dataclass(frozen=True, slots=True)
class SloSpec:
    service: str
    job: str
    route_regex: str
    window: str
    min_request_rate: float
    slos: tuple[Slo, ...]

    def slo(self, name: str) -> Slo:
        return next(s for s in self.slos if s.name == name)


class SpecError(ValueError):
    pass


def load_spec(path: Path = SPEC_PATH) -> SloSpec:
    raw = yaml.safe_load(path.read_text())
    try:
        slos = tuple(_slo(name, body) for name, body in raw["slos"].items())
        spec = SloSpec(
            service=str(raw["service"]),
            job=str(raw["job"]),
            route_regex=str(raw["route_regex"]),
            window=str(raw["window"]),
            min_request_rate=float(raw["min_request_rate"]),
            slos=slos,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise SpecError(f"{path}: missing or malformed key: {exc}") from exc
    if not _DURATION.match(spec.window):
        raise SpecError(f"{path}: window {spec.window!r} is not a duration like 30d")
    if spec.min_request_rate < 0:
        raise SpecError(f"{path}: min_request_rate must not be negative")
    return spec


def _slo(name: str, body: dict[str, Any]) -> Slo:
    objective = float(body["objective"])
    if not 0 < objective < 1:
        raise SpecError(f"slo {name}: objective {objective} must be in (0, 1)")
    threshold = body.get("threshold_seconds")
    if threshold is not None and float(threshold) not in HTTP_LATENCY_BUCKETS_SECONDS:
        raise SpecError(
            f"slo {name}: threshold_seconds {threshold} is not a bucket bound of "
            f"{agent_metrics().duration} {HTTP_LATENCY_BUCKETS_SECONDS}"
        )
    if name == "latency" and threshold is None:
        raise SpecError("slo latency: threshold_seconds is required")
    return Slo(
        name=name,
        description=str(body["description"]),
        objective=objective,
        threshold_seconds=None if threshold is None else float(threshold),
    )


def _le(seconds: float) -> str:
    # Prometheus 3 stores classic-histogram "le" values in float form ("1.0", "0.3").
    return repr(float(seconds))


def error_ratio(spec: SloSpec, slo: Slo, window: str) -> str:
    """Share of bad API requests over ``window``; empty (never NaN) without traffic."""
    sel = f'job="{spec.job}",route=~"{spec.route_regex}"'
    names = agent_metrics()
    if slo.threshold_seconds is None:
        return (
            f'(sum(rate({names.requests}{{{sel},status=~"5.."}}[{window}])) or vector(0))\n'
            f"/\n(sum(rate({names.requests}{{{sel}}}[{window}])) > 0)"
        )
    le = _le(slo.threshold_seconds)
    return (
        f'1 - (\n  sum(rate({names.duration}_bucket{{{sel},le="{le}"}}[{window}]))\n'
        f"  /\n  (sum(rate({names.duration}_count{{{sel}}}[{window}])) > 0)\n)"
    )


def request_rate(spec: SloSpec, window: str) -> str:
    sel = f'job="{spec.job}",route=~"{spec.route_regex}"'
    return f"sum(rate({agent_metrics().requests}{{{sel}}}[{window}]))"


def _labels(spec: SloSpec, slo: Slo) -> dict[str, str]:
    return {"service": spec.service, "slo": slo.name}


def _long_windows() -> list[str]:
    return [pair.long for alert in BURN_ALERTS for pair in alert.pairs]


def recording_rules(spec: SloSpec) -> dict[str, Any]:
    sli: list[dict[str, Any]] = []
    budget: list[dict[str, Any]] = []
    for slo in spec.slos:
        labels = _labels(spec, slo)
        sli.append(
            {"record": "slo:objective:ratio", "expr": f"vector({slo.objective})", "labels": labels}
        )
        for window in SLI_WINDOWS:
            sli.append(
                {
                    "record": f"slo:sli_error:ratio_rate{window}",
                    "expr": error_ratio(spec, slo, window),
                    "labels": labels,
                }
            )
            sli.append(
                {
                    "record": f"slo:burn_rate:ratio_rate{window}",
                    "expr": f'slo:sli_error:ratio_rate{window}{{slo="{slo.name}"}} / {slo.budget}',
                    "labels": labels,
                }
            )
        budget.append(
            {
                "record": f"slo:sli_error:ratio_rate{spec.window}",
                "expr": error_ratio(spec, slo, spec.window),
                "labels": labels,
            }
        )
        budget.append(
            {
                "record": "slo:error_budget_remaining:ratio",
                "expr": (
                    f'1 - slo:sli_error:ratio_rate{spec.window}{{slo="{slo.name}"}} / {slo.budget}'
                ),
                "labels": labels,
            }
        )
    requests = [
        {
            "record": f"slo:sli_requests:rate{window}",
            "expr": request_rate(spec, window),
            "labels": {"service": spec.service},
        }
        for window in dict.fromkeys(_long_windows())
    ]
    return {
        "groups": [
            {"name": "slo-sli", "rules": sli + requests},
            # A 30-day rate reads a month of samples: every 5 minutes is plenty.
            {"name": "slo-error-budget", "interval": "5m", "rules": budget},
        ]
    }


def _burn_condition(spec: SloSpec, slo: Slo, pair: BurnPair) -> str:
    threshold = round(pair.factor * slo.budget, 10)
    legs = [
        f'slo:sli_error:ratio_rate{w}{{slo="{slo.name}"}} > {threshold}'
        for w in (pair.long, pair.short)
    ]
    guard = f"slo:sli_requests:rate{pair.long} > {spec.min_request_rate}"
    return f"(\n  {legs[0]}\n  and\n  {legs[1]}\n  and on ()\n  {guard}\n)"


def alert_name(slo: Slo, alert: BurnAlert) -> str:
    return f"Neuros{slo.name.capitalize()}{alert.suffix}"


def alert_rules(spec: SloSpec, runbook_base: str | None = None) -> dict[str, Any]:
    """Burn-rate alerts; runbook links from ``runbook_base`` (default: prometheus/runbook.yml)."""
    base = runbook_links.load_base_url() if runbook_base is None else runbook_base
    rules = []
    for slo in spec.slos:
        for alert in BURN_ALERTS:
            name = alert_name(slo, alert)
            pairs = " or ".join(f"{p.factor:g}x over {p.long}/{p.short}" for p in alert.pairs)
            rules.append(
                {
                    "alert": name,
                    "expr": "\nor\n".join(_burn_condition(spec, slo, p) for p in alert.pairs),
                    "for": alert.for_,
                    "labels": {**_labels(spec, slo), "severity": alert.severity},
                    "annotations": {
                        "summary": f"{spec.service} is burning its {slo.name} error budget "
                        f"({alert.severity})",
                        "description": (
                            f"{slo.description} Objective {slo.objective:.2%} over {spec.window}; "
                            f"the error ratio is {{{{ $value | humanizePercentage }}}}, a burn "
                            f"rate above {pairs} ({{{{ $labels.slo }}}} SLO)."
                        ),
                        "runbook_url": runbook_links.url(name, base),
                    },
                }
            )
    return {"groups": [{"name": "slo-burn-rate", "rules": rules}]}


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(rules: dict[str, Any]) -> str:
    header = (
        "# Generated by `python -m stacktools.generate.slo` from prometheus/slo.yml. Do not edit:\n"
        "# change the spec and regenerate (a test fails when this file drifts).\n"
    )
    return header + yaml.dump(rules, Dumper=_Dumper, sort_keys=False, width=100)


def generated(spec: SloSpec) -> dict[str, str]:
    return {
        RECORDING_FILE: render(recording_rules(spec)),
        ALERTS_FILE: render(alert_rules(spec)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    parser.add_argument("--spec", type=Path, default=SPEC_PATH)
    parser.add_argument("--out", type=Path, default=RULES_DIR)
    args = parser.parse_args(argv)
    try:
        files = generated(load_spec(args.spec))
    except (SpecError, runbook_links.ConfigError) as exc:
        print(f"slo: {exc}", file=sys.stderr)
        return 2
    stale = [
        n
        for n, text in files.items()
        if not (args.out / n).is_file() or (args.out / n).read_text() != text
    ]
    if args.check:
        for name in stale:
            print(
                f"slo: {args.out / name} is stale: run python -m stacktools.generate.slo",
                file=sys.stderr,
            )
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in stale:
        (args.out / name).write_text(files[name])
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
