"""Performance gate over k6 summaries (``k6 run --summary-export``, legacy format).

Standard library only, so ``k6/perf-gate.sh`` and ``k6/run-load-tests.sh`` run it with
any Python 3.11. Four commands:

    gate CURRENT BASELINE     table of metric | baseline | current | change | verdict;
                              exit 0 pass, 1 regression, 2 unusable input or a run
                              whose env differs from the baseline's (not comparable)
    summary SUMMARY           short human summary of one run
    env SUMMARY               record the run's env next to it (SUMMARY.env.json)
    baseline SUMMARY BASELINE write the summary's numbers and env into the baseline
                              file, keeping its tolerances and comment

The baseline schema is documented in k6/baselines/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_INPUT = 2

P95 = "http_req_duration_p95_ms"
P99 = "http_req_duration_p99_ms"
RATE = "http_reqs_rate"
FAILED = "http_req_failed_rate"
# Gated metrics and whether a higher value is better.
HIGHER_IS_BETTER: dict[str, bool] = {P95: False, P99: False, RATE: True, FAILED: False}
LOWER_KINDS = frozenset({"max_increase_pct", "max_increase_abs"})
HIGHER_KINDS = frozenset({"max_decrease_pct", "max_decrease_abs"})
# The scenarios threshold the expected responses only; fall back to all requests.
DURATION_SOURCES = ("http_req_duration{expected_response:true}", "http_req_duration")
# Throughput: iterations of the default function (one request of the mix each), so the
# ~505 requests setup() sends to seed the users and probe the invalid cases don't count.
THROUGHPUT_SOURCE = "iterations"
# The scenarios' knobs without the K6_ prefix (k6 owns K6_DURATION), and the target.
RECORDED_ENV_NAMES = ("BASE_URL", "HOLD_DURATION")
# Outputs, locations and credentials: not part of what shaped the measured load.
RECORDED_ENV_EXCLUDED = ("K6_PROMETHEUS", "K6_CLOUD", "K6_WEB_DASHBOARD", "K6_BIN")
# Where the run was aimed, not how: a baseline stays comparable across hosts and ports.
COMPARED_ENV_IGNORED = frozenset({"BASE_URL"})
ENV_SUFFIX = ".env.json"


class GateInputError(ValueError):
    """A file that is missing, unreadable or lacks a key the gate needs."""


@dataclass(frozen=True, slots=True)
class Row:
    metric: str
    baseline: float
    current: float
    limit: float
    regression: bool

    @property
    def change(self) -> str:
        if self.baseline == 0:
            return "n/a" if self.current == 0 else f"{self.current - self.baseline:+.4g} abs"
        return f"{(self.current - self.baseline) / self.baseline * 100:+.1f}%"


def _load_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise GateInputError(f"{path}: cannot read: {error.strerror}") from error
    except json.JSONDecodeError as error:
        raise GateInputError(f"{path}: not JSON: {error}") from error
    if not isinstance(document, dict):
        raise GateInputError(f"{path}: expected a JSON object")
    return document


def _number(value: object, where: str) -> float:
    if value is None:
        raise GateInputError(f"{where}: not measured yet (see k6/baselines/README.md)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GateInputError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _stat(metrics: Mapping[str, Any], names: Sequence[str], stat: str, path: Path) -> float:
    for name in names:
        metric = metrics.get(name)
        if isinstance(metric, dict) and stat in metric:
            return _number(metric[stat], f"{path}: metrics.{name}.{stat}")
    raise GateInputError(
        f"{path}: no metrics.{names[0]}[{stat!r}] (a k6 --summary-export file? "
        f"the script must list {stat} in summaryTrendStats)"
        if stat.startswith("p(")
        else f"{path}: no metrics.{names[0]}.{stat} (a k6 --summary-export file?)"
    )


def summary_numbers(path: Path) -> dict[str, float]:
    """The gated numbers of a k6 summary export."""
    metrics = _load_json(path).get("metrics")
    if not isinstance(metrics, dict):
        raise GateInputError(f"{path}: no 'metrics' object (a k6 --summary-export file?)")
    return {
        P95: _stat(metrics, DURATION_SOURCES, "p(95)", path),
        P99: _stat(metrics, DURATION_SOURCES, "p(99)", path),
        RATE: _stat(metrics, (THROUGHPUT_SOURCE,), "rate", path),
        FAILED: _stat(metrics, ("http_req_failed",), "value", path),
    }


def _limit(metric: str, baseline: float, tolerance: object, path: Path) -> float:
    """The worst acceptable value: the most lenient of the tolerance's allowances."""
    where = f"{path}: tolerances.{metric}"
    if not isinstance(tolerance, dict) or not tolerance:
        raise GateInputError(f"{where}: expected an object such as {{'max_increase_pct': 20}}")
    higher = HIGHER_IS_BETTER[metric]
    allowed = HIGHER_KINDS if higher else LOWER_KINDS
    allowances: list[float] = []
    for kind, raw in tolerance.items():
        if kind not in allowed:
            raise GateInputError(f"{where}: {kind!r} not allowed here; use {sorted(allowed)}")
        amount = _number(raw, f"{where}.{kind}")
        if amount < 0:
            raise GateInputError(f"{where}.{kind}: must be >= 0")
        allowances.append(baseline * amount / 100 if kind.endswith("_pct") else amount)
    slack = max(allowances)
    return baseline - slack if higher else baseline + slack


def env_path(summary_path: Path) -> Path:
    """The sidecar holding the env of the run that wrote ``summary_path``."""
    return summary_path.with_name(summary_path.name.removesuffix(".json") + ENV_SUFFIX)


def _env_object(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise GateInputError(f"{where}: expected an object of NAME: value strings")
    return dict(value)


def run_env(summary_path: Path, given: Sequence[str] | None = None) -> dict[str, str]:
    """The env of the run: ``--env NAME=VALUE`` pairs if given, else the sidecar."""
    if given is not None:
        pairs = [item.partition("=") for item in given]
        if bad := [item for item, (_, sep, _) in zip(given, pairs, strict=True) if not sep]:
            raise GateInputError(f"--env expects NAME=VALUE, got {bad[0]!r}")
        return {name: value for name, _, value in pairs}
    sidecar = env_path(summary_path)
    if not sidecar.is_file():
        raise GateInputError(
            f"{sidecar}: missing, so the run's env is unknown and comparability cannot be "
            "checked; run through k6/run-load-tests.sh (it writes the file) or pass "
            "--env NAME=VALUE for each K6_*/HOLD_DURATION variable the run had"
        )
    return _env_object(_load_json(sidecar), str(sidecar))


def env_mismatches(run: Mapping[str, str], baseline: Mapping[str, str]) -> list[str]:
    names = sorted((set(run) | set(baseline)) - COMPARED_ENV_IGNORED)
    return [
        f"{name}: baseline {baseline.get(name, '(unset)')}, run {run.get(name, '(unset)')}"
        for name in names
        if run.get(name) != baseline.get(name)
    ]


def check_comparable(env: Mapping[str, str], baseline: Mapping[str, Any], path: Path) -> None:
    measured = baseline.get("measured")
    if not isinstance(measured, dict) or "env" not in measured:
        raise GateInputError(
            f"{path}: no measured.env; refresh the baseline (k6/baselines/README.md)"
        )
    differences = env_mismatches(env, _env_object(measured["env"], f"{path}: measured.env"))
    if differences:
        raise GateInputError(
            f"not comparable: the run's env differs from {path} measured.env "
            f"({'; '.join(differences)}); rerun with the baseline's env, or refresh the "
            "baseline on purpose (k6/baselines/README.md)"
        )


def compare(
    current_path: Path, baseline_path: Path, given_env: Sequence[str] | None = None
) -> list[Row]:
    current = summary_numbers(current_path)
    baseline = _load_json(baseline_path)
    check_comparable(run_env(current_path, given_env), baseline, baseline_path)
    tolerances = baseline.get("tolerances")
    if not isinstance(tolerances, dict):
        raise GateInputError(f"{baseline_path}: no 'tolerances' object")
    rows = []
    for metric, higher in HIGHER_IS_BETTER.items():
        if metric not in baseline:
            raise GateInputError(f"{baseline_path}: no {metric!r}")
        if metric not in tolerances:
            raise GateInputError(f"{baseline_path}: no tolerances.{metric}")
        base = _number(baseline[metric], f"{baseline_path}: {metric}")
        limit = _limit(metric, base, tolerances[metric], baseline_path)
        value = current[metric]
        regression = value < limit if higher else value > limit
        rows.append(Row(metric, base, value, limit, regression))
    return rows


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"


def gate(current_path: Path, baseline_path: Path, given_env: Sequence[str] | None = None) -> int:
    rows = compare(current_path, baseline_path, given_env)
    header = ("metric", "baseline", "current", "change", "limit", "verdict")
    body = [
        (
            r.metric,
            _fmt(r.baseline),
            _fmt(r.current),
            r.change,
            ("≥ " if HIGHER_IS_BETTER[r.metric] else "≤ ") + _fmt(r.limit),
            "REGRESSION" if r.regression else "ok",
        )
        for r in rows
    ]
    print(_table([header, *body]))
    failed = [r.metric for r in rows if r.regression]
    if failed:
        print(f"perf-gate: FAIL: regression in {', '.join(failed)} (baseline {baseline_path})")
        return EXIT_REGRESSION
    print(f"perf-gate: PASS against {baseline_path}")
    return EXIT_PASS


def summary(path: Path) -> int:
    """A few lines from the summary export: what ran and whether thresholds held."""
    document = _load_json(path)
    numbers = summary_numbers(path)
    metrics: dict[str, Any] = document["metrics"]
    reqs = metrics["http_reqs"]
    checks = metrics.get("checks") or {}
    crossed = sorted(
        f"{name}: {expression}"
        for name, metric in metrics.items()
        if isinstance(metric, dict)
        # Legacy summary-export format: true means the threshold was crossed.
        for expression, failed in (metric.get("thresholds") or {}).items()
        if failed
    )
    total = sum(len(m.get("thresholds") or {}) for m in metrics.values() if isinstance(m, dict))
    dropped = (metrics.get("dropped_iterations") or {}).get("count", 0)
    iterations = int(metrics[THROUGHPUT_SOURCE]["count"])
    print(
        f"requests      {int(reqs['count'])} ({reqs['rate']:.1f}/s), of which "
        f"{iterations} in the mix ({numbers[RATE]:.1f}/s), the rest setup()"
    )
    print(f"latency       p95 {numbers[P95]:.1f} ms, p99 {numbers[P99]:.1f} ms")
    print(f"failed        {numbers[FAILED] * 100:.2f}% unexpected responses")
    if checks:
        passes, fails = int(checks.get("passes", 0)), int(checks.get("fails", 0))
        print(f"checks        {passes}/{passes + fails} passed")
    if dropped:
        print(f"dropped       {int(dropped)} iterations (not enough VUs for the arrival rate)")
    verdict = "all passed" if not crossed else f"{len(crossed)} crossed: " + "; ".join(crossed)
    print(f"thresholds    {total} defined, {verdict}")
    return EXIT_PASS


def _measured_env() -> dict[str, str]:
    return {
        name: value
        for name, value in sorted(os.environ.items())
        if (name.startswith("K6_") or name in RECORDED_ENV_NAMES)
        and not name.startswith(RECORDED_ENV_EXCLUDED)
        and not name.endswith("_DIR")
    }


def write_env(summary_path: Path) -> int:
    """Record the env of the run (this process's) next to its summary."""
    sidecar = env_path(summary_path)
    sidecar.write_text(json.dumps(_measured_env(), indent=2) + "\n", encoding="utf-8")
    return EXIT_PASS


def write_baseline(summary_path: Path, baseline_path: Path, k6_version: str) -> int:
    """Refresh a baseline's numbers on purpose; tolerances and comment are kept.

    The env is the run's (its sidecar) when recorded, else this process's.
    """
    numbers = summary_numbers(summary_path)
    sidecar = env_path(summary_path)
    env = _env_object(_load_json(sidecar), str(sidecar)) if sidecar.is_file() else _measured_env()
    document = _load_json(baseline_path) if baseline_path.exists() else {}
    if not isinstance(document.get("tolerances"), dict):
        raise GateInputError(f"{baseline_path}: needs a 'tolerances' object to refresh")
    document.update({metric: round(value, 4) for metric, value in numbers.items()})
    document["measured"] = {
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "summary": summary_path.name,
        "k6": k6_version,
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
        "env": env,
    }
    baseline_path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"perf-gate: wrote {baseline_path} from {summary_path}")
    return EXIT_PASS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perf-gate", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    gate_cmd = commands.add_parser("gate", help="compare a summary with a baseline")
    gate_cmd.add_argument("current", type=Path)
    gate_cmd.add_argument("baseline", type=Path)
    gate_cmd.add_argument(
        "--env",
        action="append",
        metavar="NAME=VALUE",
        help="the run's env, instead of CURRENT's .env.json sidecar (repeat per variable)",
    )
    summary_cmd = commands.add_parser("summary", help="print a short summary of a run")
    summary_cmd.add_argument("summary", type=Path)
    env_cmd = commands.add_parser("env", help="write SUMMARY.env.json from this env")
    env_cmd.add_argument("summary", type=Path)
    baseline_cmd = commands.add_parser("baseline", help="refresh a baseline from a summary")
    baseline_cmd.add_argument("summary", type=Path)
    baseline_cmd.add_argument("baseline", type=Path)
    baseline_cmd.add_argument("--k6-version", default="unknown")
    try:
        args = parser.parse_args(argv)
    except SystemExit as error:
        return EXIT_PASS if error.code == 0 else EXIT_INPUT
    try:
        if args.command == "gate":
            return gate(args.current, args.baseline, args.env)
        if args.command == "summary":
            return summary(args.summary)
        if args.command == "env":
            return write_env(args.summary)
        return write_baseline(args.summary, args.baseline, args.k6_version)
    except GateInputError as error:
        print(f"perf-gate: error: {error}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
