"""The ingest-engine benchmark: six ratios, measured side by side in one run.

Run through ``scripts/bench-agent.sh`` (or ``python -m stacktools.bench.agent``). Every
configuration below runs once per round, rounds interleaved (the order reversed on
even rounds), and the medians over rounds are compared:

(a) agent vs framework floor: the agent with telemetry off against
    ``stacktools/bench/floor.py``, the same route, path parameter, body parsing and
    uvicorn options with nothing behind them (and, for transparency, its "classic"
    variant: a ``batch: ReadingsBatch`` body parameter in a sync def). Closed loop,
    k6/bench/ingest.js. Ratio agent req/s / floor req/s, target >= 0.6. The agent
    checks each request's token; the floor, the bare framework, ignores it.
(b) full telemetry vs telemetry off: metrics on, every trace exported over OTLP/HTTP
    to ``python -m stacktools.otlp_sink``, /metrics scraped every second; against
    NEUROS_METRICS_ENABLED=false OTEL_SDK_DISABLED=true. Closed loop, ingest.js.
    Ratio full req/s / off req/s, target >= 0.90. Agent CPU per request from /proc.
(c) a database pre-filled with years of history (BENCH_PREFILL_MB, built once through
    the agent's HTTP API and cached) against one holding only the same users' last
    15 days, at one constant arrival rate of ingests and KPI reads
    (k6/bench/user_mix.js), full telemetry. Ratios of p95 and of p99, target <= 1.2.
(d) users with 288 readings a day for 15 days against users with one a day: the cost
    of an ingest (the user's latest instant, same cadence) plus a KPI read, closed
    loop, telemetry off. Ratio heavy cost / light cost (cost = 1 / throughput),
    target <= 1.2; the p95 ratio is printed too.
(e) p99 of ingests at constant arrival rates of 100, 400 and 800 req/s, production
    defaults (full telemetry). Target: 400 req/s holds (p99 < 300 ms, < 1 % dropped).
(f) API auth on vs off: the agent as deployed (every request's bearer token hashed,
    looked up and checked) against the same agent started by ``stacktools/bench/noauth.py``,
    which overrides the routes' auth dependency (no user can turn auth off). Closed
    loop, ingest.js, telemetry off in both, so that auth's cost is the largest share it
    can be. Ratio auth req/s / no-auth req/s, target >= 0.95; p95 and p99 ratios too.
(g) the storage backends (``stacktools/bench/backends.py``): one agent on SQLite vs one on
    a PostgreSQL server the part starts itself, two agents on one PostgreSQL database,
    SQLite's group commit on vs off, WAL syncs per ingest at 1 VU vs N, CPU per request
    of the agents and of PostgreSQL, bytes per reading, and a capacity table for N
    users at one reading every 5 minutes. Closed loop, ingest.js, telemetry off, nothing
    pinned. No target: the figures docs/scaling.md is written from.

Every agent reads a tokens file made for the run (NEUROS_API_TOKENS_FILE in a
temporary folder); k6 and the seeding client send its token, which k6 gets in its
environment (NEUROS_API_TOKEN), never on its command line.

Missing a target is reported, never an error. The exit status is non-zero only when
something could not be measured: a server that does not start, a failed request or
check. Results: k6/results/bench-<UTC time>/ (report.json, report.txt, report.png,
every k6 summary and server log).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import json
import math
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, TextIO

import httpx

from neuros.auth.admin_token import TOKEN_VARIABLE, bearer
from neuros.auth.tokens import ALL_USERS, Scope
from neuros.auth.tokens_file import TokensFile
from stacktools import paths
from stacktools.bench.common import (
    AUTH_PROBE_PATH,
    INGEST_MEASURE_OFFSET,
    K6_DURATION,
    PROG,
    START_TIMEOUT_SECONDS,
    BenchError,
    K6Job,
    K6Summary,
    cpu_seconds,
    db_file_bytes,
    fmt,
    k6_numbers,
    log,
    log_tail,
    median,
    median_value,
    paired_ratio,
    ratio,
    seconds,
    wait_for_http,
    warn,
)
from stacktools.paths import REPO_ROOT

if TYPE_CHECKING:
    from stacktools.bench.backends import BackendsPart


# The chart's matplotlib: the bench extra, added to the venv scripts/test.sh made.
INSTALL_BENCH_EXTRA = ".venv/bin/uv sync --frozen --inexact --extra bench"
K6_DIR = REPO_ROOT / paths.K6_DIR / "bench"
RESULTS_ROOT = REPO_ROOT / paths.K6_RESULTS_DIR
CACHE_DIR = RESULTS_ROOT / "bench-cache"
STORE_SOURCE = REPO_ROOT / paths.NEUROS_DIR / "store.py"

PARTS = ("a", "b", "c", "d", "e", "f", "g")
E_RATES = (100, 400, 800)
E_TARGET_RATE = 400
P99_LIMIT_MS = 300.0
# An arrival rate "holds" only if (almost) every iteration could be started.
MAX_DROPPED_FRACTION = 0.01

STOP_TIMEOUT_SECONDS = 15.0
# Bound on a closed loop's request rate, to keep generated instants in the past.
CLOSED_LOOP_MAX_RPS = 2000

# Seeded users: ids are PREFIX + index on 3 digits, as k6/bench/user_mix.js builds them.
SEED_DAYS = 15
HISTORY_PREFIX = "hist-"
HISTORY_USERS = 100
HISTORY_BASE = datetime(2024, 1, 1, tzinfo=UTC)
HEAVY_PREFIX = "heavy-"
LIGHT_PREFIX = "light-"
PROFILE_BASE = datetime(1980, 1, 1, tzinfo=UTC)
HEAVY_STEP = timedelta(minutes=5)  # 288 readings a day
LIGHT_STEP = timedelta(days=1)
DAY = timedelta(days=1)

MAX_BATCH = 1000
RR_PER_READING = 300
RR_SERIES = 64
# Stored size of one reading with 300 RR intervals (overflow pages included: measured
# 4.9-5.2 kB), to size the prefill's batches.
EST_BYTES_PER_READING = 5000
# Bump when the generated data changes: it is part of the cache key.
GENERATOR_VERSION = 1
MB = 1_000_000


# --------------------------------------------------------------------------------------
# Report maths: pure, unit-tested in tests/tools/test_bench.py.


@dataclass(frozen=True, slots=True)
class Target:
    """A bound a ratio must meet: ``value >= bound`` (op ">=") or ``value <= bound``."""

    op: Literal[">=", "<="]
    bound: float

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


TARGETS: dict[str, Target] = {
    "a": Target(">=", 0.6),
    "b": Target(">=", 0.90),
    "c": Target("<=", 1.2),
    "d": Target("<=", 1.2),
    "f": Target(">=", 0.95),
}
# The bench's own token: every scope, every user.
TOKEN_NAME = "bench"  # noqa: S105 - a name, not a secret
TOKENS_FILE_NAME = "tokens.yml"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def holds(p99_ms: float, dropped: float, iterations: float, limit_ms: float = P99_LIMIT_MS) -> bool:
    """Whether an arrival rate held: p99 under the limit, (almost) nothing dropped."""
    started = iterations + dropped
    dropped_fraction = dropped / started if started > 0 else 1.0
    return p99_ms < limit_ms and dropped_fraction < MAX_DROPPED_FRACTION


def highest_holding_rate(held: Mapping[int, bool]) -> int | None:
    """The highest rate that held with every lower measured rate holding too."""
    best: int | None = None
    for rate in sorted(held):
        if not held[rate]:
            break
        best = rate
    return best


def medians_of(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per configuration, the median over rounds of each numeric field of ``metrics``."""
    by_config: dict[str, list[Mapping[str, float]]] = {}
    for run in runs:
        by_config.setdefault(str(run["config"]), []).append(run["metrics"])
    out: dict[str, dict[str, float]] = {}
    for config, metrics in by_config.items():
        names = sorted({name for m in metrics for name in m})
        out[config] = {
            name: median([float(m[name]) for m in metrics if m.get(name) is not None])
            for name in names
        }
    return out


def evaluate(
    medians: Mapping[str, Mapping[str, float]],
    parts: Sequence[str],
    runs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, dict[str, Any]]:
    """The ratios, targets and verdicts of each part measured, from the medians (and,
    where a part pairs its runs by round, from ``runs``)."""
    results: dict[str, dict[str, Any]] = {}

    def g(config: str, name: str) -> float | None:
        return median_value(medians, config, name)

    if "a" in parts:
        value = ratio(g("agent-off", "rps"), g("floor", "rps"))
        results["a"] = {
            "ratio": value,
            "ratio_classic": ratio(g("agent-off", "rps"), g("floor-classic", "rps")),
            "target": str(TARGETS["a"]),
            "met": TARGETS["a"].met(value),
        }
    if "b" in parts:
        value = ratio(g("agent-full", "rps"), g("agent-off", "rps"))
        results["b"] = {
            "ratio": value,
            "cpu_us_per_request_full": g("agent-full", "cpu_us_per_request"),
            "cpu_us_per_request_off": g("agent-off", "cpu_us_per_request"),
            "target": str(TARGETS["b"]),
            "met": TARGETS["b"].met(value),
        }
    if "c" in parts:
        p95 = ratio(g("c-prefilled", "p95_ms"), g("c-empty", "p95_ms"))
        p99 = ratio(g("c-prefilled", "p99_ms"), g("c-empty", "p99_ms"))
        results["c"] = {
            "p95_ratio": p95,
            "p99_ratio": p99,
            "target": str(TARGETS["c"]),
            "met_p95": TARGETS["c"].met(p95),
            "met_p99": TARGETS["c"].met(p99),
            "met": TARGETS["c"].met(p95) and TARGETS["c"].met(p99),
        }
    if "d" in parts:
        # cost = 1 / throughput, so heavy cost / light cost = light rate / heavy rate.
        value = ratio(g("d-light", "rps"), g("d-heavy", "rps"))
        results["d"] = {
            "cost_ratio": value,
            "p95_ratio": ratio(g("d-heavy", "p95_ms"), g("d-light", "p95_ms")),
            "target": str(TARGETS["d"]),
            "met": TARGETS["d"].met(value),
        }
    if "e" in parts:
        held: dict[int, bool] = {}
        rates: list[dict[str, Any]] = []
        for rate in E_RATES:
            p99 = g(f"e-{rate}", "p99_ms")
            dropped = g(f"e-{rate}", "dropped_iterations") or 0.0
            iterations = g(f"e-{rate}", "iterations") or 0.0
            held[rate] = p99 is not None and holds(p99, dropped, iterations)
            rates.append(
                {"rate": rate, "p99_ms": p99, "dropped_iterations": dropped, "holds": held[rate]}
            )
        results["e"] = {
            "rates": rates,
            "highest_holding_rate": highest_holding_rate(held),
            "target": f"{E_TARGET_RATE} req/s holds (p99 < {P99_LIMIT_MS:g} ms)",
            "met": held.get(E_TARGET_RATE, False),
        }
    if "f" in parts:
        # Auth costs about 1 us of ~600 us per request: a difference that only the
        # pairing by round can resolve against the machine's drift.
        of_medians = ratio(g("f-auth", "rps"), g("f-noauth", "rps"))
        paired = paired_ratio(runs, "f-auth", "f-noauth", "rps")
        value = paired if paired is not None else of_medians
        cpu_auth, cpu_noauth = (
            g("f-auth", "cpu_us_per_request"),
            g("f-noauth", "cpu_us_per_request"),
        )
        results["f"] = {
            "ratio": value,
            "ratio_of_medians": of_medians,
            "p95_ratio": ratio(g("f-auth", "p95_ms"), g("f-noauth", "p95_ms")),
            "p99_ratio": ratio(g("f-auth", "p99_ms"), g("f-noauth", "p99_ms")),
            "cpu_us_per_request_auth": cpu_auth,
            "cpu_us_per_request_noauth": cpu_noauth,
            "target": str(TARGETS["f"]),
            "met": TARGETS["f"].met(value),
        }
    if "g" in parts:
        from stacktools.bench import backends as bench_backends

        results["g"] = bench_backends.evaluate(medians, runs)
    return results


def format_report(
    medians: Mapping[str, Mapping[str, float]],
    results: Mapping[str, Mapping[str, Any]],
    facts: Mapping[str, Any],
) -> str:
    """The human report: per part, the medians, the ratio, its target and verdict."""

    def g(config: str, name: str) -> float | None:
        return median_value(medians, config, name)

    def row(label: str, config: str) -> str:
        return (
            f"    {label:<24}{fmt(g(config, 'rps'), '>9.1f')} req/s"
            f"   p95 {fmt(g(config, 'p95_ms'), '>7.1f')} ms"
            f"   p99 {fmt(g(config, 'p99_ms'), '>7.1f')} ms"
            f"   CPU {fmt(g(config, 'cpu_us_per_request'), '>6.0f')} us/req"
        )

    lines = [f"medians of {facts.get('rounds', '?')} interleaved round(s)", ""]
    if "a" in results:
        r = results["a"]
        lines += [
            f"(a) agent (telemetry off) vs framework floor, closed loop, {facts['vus']} VUs",
            row("agent, telemetry off", "agent-off"),
            row("floor (read_batch)", "floor"),
            row("floor (classic body)", "floor-classic"),
            f"    ratio agent/floor: {fmt(r['ratio'])}   target {r['target']}: {verdict(r['met'])}",
            f"    ratio agent/classic floor: {fmt(r['ratio_classic'])}   (no target)",
            "",
        ]
    if "b" in results:
        r = results["b"]
        lines += [
            "(b) full telemetry vs telemetry off, closed loop",
            row("full telemetry", "agent-full"),
            row("telemetry off", "agent-off"),
            f"    ratio full/off: {fmt(r['ratio'])}   target {r['target']}: {verdict(r['met'])}",
            "",
        ]
    if "c" in results:
        r = results["c"]
        lines += [
            f"(c) prefilled ({fmt(facts.get('prefilled_mb'), '.0f')} MB) vs empty database, "
            f"{facts['latency_rate']} req/s ingest + KPI reads, full telemetry",
            row("prefilled", "c-prefilled"),
            row("empty (last 15 days)", "c-empty"),
            f"    ratio p95 prefilled/empty: {fmt(r['p95_ratio'])}   target {r['target']}: "
            f"{verdict(r['met_p95'])}",
            f"    ratio p99 prefilled/empty: {fmt(r['p99_ratio'])}   target {r['target']}: "
            f"{verdict(r['met_p99'])}",
            "",
        ]
    if "d" in results:
        r = results["d"]
        lines += [
            "(d) 288 readings/day vs 1 reading/day users, ingest + KPI read, closed loop,"
            " telemetry off",
            row("heavy (288/day)", "d-heavy"),
            row("light (1/day)", "d-light"),
            f"    cost per ingest+read: heavy {fmt(g('d-heavy', 'pair_cost_us'), '.0f')} us, "
            f"light {fmt(g('d-light', 'pair_cost_us'), '.0f')} us",
            f"    ratio cost heavy/light: {fmt(r['cost_ratio'])}   target {r['target']}: "
            f"{verdict(r['met'])}",
            f"    ratio p95 heavy/light: {fmt(r['p95_ratio'])}   (no target)",
            "",
        ]
    if "e" in results:
        r = results["e"]
        lines.append("(e) ingest at constant arrival rates, full telemetry")
        for point in r["rates"]:
            lines.append(
                f"    {point['rate']:>4} req/s   p99 {fmt(point['p99_ms'], '>8.1f')} ms   "
                f"dropped {fmt(point['dropped_iterations'], '.0f'):>6}   "
                f"{'holds' if point['holds'] else 'does not hold'}"
            )
        highest = r["highest_holding_rate"]
        lines += [
            f"    highest rate holding p99 < {P99_LIMIT_MS:g} ms: "
            f"{'none' if highest is None else f'{highest} req/s'}",
            f"    target {r['target']}: {verdict(r['met'])}",
            "",
        ]
    if "f" in results:
        r = results["f"]
        lines += [
            f"(f) API auth on vs off, closed loop, {facts['vus']} VUs, telemetry off",
            row("auth on (as deployed)", "f-auth"),
            row("auth off (bench_noauth)", "f-noauth"),
            f"    ratio auth/no-auth (median of per-round ratios): {fmt(r['ratio'])}   "
            f"target {r['target']}: {verdict(r['met'])}",
            f"    ratio of the medians above: {fmt(r.get('ratio_of_medians'))}",
            f"    ratio p95 auth/no-auth: {fmt(r['p95_ratio'])}   "
            f"p99: {fmt(r['p99_ratio'])}   (no target)",
            "",
        ]
    if "g" in results:
        from stacktools.bench import backends as bench_backends

        lines += bench_backends.report_lines(medians, results["g"], facts)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Options and the plan.


@dataclass(frozen=True, slots=True)
class Options:
    rounds: int
    duration: str
    rate_duration: str
    warmup: str
    vus: int
    port: int
    parts: tuple[str, ...]
    prefill_mb: int
    latency_rate: int
    profile_users: int
    quick: bool
    use_cache: bool
    dry_run: bool


@dataclass(frozen=True, slots=True)
class Cohort:
    """Users ``prefix000``..., each seeded with ``readings`` readings ``step`` apart,
    the newest at ``base``; new readings follow at the same cadence."""

    prefix: str
    users: int
    base: datetime
    step: timedelta
    readings: int


@dataclass(frozen=True, slots=True)
class DbSpec:
    """A database built through the agent's API. With ``fill_mb``, older history of the
    first cohort's users is added, in batches, until the file holds that many MB."""

    name: str
    cohorts: tuple[Cohort, ...]
    fill_mb: int = 0


Server = Literal["agent-full", "agent-off", "agent-noauth", "floor", "floor-classic"]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One configuration: a server, a database, a k6 workload."""

    config: str
    part: str
    server: Server
    script: str
    k6_env: Mapping[str, str]
    warmup_env: Mapping[str, str]
    duration: str
    db: str | None = None
    # k6 SEQ_OFFSET of the measured run; None: just past the warm-up's requests.
    measure_offset: int | None = INGEST_MEASURE_OFFSET
    max_vus: int = 0
    # user_mix.js: the cohort whose newest instants the runs must keep in the past.
    cohort: Cohort | None = None


def history_cohort() -> Cohort:
    return Cohort(HISTORY_PREFIX, HISTORY_USERS, HISTORY_BASE, DAY, SEED_DAYS)


def heavy_cohort(opts: Options) -> Cohort:
    per_day = DAY // HEAVY_STEP
    return Cohort(HEAVY_PREFIX, opts.profile_users, PROFILE_BASE, HEAVY_STEP, per_day * SEED_DAYS)


def light_cohort(opts: Options) -> Cohort:
    return Cohort(LIGHT_PREFIX, opts.profile_users, PROFILE_BASE, LIGHT_STEP, SEED_DAYS)


def db_specs(opts: Options) -> list[DbSpec]:
    specs = []
    if "c" in opts.parts:
        specs += [
            DbSpec("c-prefilled", (history_cohort(),), fill_mb=opts.prefill_mb),
            DbSpec("c-empty", (history_cohort(),)),
        ]
    if "d" in opts.parts:
        specs.append(DbSpec("d-profiles", (heavy_cohort(opts), light_cohort(opts))))
    return specs


def _epoch_ms(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(milliseconds=1))


def _cohort_env(cohort: Cohort) -> dict[str, str]:
    return {
        "USER_PREFIX": cohort.prefix,
        "USERS": str(cohort.users),
        "BASE_MS": str(_epoch_ms(cohort.base)),
        "STEP_MS": str(int(cohort.step / timedelta(milliseconds=1))),
    }


def _rate_env(rate: int) -> tuple[dict[str, str], int]:
    pre_vus, max_vus = max(16, math.ceil(rate / 2)), max(16, rate)
    return {"RATE": str(rate), "PRE_VUS": str(pre_vus), "MAX_VUS": str(max_vus)}, max_vus


def run_specs(opts: Options) -> list[RunSpec]:
    """Every configuration of the parts asked for, in the order of round 1."""
    closed = {"VUS": str(opts.vus)}
    specs: list[RunSpec] = []
    ab: list[tuple[Server, str, bool]] = [
        ("agent-full", "b", "b" in opts.parts),
        ("agent-off", "ab", "a" in opts.parts or "b" in opts.parts),
        ("floor", "a", "a" in opts.parts),
        ("floor-classic", "a", "a" in opts.parts),
    ]
    for server, part, wanted in ab:
        if wanted:
            specs.append(RunSpec(server, part, server, "ingest.js", closed, closed, opts.duration))
    if "c" in opts.parts:
        cohort = history_cohort()
        env, max_vus = _rate_env(opts.latency_rate)
        env |= _cohort_env(cohort)
        for db in ("c-prefilled", "c-empty"):
            specs.append(
                RunSpec(
                    db,
                    "c",
                    "agent-full",
                    "user_mix.js",
                    env,
                    env,
                    opts.rate_duration,
                    db=db,
                    measure_offset=None,
                    max_vus=max_vus,
                    cohort=cohort,
                )
            )
    if "d" in opts.parts:
        for config, cohort in (("d-heavy", heavy_cohort(opts)), ("d-light", light_cohort(opts))):
            env = closed | _cohort_env(cohort)
            specs.append(
                RunSpec(
                    config,
                    "d",
                    "agent-off",
                    "user_mix.js",
                    env,
                    env,
                    opts.duration,
                    db="d-profiles",
                    measure_offset=None,
                    max_vus=opts.vus,
                    cohort=cohort,
                )
            )
    if "e" in opts.parts:
        warm, _ = _rate_env(E_RATES[0])
        for rate in E_RATES:
            env, max_vus = _rate_env(rate)
            specs.append(
                RunSpec(
                    f"e-{rate}",
                    "e",
                    "agent-full",
                    "ingest.js",
                    env,
                    warm,
                    opts.rate_duration,
                    max_vus=max_vus,
                )
            )
    if "f" in opts.parts:
        pair: tuple[tuple[str, Server], ...] = (
            ("f-auth", "agent-off"),
            ("f-noauth", "agent-noauth"),
        )
        for config, server in pair:
            specs.append(RunSpec(config, "f", server, "ingest.js", closed, closed, opts.duration))
    return specs


def _group(spec: RunSpec) -> str:
    """(a) and (b) share the agent-off runs: one group."""
    return "ab" if set(spec.part) <= {"a", "b"} else spec.part


def round_order(specs: Sequence[RunSpec], round_number: int) -> list[RunSpec]:
    """Round 1 in plan order; even rounds reverse each part's runs, so a drift of the
    machine's speed during a round does not favour the configuration that runs first."""
    if round_number % 2 == 1:
        return list(specs)
    ordered: list[RunSpec] = []
    group: list[RunSpec] = []
    for spec in [*specs, None]:
        if group and (spec is None or _group(spec) != _group(group[0])):
            ordered += reversed(group)
            group = []
        if spec is not None:
            group.append(spec)
    return ordered


def estimate_seconds(opts: Options, specs: Sequence[RunSpec]) -> float:
    # Starting and stopping the servers and k6, copying the database: measured 6-8 s.
    per_run_overhead = 7.0
    one_round = sum(
        per_run_overhead + seconds(opts.warmup) + seconds(spec.duration) for spec in specs
    )
    backends = 0.0
    if "g" in opts.parts:
        from stacktools.bench import backends as bench_backends

        backends = bench_backends.estimate_seconds(opts.warmup, opts.duration, opts.rounds)
    return one_round * opts.rounds + backends


# --------------------------------------------------------------------------------------
# Data: deterministic readings, as k6/bench/*.js generate them.


def _lcg(seed: int) -> Iterator[float]:
    state = seed % 2147483647
    if state <= 0:
        state += 2147483646
    while True:
        state = (state * 16807) % 2147483647
        yield (state - 1) / 2147483646


def _rr_series() -> list[str]:
    series = []
    for s in range(RR_SERIES):
        draw = _lcg(1000 + s)
        base = 700 + 300 * next(draw)
        values = [round((base + 120 * (next(draw) - 0.5)) * 10) / 10 for _ in range(RR_PER_READING)]
        series.append(json.dumps(values, separators=(",", ":")))
    return series


def user_id(prefix: str, index: int) -> str:
    return f"{prefix}{index:03d}"


def _reading_json(rr: Sequence[str], user: int, k: int, at: datetime) -> str:
    n = user * 31 + k
    return (
        f'{{"recorded_at":"{at:%Y-%m-%dT%H:%M:%S}Z","rr_intervals_ms":{rr[n % RR_SERIES]},'
        f'"resting_hr_bpm":{50 + n % 17},"sleep_hours":{5 + (n % 7) * 0.5}}}'
    )


def batch_body(rr: Sequence[str], cohort: Cohort, user: int, ks: range) -> bytes:
    """The user's readings number k in ``ks`` (0 is the newest, at ``cohort.base``)."""
    items = ",".join(_reading_json(rr, user, k, cohort.base - k * cohort.step) for k in ks)
    return f'{{"readings":[{items}]}}'.encode()


def cache_key(spec: DbSpec) -> str:
    """Hash of the schema-relevant source and of everything that shapes the data."""
    digest = hashlib.sha256(STORE_SOURCE.read_bytes())
    params = {
        "generator": GENERATOR_VERSION,
        "fill_mb": spec.fill_mb,
        "rr_per_reading": RR_PER_READING,
        "max_batch": MAX_BATCH,
        "cohorts": [
            {
                "prefix": c.prefix,
                "users": c.users,
                "base": c.base.isoformat(),
                "step_s": c.step.total_seconds(),
                "readings": c.readings,
            }
            for c in spec.cohorts
        ],
    }
    digest.update(json.dumps(params, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def cache_stem(spec: DbSpec) -> str:
    """The database and its size: builds of another size (--quick's) are kept beside."""
    users = "-".join(str(c.users) for c in spec.cohorts)
    return f"{spec.name}-{users}u" + (f"-{spec.fill_mb}mb" if spec.fill_mb else "")


def cache_path(spec: DbSpec) -> Path:
    return CACHE_DIR / f"{cache_stem(spec)}-{cache_key(spec)}.db"


# --------------------------------------------------------------------------------------
# Processes.


class Processes:
    """Every process the benchmark starts, so that all are stopped on the way out."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[TextIO] = []

    def start(
        self, cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        handle = log_path.open("w")
        self._logs.append(handle)
        proc = subprocess.Popen(
            list(cmd),
            cwd=REPO_ROOT,
            env=None if env is None else dict(env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        """SIGTERM, then SIGKILL after a deadline; returns the exit status."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                warn(f"process {proc.pid} ignored SIGTERM for {STOP_TIMEOUT_SECONDS:g}s: killing")
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc)
        for handle in self._logs:
            handle.close()
        self._logs.clear()


class Scraper(threading.Thread):
    """GET /metrics every second, as Prometheus would."""

    def __init__(self, url: str) -> None:
        super().__init__(name="metrics-scraper", daemon=True)
        self.url = url
        self.scrapes = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=2.0) as client:
            while True:
                with suppress(httpx.HTTPError):
                    if client.get(self.url).is_success:
                        self.scrapes += 1
                if self._stop_event.wait(1.0):
                    return

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.scrapes


# --------------------------------------------------------------------------------------
# The bench.


class Bench:
    def __init__(self, opts: Options, results: Path, work: Path, pin: bool) -> None:
        self.opts = opts
        self.results = results
        self.work = work
        self.pin = pin
        self.procs = Processes()
        self.python = sys.executable
        self.k6 = os.environ.get("K6_BIN") or str(REPO_ROOT / paths.VENV_DIR / "bin" / "k6")
        self.base_url = f"http://127.0.0.1:{opts.port}"
        self.databases: dict[str, dict[str, Any]] = {}
        self.db_files: dict[str, Path] = {}
        self.runs: list[dict[str, Any]] = []
        self._rr = _rr_series()
        # Every agent of the run reads this file; make_token() writes it.
        self.tokens_file = work / TOKENS_FILE_NAME
        self.token = ""
        # Part (g): its PostgreSQL server lives from its first round to the end.
        self.backends: BackendsPart | None = None

    def make_token(self) -> None:
        """The run's token, every scope and user, in a tokens file of its own."""
        self.token = TokensFile(self.tokens_file).add(TOKEN_NAME, tuple(Scope), (ALL_USERS,))

    def k6_env(self) -> dict[str, str]:
        """k6's environment: ours and the token (k6 reads its __ENV from it, and the
        environment of a process is not in `ps` as its arguments are)."""
        return {**os.environ, TOKEN_VARIABLE: self.token}

    # -- servers

    def server_env(self, server: str, db_path: Path, sink: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback HOME
            "LANG": "C.UTF-8",
            "NEUROS_HOST": "127.0.0.1",
            "NEUROS_PORT": str(self.opts.port),
        }
        if server.startswith("floor"):
            return env
        env["NEUROS_DB_PATH"] = str(db_path)
        env["NEUROS_API_TOKENS_FILE"] = str(self.tokens_file)
        if server == "agent-full":
            env |= {
                "NEUROS_METRICS_ENABLED": "true",
                "OTEL_SERVICE_NAME": "neuros-bench",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink,
                "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            }
        else:
            env |= {"NEUROS_METRICS_ENABLED": "false", "OTEL_SDK_DISABLED": "true"}
        return env

    def server_cmd(self, server: str) -> list[str]:
        if server == "agent-noauth":
            module = ["-m", "stacktools.bench.noauth"]
        elif server.startswith("agent"):
            module = ["-m", "neuros"]
        else:
            module = ["-m", "stacktools.bench.floor"]
        cmd = [self.python, *module, *(["--classic"] if server == "floor-classic" else [])]
        return ["taskset", "-c", "0", *cmd] if self.pin else cmd

    def start_sink(self, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
        cmd = [self.python, "-m", "stacktools.otlp_sink", "--port", "0", "--max-spans", "1000"]
        proc = self.procs.start(cmd, log_path)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            match = re.search(r"^otlp_sink: listening on (\S+)", log_path.read_text(), re.M)
            if match:
                return proc, match.group(1)
            if proc.poll() is not None:
                raise BenchError(f"the OTLP receiver exited:\n{log_tail(log_path)}")
            time.sleep(0.05)
        raise BenchError("the OTLP receiver did not start")

    def start_server(
        self, server: str, db_path: Path, log_path: Path, sink: str = ""
    ) -> subprocess.Popen[bytes]:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        proc = self.procs.start(
            self.server_cmd(server), log_path, self.server_env(server, db_path, sink)
        )
        try:
            wait_for_http(f"{self.base_url}/health", proc, log_path)
        except BenchError as exc:
            raise BenchError(f"{server} did not start: {exc}") from None
        if server.startswith("agent"):
            self.check_auth(server)
        return proc

    def check_auth(self, server: str) -> None:
        """Auth is on (a request without a token is a 401) in every agent but the
        no-auth one (where it is not): else (f) would compare a thing with itself."""
        status = httpx.get(f"{self.base_url}{AUTH_PROBE_PATH}", timeout=5.0).status_code
        refused = status == httpx.codes.UNAUTHORIZED
        if refused == (server == "agent-noauth"):
            raise BenchError(
                f"{server}: a request without a token answered {status}: auth is "
                + ("still on" if refused else "off")
            )

    # -- k6

    def k6_cmd(self, script: str, env: Mapping[str, str], summary: Path) -> list[str]:
        cmd = [self.k6, "run", "--quiet", "--no-usage-report", "--summary-export", str(summary)]
        for name, value in {"BASE_URL": self.base_url, **env}.items():
            cmd += ["-e", f"{name}={value}"]
        return [*cmd, str(K6_DIR / script)]

    def run_k6(self, label: str, cmd: Sequence[str], log_path: Path, summary: Path) -> K6Summary:
        return self.run_k6_together([K6Job(label, cmd, log_path, summary)])[0]

    def run_k6_together(self, jobs: Sequence[K6Job]) -> list[K6Summary]:
        """Run k6 processes at once (one per agent in (g)); each must pass its checks."""
        started = [(job, self.procs.start(job.cmd, job.log_path, self.k6_env())) for job in jobs]
        statuses = []
        for _, proc in started:
            statuses.append(proc.wait())
            self.procs.stop(proc)
        return [k6_numbers(job, status) for job, status in zip(jobs, statuses, strict=True)]

    # -- databases

    def build_databases(self) -> None:
        for spec in db_specs(self.opts):
            path = cache_path(spec)
            started = time.monotonic()
            if self.opts.use_cache and path.is_file():
                status, posted = "cached", None
            else:
                posted = self.build_database(spec, path)
                status = "built"
            size = db_file_bytes(path)
            self.db_files[spec.name] = path
            self.databases[spec.name] = {
                "bytes": size,
                "mb": size / MB,
                "cache": status,
                "cache_file": str(path.relative_to(REPO_ROOT)),
                "readings_posted": posted,
                "seconds": round(time.monotonic() - started, 1),
            }
            log(f"database {spec.name}: {size / MB:.1f} MB ({status}, {path.name})")
            if spec.fill_mb and size < spec.fill_mb * MB:
                warn(f"{spec.name} holds {size / MB:.1f} MB, under the {spec.fill_mb} MB asked")

    def build_database(self, spec: DbSpec, dest: Path) -> int:
        """Seed through the HTTP API (agent, telemetry off), stop it cleanly, cache."""
        log(
            f"building {spec.name} through the API"
            + (f" until it holds {spec.fill_mb} MB" if spec.fill_mb else "")
        )
        build_dir = self.work / f"build-{spec.name}"
        shutil.rmtree(build_dir, ignore_errors=True)
        db_path = build_dir / "neuros.db"
        log_path = self.results / f"build-{spec.name}-agent.log"
        posted = 0
        # Every cohort's newest SEED_DAYS worth first, so that each user has them.
        seed = [
            (cohort, user, range(start, min(start + MAX_BATCH, cohort.readings)))
            for cohort in spec.cohorts
            for user in range(cohort.users)
            for start in range(0, cohort.readings, MAX_BATCH)
        ]
        fill_batches = self._fill_batches(spec) if spec.fill_mb else iter(())
        target = spec.fill_mb * MB
        while True:
            agent = self.start_server("agent-off", db_path, log_path)
            try:
                posted += self._post_all(iter(seed), db_path, None)
                seed = []
                if spec.fill_mb:
                    posted += self._post_all(fill_batches, db_path, target)
            finally:
                status = self.procs.stop(agent)
            if status != 0:
                raise BenchError(f"the agent building {spec.name} exited {status}: see {log_path}")
            if not spec.fill_mb or db_file_bytes(db_path) >= target:
                break
        self._checkpoint(db_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        shutil.copyfile(db_path, partial)
        partial.replace(dest)
        shutil.rmtree(build_dir, ignore_errors=True)
        # Older builds of this database and size (another schema, say) go.
        stale = re.compile(
            rf"{re.escape(cache_stem(spec))}-[0-9a-f]{{16}}\.db(-wal|-shm|\.partial)?"
        )
        for path in CACHE_DIR.iterdir():
            if stale.fullmatch(path.name) and not path.name.startswith(dest.name):
                path.unlink()
        return posted

    def _fill_batches(self, spec: DbSpec) -> Iterator[tuple[Cohort, int, range]]:
        """Older history of the first cohort, pass after pass over its users: about two
        passes, so that the pass cut short when the file is full is at most half of a
        user's history."""
        cohort = spec.cohorts[0]
        per_user = math.ceil(spec.fill_mb * MB / EST_BYTES_PER_READING / cohort.users)
        size = max(1, min(MAX_BATCH, math.ceil(per_user / 2)))
        start = cohort.readings
        while True:
            for user in range(cohort.users):
                yield cohort, user, range(start, start + size)
            start += size

    def _post_all(
        self, batches: Iterator[tuple[Cohort, int, range]], db_path: Path, target: int | None
    ) -> int:
        """POST batches, two in flight; until exhausted or the file reaches target bytes."""
        posted = 0
        last_log = time.monotonic()
        limits = httpx.Limits(max_connections=2)
        with (
            httpx.Client(
                base_url=self.base_url, timeout=300.0, limits=limits, headers=bearer(self.token)
            ) as client,
            ThreadPoolExecutor(2) as pool,
        ):

            def post(cohort: Cohort, user: int, ks: range) -> int:
                body = batch_body(self._rr, cohort, user, ks)
                response = client.post(
                    f"/v1/users/{user_id(cohort.prefix, user)}/readings",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                if response.status_code != httpx.codes.CREATED:
                    # The body names fields, never the user (who is in the path only).
                    raise BenchError(
                        f"seeding answered {response.status_code}: {response.text[:300]}"
                    )
                return len(ks)

            pending: list[Future[int]] = []
            for cohort, user, ks in batches:
                pending.append(pool.submit(post, cohort, user, ks))
                if len(pending) < 2:
                    continue
                posted += pending.pop(0).result()
                if target is not None:
                    size = db_file_bytes(db_path)
                    if time.monotonic() - last_log > 10:
                        log(f"  {size / MB:.0f} of {target / MB:.0f} MB")
                        last_log = time.monotonic()
                    if size >= target:
                        break
            for future in pending:
                posted += future.result()
        return posted

    @staticmethod
    def _checkpoint(db_path: Path) -> None:
        """Fold a WAL left behind into the file (a clean agent stop leaves none)."""
        wal = db_path.with_name(db_path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            conn = sqlite3.connect(db_path)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
        for suffix in ("-wal", "-shm"):
            with suppress(FileNotFoundError):
                db_path.with_name(db_path.name + suffix).unlink()

    # -- one measured configuration

    def check_in_past(self, spec: RunSpec, offset: int, duration: str) -> None:
        """Fail before the run if user_mix.js could send readings from the future (the
        agent refuses them), counting on at most the arrival rate, or on 2,000 req/s
        in a closed loop, several times what the agent serves."""
        if spec.cohort is None:
            return
        rate = int(spec.k6_env.get("RATE", CLOSED_LOOP_MAX_RPS))
        last_request = offset + math.ceil(rate * seconds(duration)) + spec.max_vus
        newest = spec.cohort.base + (last_request // (2 * spec.cohort.users) + 1) * spec.cohort.step
        if newest > datetime.now(UTC) - DAY:
            raise BenchError(
                f"[{spec.config}] readings could reach {newest:%Y-%m-%d}, not in the past: "
                "use a shorter --duration"
            )

    def server_log_errors(self, log_path: Path) -> int:
        """Lines of the server's log at ERROR level or in a traceback."""
        text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        return len(re.findall(r"^(?:.* ERROR |Traceback )", text, re.M))

    def run_one(self, spec: RunSpec, round_number: int) -> None:
        run = f"{spec.config}-r{round_number}"
        label = f"{spec.config} r{round_number}"
        run_dir = self.work / run
        run_dir.mkdir(parents=True)
        db_path = run_dir / "neuros.db"
        if spec.db is not None:
            shutil.copyfile(self.db_files[spec.db], db_path)
        full = spec.server == "agent-full"
        sink_proc, sink = (None, "")
        scraper: Scraper | None = None
        try:
            if full:
                sink_proc, sink = self.start_sink(self.results / f"{run}-otlp-sink.log")
            server_log = self.results / f"{run}-server.log"
            server = self.start_server(spec.server, db_path, server_log, sink)
            if full:
                scraper = Scraper(f"{self.base_url}/metrics")
                scraper.start()
            self.check_in_past(spec, 0, self.opts.warmup)
            warm_env = {**spec.warmup_env, "DURATION": self.opts.warmup, "SEQ_OFFSET": "0"}
            warm_summary = run_dir / "warmup-summary.json"
            warm = self.run_k6(
                f"{label} warm-up",
                self.k6_cmd(spec.script, warm_env, warm_summary),
                self.results / f"{run}-warmup-k6.log",
                warm_summary,
            )
            offset = spec.measure_offset
            if offset is None:
                # Past every request the warm-up could have started.
                offset = warm.iterations + warm.dropped_iterations + spec.max_vus + 1
            self.check_in_past(spec, offset, spec.duration)
            env = {**spec.k6_env, "DURATION": spec.duration, "SEQ_OFFSET": str(offset)}
            summary_path = self.results / f"{run}-summary.json"
            cpu_before = cpu_seconds(server.pid)
            numbers = self.run_k6(
                label,
                self.k6_cmd(spec.script, env, summary_path),
                self.results / f"{run}-k6.log",
                summary_path,
            )
            cpu_after = cpu_seconds(server.pid)
            scrapes = scraper.stop() if scraper else None
            scraper = None
            exit_status = self.procs.stop(server)
            if exit_status != 0 and spec.server.startswith("agent"):
                warn(f"[{label}] the agent exited {exit_status} when stopped: see {server_log}")
            log_errors = self.server_log_errors(server_log)
            if log_errors:
                warn(f"[{label}] {log_errors} error line(s) in {server_log}")
            spans = None
            if sink_proc is not None:
                # The agent flushed its spans on shutdown: count them now.
                with suppress(httpx.HTTPError, ValueError):
                    spans = httpx.get(f"{sink}/stats", timeout=2.0).json().get("spans")
        finally:
            if scraper is not None:
                scraper.stop()
            if sink_proc is not None:
                self.procs.stop(sink_proc)
            shutil.rmtree(run_dir, ignore_errors=True)
        cpu_us = (cpu_after - cpu_before) * 1e6 / max(numbers.requests, 1)
        metrics: dict[str, float] = {
            "rps": numbers.rps,
            "requests": numbers.requests,
            "iterations": numbers.iterations,
            "dropped_iterations": numbers.dropped_iterations,
            "med_ms": numbers.med_ms,
            "p95_ms": numbers.p95_ms,
            "p99_ms": numbers.p99_ms,
            "max_ms": numbers.max_ms,
            "cpu_us_per_request": cpu_us,
        }
        if spec.part == "d":
            # One ingest plus one KPI read is two requests.
            metrics["pair_cost_us"] = 2e6 / numbers.rps if numbers.rps else math.nan
        for op, values in numbers.by_op.items():
            metrics |= {f"{op}_{name}": value for name, value in values.items()}
        self.runs.append(
            {
                "config": spec.config,
                "part": spec.part,
                "round": round_number,
                "server": spec.server,
                "db": spec.db,
                "measure_seq_offset": offset,
                "metrics": metrics,
                "metrics_scrapes": scrapes,
                "spans_received": spans,
                "checks_passed": numbers.checks_passed,
                "server_exit_status": exit_status,
                "server_log_errors": log_errors,
            }
        )
        extra = f", {numbers.dropped_iterations} dropped" if numbers.dropped_iterations else ""
        log(
            f"[{label}] {numbers.rps:.1f} req/s, p95 {numbers.p95_ms:.1f} ms, "
            f"p99 {numbers.p99_ms:.1f} ms, CPU {cpu_us:.0f} us/req{extra}"
            + (f", {scrapes} scrapes, {spans} spans received" if full else "")
        )

    def run(self) -> None:
        specs = run_specs(self.opts)
        for round_number in range(1, self.opts.rounds + 1):
            log(f"round {round_number} of {self.opts.rounds}")
            for spec in round_order(specs, round_number):
                self.run_one(spec, round_number)
            if "g" in self.opts.parts:
                self.part_g().run_round(round_number)

    def part_g(self) -> BackendsPart:
        if self.backends is None:
            from stacktools.bench.backends import BackendsPart

            self.backends = BackendsPart(self)
        return self.backends

    def stop_all(self) -> None:
        """Every process started, and part (g)'s PostgreSQL server."""
        self.procs.stop_all()
        if self.backends is not None:
            self.backends.close()


# --------------------------------------------------------------------------------------
# Output.


def write_chart(
    path: Path, medians: Mapping[str, Mapping[str, float]], results: Mapping[str, Any]
) -> bool:
    """report.png: one panel per part measured. False when matplotlib is missing."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        return False
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    def g(config: str, name: str) -> float:
        value = median_value(medians, config, name)
        return math.nan if value is None else value

    def bars(ax: Any, labels: list[str], values: list[float], title: str, unit: str) -> None:
        ax.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(labels)])
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        for x, value in enumerate(values):
            if not math.isnan(value):
                ax.annotate(f"{value:.0f}", (x, value), ha="center", va="bottom", fontsize=8)

    def grouped(ax: Any, configs: list[str], labels: list[str], title: str) -> None:
        width = 0.38
        for i, (name, label) in enumerate((("p95_ms", "p95"), ("p99_ms", "p99"))):
            values = [g(config, name) for config in configs]
            xs = [x + (i - 0.5) * width for x in range(len(configs))]
            ax.bar(xs, values, width, label=label)
        ax.set_xticks(range(len(configs)), labels)
        ax.set_ylabel("ms")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)

    def verdict_of(part: str, value: float | None) -> str:
        return f"{fmt(value)} {results[part]['target']} {verdict(results[part]['met'])}"

    panels = [part for part in PARTS if part in results]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    for ax, part in zip(flat, panels, strict=False):
        r = results[part]
        if part == "a":
            bars(
                ax,
                ["agent off", "floor", "classic"],
                [g("agent-off", "rps"), g("floor", "rps"), g("floor-classic", "rps")],
                f"(a) agent/floor {verdict_of('a', r['ratio'])}",
                "req/s",
            )
        elif part == "b":
            bars(
                ax,
                ["full", "off"],
                [g("agent-full", "rps"), g("agent-off", "rps")],
                f"(b) full/off {verdict_of('b', r['ratio'])}",
                "req/s",
            )
        elif part == "c":
            grouped(
                ax,
                ["c-prefilled", "c-empty"],
                ["prefilled", "empty"],
                f"(c) p95 {fmt(r['p95_ratio'], '.2f')} p99 {fmt(r['p99_ratio'], '.2f')}"
                f" {r['target']} {verdict(r['met'])}",
            )
        elif part == "d":
            grouped(
                ax,
                ["d-heavy", "d-light"],
                ["288/day", "1/day"],
                f"(d) cost heavy/light {verdict_of('d', r['cost_ratio'])}",
            )
        elif part == "f":
            bars(
                ax,
                ["auth on", "auth off"],
                [g("f-auth", "rps"), g("f-noauth", "rps")],
                f"(f) auth/no-auth {verdict_of('f', r['ratio'])}",
                "req/s",
            )
        elif part == "g":
            bars(
                ax,
                ["SQLite", "PG", "PG x2", "SQLite 1/tx"],
                [g(c, "rps") for c in ("g-sqlite", "g-pg", "g-pg-2r", "g-sqlite-nogroup")],
                f"(g) PG/SQLite {fmt(r['ratio_pg_sqlite'], '.2f')}, "
                f"2 agents/1 {fmt(r['ratio_two_agents_one'], '.2f')}",
                "ingests/s",
            )
        else:
            points = [(p["rate"], p["p99_ms"]) for p in r["rates"] if p["p99_ms"] is not None]
            ax.plot([x for x, _ in points], [y for _, y in points], marker="o", label="p99")
            ax.axhline(P99_LIMIT_MS, color="red", linestyle="--", label=f"{P99_LIMIT_MS:g} ms")
            ax.set_yscale("log")
            ax.set_xlabel("arrival rate, req/s")
            ax.set_ylabel("p99 ms")
            ax.set_xticks(list(E_RATES))
            ax.legend(fontsize=8)
            ax.set_title(f"(e) {E_TARGET_RATE} req/s {verdict(r['met'])}", fontsize=10)
    fig.suptitle("NEUROS ingest-engine benchmark (medians)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _jsonable(value: Any) -> Any:
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------
# Command line.

_HELP_EPILOG = """\
environment (defaults of the options above):
  BENCH_ROUNDS (2), BENCH_DURATION (15s), BENCH_RATE_DURATION (20s), BENCH_WARMUP (3s),
  BENCH_VUS (16), BENCH_PORT (8000), BENCH_PREFILL_MB (500), BENCH_LATENCY_RATE (200),
  BENCH_PROFILE_USERS (8); K6_BIN, the k6 binary (default .venv/bin/k6)

With 2 or more CPUs the agent (and the floor) run on CPU 0, everything else (k6,
the OTLP receiver, the scraper, this driver) on CPU 1; part (g) pins nothing. Part (g)
needs PostgreSQL's server (apt-get install postgresql: /usr/lib/postgresql/<major>/bin).
The chart needs matplotlib: .venv/bin/uv sync --frozen --inexact --extra bench.
"""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    try:
        return default if raw is None or raw == "" else int(raw)
    except ValueError:
        raise SystemExit(f"{PROG}: {name} must be an integer, got {raw!r}") from None


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(__doc__ or "").split("\n\n", 1)[1].split("\n\nMissing", 1)[0],
        epilog=_HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 2)")
    parser.add_argument("--duration", help="measured time of closed-loop runs, a-b-d-f-g (15s)")
    parser.add_argument("--rate-duration", help="measured time of arrival-rate runs, c-e (20s)")
    parser.add_argument("--warmup", help="warm-up before each measured run (3s)")
    parser.add_argument("--vus", type=int, help="closed-loop virtual users (16)")
    parser.add_argument("--port", type=int, help="server port on 127.0.0.1 (8000)")
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(PARTS)} (default: all)"
    )
    parser.add_argument("--prefill-mb", type=int, help="size of (c)'s prefilled database (500)")
    parser.add_argument("--latency-rate", type=int, help="(c)'s arrival rate, req/s (200)")
    parser.add_argument("--profile-users", type=int, help="(d)'s users per profile, K (8)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test, ~3 minutes: 1 round, 4s/6s runs, 2s warm-up, 50 MB prefill, K=4",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="rebuild the seeded databases, ignore the cache"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, start nothing")
    args = parser.parse_args(argv)

    def pick(flag: Any, env: str, default: Any, quick: Any = None) -> Any:
        """The flag if given, else --quick's value if it has one, else $env, else default."""
        if flag is not None:
            return flag
        if args.quick and quick is not None:
            return quick
        if isinstance(default, int):
            return _env_int(env, default)
        return os.environ.get(env) or default

    parts = tuple(PARTS)
    if args.only:
        wanted = [p.strip().lower() for p in args.only.split(",") if p.strip()]
        unknown = sorted(set(wanted) - set(PARTS))
        if unknown or not wanted:
            parser.error(f"--only takes a comma-separated subset of {','.join(PARTS)}")
        parts = tuple(p for p in PARTS if p in wanted)
    opts = Options(
        rounds=pick(args.rounds, "BENCH_ROUNDS", 2, quick=1),
        duration=pick(args.duration, "BENCH_DURATION", "15s", quick="4s"),
        rate_duration=pick(args.rate_duration, "BENCH_RATE_DURATION", "20s", quick="6s"),
        warmup=pick(args.warmup, "BENCH_WARMUP", "3s", quick="2s"),
        vus=pick(args.vus, "BENCH_VUS", 16),
        port=pick(args.port, "BENCH_PORT", 8000),
        parts=parts,
        prefill_mb=pick(args.prefill_mb, "BENCH_PREFILL_MB", 500, quick=50),
        latency_rate=pick(args.latency_rate, "BENCH_LATENCY_RATE", 200),
        profile_users=pick(args.profile_users, "BENCH_PROFILE_USERS", 8, quick=4),
        quick=args.quick,
        use_cache=not args.no_cache,
        dry_run=args.dry_run,
    )
    for name in ("duration", "rate_duration", "warmup"):
        if not K6_DURATION.match(getattr(opts, name)):
            parser.error(f"--{name.replace('_', '-')} must look like 20s or 1m30s")
    for name in ("rounds", "vus", "prefill_mb", "latency_rate", "profile_users"):
        if getattr(opts, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 1 <= opts.port <= 65535:
        parser.error("--port must be 1-65535")
    if "g" in opts.parts and opts.port == 65535:
        parser.error("--port must be 1-65534 with part (g): its second agent uses port + 1")
    return opts


def _span(step: timedelta) -> str:
    minutes = step / timedelta(minutes=1)
    return f"{minutes / 1440:g} day" if minutes >= 1440 else f"{minutes:g} min"


def print_plan(opts: Options, bench: Bench) -> None:
    """--dry-run: what would be built and run, with the commands."""
    specs = run_specs(opts)
    results = Path("k6/results/bench-<UTC time>")
    print(
        f"parts: {','.join(opts.parts)}; {opts.rounds} interleaved round(s), even rounds"
        " reversed; medians reported"
    )
    print(f"results: {results}/report.json, report.txt, report.png")
    print(
        f"API token: a new one in {bench.tokens_file} (NEUROS_API_TOKENS_FILE of every agent),"
        f" sent by k6 (from its environment, {TOKEN_VARIABLE}) and by the seeding client"
    )
    print(
        f"CPU pinning: {'agent/floor on CPU 0, the rest on CPU 1' if bench.pin else 'none'}"
        f" (nproc: {os.cpu_count()})"
    )
    for db_spec in db_specs(opts):
        path = cache_path(db_spec)
        state = "cached" if opts.use_cache and path.is_file() else "would build"
        what = ", ".join(
            f"{c.users} users x {c.readings} readings {_span(c.step)} apart"
            for c in db_spec.cohorts
        )
        fill = f", then older history until {db_spec.fill_mb} MB" if db_spec.fill_mb else ""
        print(f"database {db_spec.name}: {what}{fill}: {state} {path.relative_to(REPO_ROOT)}")
    db = bench.work / "RUN" / "neuros.db"
    for spec in specs:
        print(
            f"\n# ({','.join(spec.part)}) {spec.config}: {spec.server}"
            + (
                f" on a copy of {spec.db}"
                if spec.db
                else ""
                if spec.server.startswith("floor")
                else " on an empty database"
            )
        )
        sink = "http://127.0.0.1:SINK_PORT"
        if spec.server == "agent-full":
            print(
                "would run: "
                + shlex.join(
                    [
                        bench.python,
                        "-m",
                        "stacktools.otlp_sink",
                        "--port",
                        "0",
                        "--max-spans",
                        "1000",
                    ]
                )
            )
        env = bench.server_env(spec.server, db, sink) | {"PATH": "$PATH", "HOME": "$HOME"}
        print(
            "would run: env -i "
            + shlex.join([f"{k}={v}" for k, v in env.items()] + bench.server_cmd(spec.server))
        )
        if spec.server == "agent-full":
            print(f"then, every second: GET {bench.base_url}/metrics")
        if spec.server.startswith("agent"):
            auth = "off" if spec.server == "agent-noauth" else "on"
            print(f"then: GET {bench.base_url}{AUTH_PROBE_PATH} without a token (auth {auth})")
        warm = {**spec.warmup_env, "DURATION": opts.warmup, "SEQ_OFFSET": "0"}
        print("would run: " + shlex.join(bench.k6_cmd(spec.script, warm, Path("warmup.json"))))
        offset = "AFTER_WARMUP" if spec.measure_offset is None else str(spec.measure_offset)
        env_k6 = {**spec.k6_env, "DURATION": spec.duration, "SEQ_OFFSET": offset}
        summary = results / f"{spec.config}-rN-summary.json"
        print("would run: " + shlex.join(bench.k6_cmd(spec.script, env_k6, summary)))
    if "g" in opts.parts:
        print("\n".join(bench.part_g().plan_lines()))
    minutes = estimate_seconds(opts, specs) / 60
    print(f"\nabout {minutes:.0f} min of runs, plus building the databases not cached")
    print(
        "targets: "
        + "; ".join(
            [f"({p}) {TARGETS[p]}" for p in ("a", "b", "c", "d")]
            + [f"(e) {E_TARGET_RATE} req/s holds p99 < {P99_LIMIT_MS:g} ms"]
            + [f"(f) {TARGETS['f']}"]
            + (["(g) none: figures for docs/scaling.md"] if "g" in opts.parts else [])
        )
    )
    print("dry run: nothing was started")


def check_prerequisites(bench: Bench) -> None:
    if not Path(bench.k6).is_file():
        raise BenchError(f"{bench.k6} not found: run scripts/test.sh (it installs the test extra)")
    if "g" in bench.opts.parts:
        from stacktools.bench import backends as bench_backends

        bench_backends.check_prerequisites(bench.opts.port + 1)
    with suppress(httpx.HTTPError):
        httpx.get(f"{bench.base_url}/health", timeout=1.0)
        raise BenchError(f"something already answers on {bench.base_url}: stop it or use --port")


def _can_pin() -> bool:
    """Two CPUs or more, and taskset to start the server on CPU 0."""
    return (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = RESULTS_ROOT / f"bench-{stamp}"
    pin = _can_pin()
    if opts.dry_run:
        # Display only: nothing is created there.
        plan_work = Path(tempfile.gettempdir()) / "neuros-bench.XXXX"
        print_plan(opts, Bench(opts, results, plan_work, pin))
        return 0
    has_matplotlib = importlib.util.find_spec("matplotlib") is not None
    if not has_matplotlib:
        warn(f"matplotlib is missing, so no report.png: {INSTALL_BENCH_EXTRA}")
    started = datetime.now(UTC)
    with _terminate_as_exit(), tempfile.TemporaryDirectory(prefix="neuros-bench.") as work:
        bench = Bench(opts, results, Path(work), pin)
        try:
            check_prerequisites(bench)
            bench.make_token()
            results.mkdir(parents=True)
            if pin:
                os.sched_setaffinity(0, {1})
                log(f"{os.cpu_count()} CPUs: agent and floor on CPU 0; k6, receiver, scraper on 1")
            else:
                log("fewer than 2 CPUs or no taskset: not pinning")
            specs = run_specs(opts)
            g_configs = 0
            if "g" in opts.parts:
                from stacktools.bench.backends import CONFIGS

                g_configs = len(CONFIGS)
            log(
                f"parts {','.join(opts.parts)}: {len(specs) + g_configs} configurations x "
                f"{opts.rounds} "
                f"round(s), about {estimate_seconds(opts, specs) / 60:.0f} min plus database "
                f"builds; results in {results.relative_to(REPO_ROOT)}"
            )
            bench.build_databases()
            bench.run()
        except BenchError as exc:
            print(f"{PROG}: ERROR: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return 130
        finally:
            bench.stop_all()

    medians = medians_of(bench.runs)
    evaluated = evaluate(medians, opts.parts, bench.runs)
    facts = {
        "rounds": opts.rounds,
        "vus": opts.vus,
        "latency_rate": opts.latency_rate,
        "prefilled_mb": bench.databases.get("c-prefilled", {}).get("mb"),
        "nproc": os.cpu_count(),
        "pg_version": bench.backends.pg_version if bench.backends else None,
    }
    text = format_report(medians, evaluated, facts)
    print("\n" + text)
    (results / "report.txt").write_text(text + "\n")
    report = {
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "host": {"nproc": os.cpu_count(), "pinned": pin},
        "options": asdict(opts),
        "targets": {
            **{part: str(target) for part, target in TARGETS.items()},
            "e": f"{E_TARGET_RATE} req/s: p99 < {P99_LIMIT_MS:g} ms, "
            f"< {MAX_DROPPED_FRACTION:.0%} dropped",
        },
        "databases": bench.databases,
        "runs": bench.runs,
        "medians": medians,
        "results": evaluated,
    }
    (results / "report.json").write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    chart = results / "report.png"
    if write_chart(chart, medians, evaluated):
        log(f"chart: {chart.relative_to(REPO_ROOT)}")
    else:
        warn(f"no chart: matplotlib is missing; {INSTALL_BENCH_EXTRA}")
    log(f"report: {(results / 'report.json').relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
