"""What the benchmark parts share: the error that fails a run, the report maths they all
use, the helpers that start and wait for processes, and reading k6's summaries.

Both stacktools.bench.agent (parts a-f, the driver) and stacktools.bench.backends (part
g) import this module; neither imports the other at run time.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

PROG = "bench-agent"
START_TIMEOUT_SECONDS = 60.0
# ingest.js: measured requests are numbered from here, after the warm-up's.
INGEST_MEASURE_OFFSET = 10_000_000
K6_THRESHOLDS_FAILED = 99


class BenchError(Exception):
    """Something could not be measured; the run fails with this message."""


# A GET of this user's KPIs without a token tells auth on (401) from off (404).
AUTH_PROBE_PATH = "/v1/users/bench-auth-probe/kpis"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None:
        return None
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return None
    return numerator / denominator


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def median_value(
    medians: Mapping[str, Mapping[str, float]], config: str, name: str
) -> float | None:
    value = medians.get(config, {}).get(name)
    return None if value is None or math.isnan(value) else value


def paired_ratio(
    runs: Sequence[Mapping[str, Any]], numerator: str, denominator: str, name: str
) -> float | None:
    """The median over rounds of ``numerator / denominator`` within each round. Two runs
    of one round are minutes apart, rounds can be further apart: when the machine's
    speed drifts between rounds (here by up to 30 %), the ratio within a round drifts
    far less than either median."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        value = run["metrics"].get(name)
        if value is not None and run["config"] in (numerator, denominator):
            by_round.setdefault(int(run["round"]), {})[str(run["config"])] = float(value)
    ratios = [
        r
        for pair in by_round.values()
        if (r := ratio(pair.get(numerator), pair.get(denominator))) is not None
    ]
    return median(ratios) if ratios else None


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


K6_DURATION = re.compile(r"^(\d+(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def seconds(duration: str) -> float:
    """A k6 duration (``1m30s``) in seconds."""
    if not K6_DURATION.match(duration):
        raise ValueError(f"not a k6 duration like 20s or 1m30s: {duration!r}")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(duration))


def db_file_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return (path.stat().st_size if path.exists() else 0) + (
        wal.stat().st_size if wal.exists() else 0
    )


def log(message: str) -> None:
    print(f"==> {message}", flush=True)


def warn(message: str) -> None:
    print(f"{PROG}: WARNING: {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and all its threads (utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may hold spaces): utime is 14, stime 15.
    fields = stat.rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).is_success:
                return
        if proc.poll() is not None:
            raise BenchError(
                f"process exited ({proc.returncode}) before {url} answered:\n{log_tail(log_path)}"
            )
        if time.monotonic() > deadline:
            raise BenchError(
                f"{url} did not answer within {START_TIMEOUT_SECONDS:g}s:\n{log_tail(log_path)}"
            )
        time.sleep(0.1)


@dataclass(slots=True)
class K6Summary:
    requests: int
    rps: float
    iterations: int
    iterations_rate: float
    dropped_iterations: int
    med_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    checks_passed: int
    checks_failed: int
    by_op: dict[str, dict[str, float]] = field(default_factory=dict)


def read_k6_summary(path: Path) -> K6Summary:
    """The numbers the report needs from a ``k6 run --summary-export`` file."""
    metrics: dict[str, Any] = json.loads(path.read_text())["metrics"]
    reqs = metrics.get("http_reqs", {"count": 0, "rate": 0.0})
    duration = metrics.get("http_req_duration", {})
    iterations = metrics.get("iterations", {"count": 0, "rate": 0.0})
    checks = metrics.get("checks", {"passes": 0, "fails": 0})
    by_op = {}
    for name, values in metrics.items():
        match = re.fullmatch(r"http_req_duration\{op:(\w+)\}", name)
        if match:
            by_op[match.group(1)] = {
                "p95_ms": float(values["p(95)"]),
                "p99_ms": float(values["p(99)"]),
            }
    return K6Summary(
        requests=int(reqs["count"]),
        rps=float(reqs["rate"]),
        iterations=int(iterations["count"]),
        iterations_rate=float(iterations["rate"]),
        dropped_iterations=int(metrics.get("dropped_iterations", {}).get("count", 0)),
        med_ms=float(duration.get("med", math.nan)),
        p95_ms=float(duration.get("p(95)", math.nan)),
        p99_ms=float(duration.get("p(99)", math.nan)),
        max_ms=float(duration.get("max", math.nan)),
        checks_passed=int(checks["passes"]),
        checks_failed=int(checks["fails"]),
        by_op=by_op,
    )


@dataclass(frozen=True, slots=True)
class K6Job:
    label: str
    cmd: Sequence[str]
    log_path: Path
    summary: Path


def k6_numbers(job: K6Job, status: int) -> K6Summary:
    """A k6 run's summary; fails when it has none, a check failed or nothing was sent."""
    if not job.summary.is_file():
        raise BenchError(f"[{job.label}] k6 exited {status} without a summary: see {job.log_path}")
    numbers = read_k6_summary(job.summary)
    if status not in (0, K6_THRESHOLDS_FAILED) or numbers.checks_failed or not numbers.requests:
        raise BenchError(
            f"[{job.label}] k6 exited {status}; {numbers.checks_failed} of "
            f"{numbers.checks_passed + numbers.checks_failed} checks failed, "
            f"{numbers.requests} requests: see {job.log_path} and the server log"
        )
    return numbers
