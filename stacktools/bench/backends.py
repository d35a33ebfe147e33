"""Part (g) of the ingest-engine benchmark: the storage backends, side by side.

``stacktools/bench/agent.py`` runs this part with the others (``--only g``), in the same
interleaved rounds. Real agents under uvicorn, each configuration on a fresh store;
PostgreSQL is a server this part starts itself (``initdb`` in a temporary folder, a
free port, ``fsync=on``, Debian's ``/usr/lib/postgresql/<major>/bin``). Closed loop,
k6/bench/ingest.js, telemetry off, nothing pinned: the agents, PostgreSQL and k6 share
every CPU, as on a host that runs them all.

- one agent on SQLite against one agent on PostgreSQL, same VUs: ingests/s, the
  agent's CPU per request and the PostgreSQL server's (every postgres process, from
  /proc), ratio PostgreSQL/SQLite;
- two agents (two ports, one k6 each, the VUs split) on one PostgreSQL database:
  their total against one agent's;
- group commit: SQLite's writer with groups against one COMMIT per batch
  (NEUROS_GROUP_COMMIT_MAX_BATCHES=1), and WAL syncs per ingest at 1 VU against N VUs
  on both backends (SQLite: its groups, one WAL fsync each under synchronous=FULL;
  PostgreSQL: ``pg_stat_wal.wal_sync``, and per commit of ``pg_stat_database``);
- bytes on disk per reading (SQLite: the file after a clean stop, WAL folded in;
  PostgreSQL: ``pg_database_size``), and from all of it a capacity table for N users
  at one reading every 5 minutes.

Each configuration starts its agents twice: a warm-up, a clean stop, then the measured
run and a clean stop. PostgreSQL backends report their counters when they exit, so the
counters read after a stop hold everything the run did. Readings acknowledged (201s)
must equal the readings the database gained, else the run fails.

Run as ``python -m stacktools.bench.backends`` this module is the agent the part starts:
``neuros.__main__.main`` unchanged, plus one line on stderr when the SQLite writer
closes, its count of group commits (the WAL fsyncs of its COMMITs).
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import psycopg

from stacktools.bench.common import (
    AUTH_PROBE_PATH,
    INGEST_MEASURE_OFFSET,
    BenchError,
    K6Job,
    K6Summary,
    cpu_seconds,
    db_file_bytes,
    fmt,
    log,
    median_value,
    paired_ratio,
    ratio,
    seconds,
    wait_for_http,
)

if TYPE_CHECKING:
    from stacktools.bench.agent import Bench

Backend = Literal["sqlite", "postgresql"]

PG_USER = "neuros"
PG_TIMEOUT_SECONDS = 120
# How long the backends of a stopped agent may take to exit.
DISCONNECT_TIMEOUT_SECONDS = 30.0
# The launcher's line: "<tag> <groups committed>".
GROUPS_TAG = "bench_backends: group commits"
_GROUPS_LINE = re.compile(rf"^{re.escape(GROUPS_TAG)} (\d+)$", re.M)
# SEQ_OFFSET of replica i's k6 (ingest.js numbers its requests from there, each one a
# new reading): warm-up i * WARMUP_STRIDE, measured INGEST_MEASURE_OFFSET + i * stride.
WARMUP_STRIDE = 5_000_000
MEASURE_STRIDE = 10_000_000
# Starting, stopping (twice) and creating the store: measured 8-10 s a configuration.
OVERHEAD_SECONDS = 9.0

# The capacity table: one reading every 5 minutes, CPU at most half used.
READING_INTERVAL_SECONDS = 300
READINGS_PER_DAY = 86_400 // READING_INTERVAL_SECONDS
HEADROOM = 0.5
CAPACITY_USERS = (1_000, 10_000, 100_000, 1_000_000)
GB = 1e9


@dataclass(frozen=True, slots=True)
class Config:
    """One configuration of part (g)."""

    name: str
    label: str
    backend: Backend
    replicas: int = 1
    one_vu: bool = False
    env: tuple[tuple[str, str], ...] = ()

    def vus(self, total: int) -> list[int]:
        """VUs of each replica's k6: the total (1 with ``one_vu``) split evenly."""
        total = 1 if self.one_vu else total
        return [
            max(1, total // self.replicas + (i < total % self.replicas))
            for i in range(self.replicas)
        ]


CONFIGS: tuple[Config, ...] = (
    Config("g-sqlite", "SQLite, 1 agent", "sqlite"),
    Config("g-pg", "PostgreSQL, 1 agent", "postgresql"),
    Config("g-pg-2r", "PostgreSQL, 2 agents", "postgresql", replicas=2),
    Config(
        "g-sqlite-nogroup",
        "SQLite, no group commit",
        "sqlite",
        env=(("NEUROS_GROUP_COMMIT_MAX_BATCHES", "1"),),
    ),
    Config("g-sqlite-c1", "SQLite, 1 VU", "sqlite", one_vu=True),
    Config("g-pg-c1", "PostgreSQL, 1 VU", "postgresql", one_vu=True),
)


def round_configs(round_number: int) -> list[Config]:
    """Round 1 in order, even rounds reversed (as the other parts)."""
    return list(CONFIGS) if round_number % 2 == 1 else list(reversed(CONFIGS))


def estimate_seconds(warmup: str, duration: str, rounds: int) -> float:
    one = OVERHEAD_SECONDS + seconds(warmup) + seconds(duration)
    return one * len(CONFIGS) * rounds


# --------------------------------------------------------------------------------------
# Report maths: pure, unit-tested in tests/tools/test_bench.py.


def capacity_row(
    users: int,
    pg: Mapping[str, float | None],
    sqlite: Mapping[str, float | None],
) -> dict[str, Any]:
    """N users at one reading every 5 minutes: the ingest rate; the PostgreSQL agents
    it takes at HEADROOM of one agent's measured ingests/s; the cores of agents and of
    the PostgreSQL server at the CPU per request measured; a year of readings on each
    backend; whether one SQLite agent (it cannot have a second) is enough.
    ``pg`` and ``sqlite``: the medians of g-pg and g-sqlite."""
    rate = users / READING_INTERVAL_SECONDS
    pg_rps, sqlite_rps = pg.get("rps"), sqlite.get("rps")
    agent_us, server_us = pg.get("agent_cpu_us_per_request"), pg.get("db_cpu_us_per_request")
    pg_bytes, sqlite_bytes = pg.get("bytes_per_reading"), sqlite.get("bytes_per_reading")
    per_year = users * READINGS_PER_DAY * 365
    return {
        "users": users,
        "ingests_per_s": rate,
        "pg_replicas": math.ceil(rate / (pg_rps * HEADROOM)) if pg_rps else None,
        "agent_cores": None if agent_us is None else rate * agent_us / 1e6,
        "pg_server_cores": None if server_us is None else rate * server_us / 1e6,
        "pg_gb_per_year": None if pg_bytes is None else per_year * pg_bytes / GB,
        "sqlite_fits": None if not sqlite_rps else rate <= sqlite_rps * HEADROOM,
        "sqlite_gb_per_year": None if sqlite_bytes is None else per_year * sqlite_bytes / GB,
    }


def evaluate(
    medians: Mapping[str, Mapping[str, float]], runs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Part (g)'s ratios (paired by round, as (f): drift between rounds cancels) and
    its capacity table."""

    def g(config: str, name: str) -> float | None:
        return median_value(medians, config, name)

    def paired(numerator: str, denominator: str, name: str = "rps") -> float | None:
        value = paired_ratio(runs, numerator, denominator, name)
        return value if value is not None else ratio(g(numerator, name), g(denominator, name))

    def measured(config: str) -> dict[str, float | None]:
        return {name: g(config, name) for name in medians.get(config, {})}  # NaN: None

    pg_cpu = g("g-pg", "db_cpu_us_per_request")
    pg_total_cpu = None if pg_cpu is None else (g("g-pg", "agent_cpu_us_per_request") or 0) + pg_cpu
    pg_rps, sqlite_rps = g("g-pg", "rps"), g("g-sqlite", "rps")
    pg_bytes, sqlite_bytes = g("g-pg", "bytes_per_reading"), g("g-sqlite", "bytes_per_reading")
    return {
        "rps_sqlite": sqlite_rps,
        "rps_pg": pg_rps,
        "rps_pg_two_agents": g("g-pg-2r", "rps"),
        "ratio_pg_sqlite": paired("g-pg", "g-sqlite"),
        "ratio_two_agents_one": paired("g-pg-2r", "g-pg"),
        "ratio_group_commit": paired("g-sqlite", "g-sqlite-nogroup"),
        "agent_cpu_us_sqlite": g("g-sqlite", "agent_cpu_us_per_request"),
        "agent_cpu_us_pg": g("g-pg", "agent_cpu_us_per_request"),
        "pg_server_cpu_us": pg_cpu,
        "ratio_cpu_pg_sqlite": ratio(pg_total_cpu, g("g-sqlite", "agent_cpu_us_per_request")),
        "wal_syncs_per_ingest": {
            backend: {
                "one_vu": g(f"{prefix}-c1", "wal_syncs_per_ingest"),
                "n_vus": g(prefix, "wal_syncs_per_ingest"),
            }
            for backend, prefix in (("sqlite", "g-sqlite"), ("postgresql", "g-pg"))
        },
        "pg_wal_syncs_per_commit": {
            "one_vu": g("g-pg-c1", "wal_syncs_per_commit"),
            "n_vus": g("g-pg", "wal_syncs_per_commit"),
        },
        "bytes_per_reading": {"sqlite": sqlite_bytes, "postgresql": pg_bytes},
        "capacity": [
            capacity_row(users, measured("g-pg"), measured("g-sqlite")) for users in CAPACITY_USERS
        ],
    }


def _count(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _cell(value: float | None, spec: str, width: int) -> str:
    return f"{fmt(value, spec):>{width}}"


# The table's columns: heading, metric, format, width.
_COLUMNS = (
    ("ingests/s", "rps", ".1f", 10),
    ("p95 ms", "p95_ms", ".1f", 8),
    ("agent us/req", "agent_cpu_us_per_request", ".0f", 14),
    ("PG us/req", "db_cpu_us_per_request", ".0f", 11),
    ("WAL syncs/ingest", "wal_syncs_per_ingest", ".3f", 18),
    ("bytes/reading", "bytes_per_reading", ".0f", 15),
)


def report_lines(
    medians: Mapping[str, Mapping[str, float]], result: Mapping[str, Any], facts: Mapping[str, Any]
) -> list[str]:
    """Part (g) in the human report: one row a configuration, the ratios, capacity."""

    def g(config: str, name: str) -> float | None:
        return median_value(medians, config, name)

    lines = [
        f"(g) storage backends: SQLite vs PostgreSQL {facts.get('pg_version') or '?'} (fsync=on),"
        f" closed loop, {facts['vus']} VUs, telemetry off",
        f"    nothing pinned: agents, PostgreSQL and k6 share {facts.get('nproc', '?')} CPUs, so"
        " a second agent adds no CPU: it shows correctness and cost, not scaling",
        f"    {'configuration':<26}" + "".join(f"{h:>{w}}" for h, _, _, w in _COLUMNS),
    ]
    for config in CONFIGS:
        lines.append(
            f"    {config.label:<26}"
            + "".join(_cell(g(config.name, m), spec, w) for _, m, spec, w in _COLUMNS)
        )
    syncs = result["wal_syncs_per_ingest"]
    per_commit = result["pg_wal_syncs_per_commit"]
    two = f"{_count(g('g-pg-2r', 'requests_r1'))} + {_count(g('g-pg-2r', 'requests_r2'))}"
    lines += [
        f"    ratio PostgreSQL/SQLite ingests/s, 1 agent: {fmt(result['ratio_pg_sqlite'])}"
        f"   CPU/request (agent + PG server)/SQLite agent: {fmt(result['ratio_cpu_pg_sqlite'])}",
        f"    ratio 2 agents/1 agent on PostgreSQL: {fmt(result['ratio_two_agents_one'])}",
        f"    ratio SQLite group commit/one COMMIT per batch: {fmt(result['ratio_group_commit'])}",
        f"    WAL syncs per ingest, 1 VU -> {facts['vus']} VUs: SQLite "
        f"{fmt(syncs['sqlite']['one_vu'])} -> {fmt(syncs['sqlite']['n_vus'])}, PostgreSQL "
        f"{fmt(syncs['postgresql']['one_vu'])} -> {fmt(syncs['postgresql']['n_vus'])}"
        f" (per commit {fmt(per_commit['one_vu'])} -> {fmt(per_commit['n_vus'])})",
        "    checked in every run: readings acknowledged = readings the database gained;"
        f" 2 agents: {two} acknowledged",
        f"    capacity at one reading per user every {READING_INTERVAL_SECONDS // 60} min; agents"
        f" at {HEADROOM:.0%} of the PostgreSQL agent's ingests/s above; cores from us/req:",
        f"    {'users':>10}{'ingests/s':>11}{'PG agents':>11}{'agent cores':>13}{'PG cores':>10}"
        f"{'PG GB/year':>12}{'SQLite GB/year':>16}  one SQLite agent",
    ]
    for row in result["capacity"]:
        fits = row["sqlite_fits"]
        agents = "n/a" if row["pg_replicas"] is None else str(row["pg_replicas"])
        lines.append(
            f"    {row['users']:>10,}{row['ingests_per_s']:>11.1f}{agents:>11}"
            f"{_cell(row['agent_cores'], '.2f', 13)}{_cell(row['pg_server_cores'], '.2f', 10)}"
            f"{_cell(row['pg_gb_per_year'], ',.0f', 12)}"
            f"{_cell(row['sqlite_gb_per_year'], ',.0f', 16)}"
            f"  {'n/a' if fits is None else 'enough' if fits else 'not enough'}"
        )
    mb_a_day = {
        backend: None if b is None else b * READINGS_PER_DAY / 1e6
        for backend, b in result["bytes_per_reading"].items()
    }
    lines += [
        f"    per user: {READINGS_PER_DAY} readings/day (300 RR intervals each) = "
        f"{fmt(mb_a_day['postgresql'], '.2f')} MB/day on PostgreSQL, "
        f"{fmt(mb_a_day['sqlite'], '.2f')} MB/day on SQLite",
        "",
    ]
    return lines


# --------------------------------------------------------------------------------------
# PostgreSQL: a throwaway server.


def find_bindir() -> Path | None:
    """The newest installed server's bin dir (Debian's layout), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_major)
    return found[-1].parent if found else None


def _major(initdb: Path) -> int:
    try:
        return int(initdb.parent.parent.name)
    except ValueError:
        return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()


def tree_cpu_seconds(root: int) -> float:
    """CPU time of ``root``, of its children that exited (reaped: cutime + cstime) and of
    those alive: a PostgreSQL server's, backends included."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = _stat(root)
    total = sum(int(f) for f in fields[11:15]) / ticks
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == str(root):
            continue
        with suppress(OSError, IndexError):  # gone meanwhile: counted in cutime
            child = _stat(int(entry.name))
            if int(child[1]) == root:
                total += (int(child[11]) + int(child[12])) / ticks
    return total


@dataclass(frozen=True, slots=True)
class PgCounters:
    wal_syncs: int
    wal_bytes: int
    commits: int
    db_bytes: int


@dataclass
class PgServer:
    """initdb, pg_ctl start/stop; as root, as the postgres user (initdb refuses root)."""

    bindir: Path
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="neuros-bench-pg-")))
    # A throwaway server's password: in the agents' environment, never printed.
    password: str = field(default_factory=lambda: secrets.token_hex(16))
    _admin: psycopg.Connection[tuple[Any, ...]] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            output = exc.stderr or exc.stdout or ""
            raise BenchError(f"{args[0]} failed: {str(output).strip()[-500:]}") from None

    def start(self) -> PgServer:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(
            "initdb", "-D", str(self.data), "-U", PG_USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        pwfile.unlink()
        # Production's durability: every commit flushed (fsync, synchronous_commit on).
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def url(self, database: str) -> str:
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection[tuple[Any, ...]]:
        """One connection to the ``postgres`` database: outside what is measured."""
        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(self.url("postgres"), autocommit=True)
        return self._admin

    def version(self) -> str:
        row = self.admin().execute("SHOW server_version").fetchone()
        return str(row[0]).split()[0] if row else "?"

    def create_database(self, name: str) -> str:
        self.admin().execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        # FORCE: after a failed run, an agent's backends may not have gone yet.
        self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.postmaster_pid())

    def wait_disconnected(self, database: str) -> None:
        """Until no backend serves ``database``: a backend publishes its counters as it
        exits, before it leaves pg_stat_activity."""
        deadline = time.monotonic() + DISCONNECT_TIMEOUT_SECONDS
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        while (row := self.admin().execute(query, (database,)).fetchone()) and row[0]:
            if time.monotonic() > deadline:
                raise BenchError(f"{row[0]} backend(s) still on {database} after the agents")
            time.sleep(0.05)

    def counters(self, database: str) -> PgCounters:
        admin = self.admin()
        wal = admin.execute("SELECT wal_sync, wal_bytes FROM pg_stat_wal").fetchone()
        db = admin.execute(
            "SELECT xact_commit, pg_database_size(datname) FROM pg_stat_database"
            " WHERE datname = %s",
            (database,),
        ).fetchone()
        if wal is None or db is None:
            raise BenchError(f"no statistics for {database}")
        return PgCounters(int(wal[0]), int(wal[1]), int(db[0]), int(db[1]))

    def destroy(self, keep_log: Path | None = None) -> None:
        if self._admin is not None:
            self._admin.close()
        with suppress(BenchError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        if keep_log is not None and self.log.is_file():
            shutil.copyfile(self.log, keep_log)
        shutil.rmtree(self.root, ignore_errors=True)


def count_readings(connect: str | Path) -> int:
    """Readings stored, through a connection closed before counters are read."""
    if isinstance(connect, Path):
        conn = sqlite3.connect(connect)
        try:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
        finally:
            conn.close()
    else:
        with psycopg.connect(connect) as pg:
            row = pg.execute("SELECT count(*) FROM readings").fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------------------
# Running the part.


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative counters of a store, read between two clean stops of its agents."""

    readings: int
    bytes: int
    syncs: int
    commits: int = 0
    wal_bytes: int = 0


@dataclass(slots=True)
class Lifetime:
    """What one start-to-stop of a configuration's agents measured."""

    summaries: list[K6Summary]
    agent_cpu: float
    db_cpu: float
    logs: list[Path]


@contextmanager
def all_cpus() -> Iterator[None]:
    """Nothing pinned during part (g): the driver runs on CPU 1 for the other parts,
    and what it starts inherits that."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def groups_committed(log_path: Path) -> int:
    """The launcher's count of group commits, printed when its writer closed."""
    found = _GROUPS_LINE.findall(log_path.read_text(errors="replace"))
    if not found:
        raise BenchError(f"the agent did not report its group commits: see {log_path}")
    return int(found[-1])


class BackendsPart:
    """Part (g), one configuration at a time, in the bench's rounds."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.server: PgServer | None = None
        self.pg_version = "?"

    def ports(self, replicas: int) -> list[int]:
        return [self.bench.opts.port + i for i in range(replicas)]

    def postgres(self) -> PgServer:
        if self.server is None:
            bindir = find_bindir()
            if bindir is None:
                raise BenchError("PostgreSQL is not installed: apt-get install postgresql")
            self.server = PgServer(bindir)
            self.server.start()
            self.pg_version = self.server.version()
            log(f"PostgreSQL {self.pg_version} on 127.0.0.1:{self.server.port}, fsync=on")
        return self.server

    def close(self) -> None:
        if self.server is not None:
            keep = self.bench.results / "g-postgresql.log" if self.bench.results.is_dir() else None
            self.server.destroy(keep)
            self.server = None

    def run_round(self, round_number: int) -> None:
        with all_cpus():
            self.postgres()
            for config in round_configs(round_number):
                self.run_config(config, round_number)

    # -- agents and k6

    def agent_env(self, config: Config, port: int, db_path: Path, url: str) -> dict[str, str]:
        env = self.bench.server_env("agent-off", db_path, "") | {"NEUROS_PORT": str(port)}
        if url:
            env["NEUROS_DATABASE_URL"] = url
        return env | dict(config.env)

    def agent_cmd(self) -> list[str]:
        return [self.bench.python, "-m", "stacktools.bench.backends"]

    def start_agent(self, env: Mapping[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        base = f"http://127.0.0.1:{env['NEUROS_PORT']}"
        with suppress(httpx.HTTPError):
            httpx.get(f"{base}/health", timeout=1.0)
            raise BenchError(f"something already answers on {base}: use another --port")
        proc = self.bench.procs.start(self.agent_cmd(), log_path, env)
        wait_for_http(f"{base}/health", proc, log_path)
        status = httpx.get(f"{base}{AUTH_PROBE_PATH}", timeout=5.0).status_code
        if status != httpx.codes.UNAUTHORIZED:
            raise BenchError(f"an agent answered {status} to a request without a token")
        return proc

    def k6_jobs(
        self, config: Config, label: str, stem: str, offset: int, stride: int, duration: str
    ) -> list[K6Job]:
        jobs = []
        for i, (port, vus) in enumerate(
            zip(self.ports(config.replicas), config.vus(self.bench.opts.vus), strict=True)
        ):
            env = {
                "BASE_URL": f"http://127.0.0.1:{port}",
                "VUS": str(vus),
                "DURATION": duration,
                "SEQ_OFFSET": str(offset + i * stride),
            }
            summary = self.bench.results / f"{stem}-a{i + 1}-summary.json"
            jobs.append(
                K6Job(
                    f"{label} agent {i + 1}",
                    self.bench.k6_cmd("ingest.js", env, summary),
                    self.bench.results / f"{stem}-a{i + 1}-k6.log",
                    summary,
                )
            )
        return jobs

    def lifetime(
        self,
        envs: Sequence[Mapping[str, str]],
        label: str,
        stem: str,
        jobs: Sequence[K6Job],
        server: PgServer | None,
    ) -> Lifetime:
        """Start the agents, run k6 against them (one each, at once), stop them. CPU is
        read around k6 only, while the agents' PostgreSQL backends are alive."""
        procs = self.bench.procs
        logs = [self.bench.results / f"{stem}-a{i + 1}-agent.log" for i in range(len(envs))]
        agents: list[subprocess.Popen[bytes]] = []
        try:
            for env, log_path in zip(envs, logs, strict=True):
                agents.append(self.start_agent(env, log_path))
            agent_before = [cpu_seconds(a.pid) for a in agents]
            db_before = server.cpu_seconds() if server else 0.0
            summaries = self.bench.run_k6_together(jobs)
            db_after = server.cpu_seconds() if server else 0.0
            agent_cpu = sum(
                cpu_seconds(a.pid) - b for a, b in zip(agents, agent_before, strict=True)
            )
        finally:
            statuses = [procs.stop(agent) for agent in agents]
        for status, log_path in zip(statuses, logs, strict=True):
            if status != 0:
                raise BenchError(f"[{label}] an agent exited {status} when stopped: see {log_path}")
        return Lifetime(summaries, agent_cpu, db_after - db_before, logs)

    # -- one configuration

    def run_config(self, config: Config, round_number: int) -> None:
        run = f"{config.name}-r{round_number}"
        label = f"{config.name} r{round_number}"
        opts = self.bench.opts
        run_dir = self.bench.work / run
        run_dir.mkdir(parents=True)
        db_path = run_dir / "neuros.db"
        database = run.replace("-", "_")
        server = self.postgres() if config.backend == "postgresql" else None
        url = server.create_database(database) if server else ""
        envs = [self.agent_env(config, port, db_path, url) for port in self.ports(config.replicas)]
        groups = 0

        def snapshot() -> Snapshot:
            if server is None:
                return Snapshot(count_readings(db_path), db_file_bytes(db_path), groups)
            readings = count_readings(url)
            server.wait_disconnected(database)
            c = server.counters(database)
            return Snapshot(readings, c.db_bytes, c.wal_syncs, c.commits, c.wal_bytes)

        try:
            warm_jobs = self.k6_jobs(
                config, f"{label} warm-up", f"{run}-warmup", 0, WARMUP_STRIDE, opts.warmup
            )
            warm = self.lifetime(envs, f"{label} warm-up", f"{run}-warmup", warm_jobs, server)
            if server is None:
                groups += sum(groups_committed(p) for p in warm.logs)
            before = snapshot()
            jobs = self.k6_jobs(
                config, label, run, INGEST_MEASURE_OFFSET, MEASURE_STRIDE, opts.duration
            )
            measured = self.lifetime(envs, label, run, jobs, server)
            if server is None:
                groups += sum(groups_committed(p) for p in measured.logs)
            after = snapshot()
        finally:
            if server is not None:
                with suppress(psycopg.Error):  # the server goes at the end anyway
                    server.drop_database(database)
            shutil.rmtree(run_dir, ignore_errors=True)
        metrics = self.metrics(label, warm, measured, before, after, server is not None)
        self.bench.runs.append(
            {
                "config": config.name,
                "part": "g",
                "round": round_number,
                "server": f"{config.replicas} agent(s) on {config.backend}",
                "db": config.backend,
                "measure_seq_offset": INGEST_MEASURE_OFFSET,
                "metrics": metrics,
            }
        )
        log(
            f"[{label}] {metrics['rps']:.1f} ingests/s, p95 {metrics['p95_ms']:.1f} ms, agent "
            f"CPU {metrics['agent_cpu_us_per_request']:.0f} us/req"
            + (
                f", PostgreSQL {metrics['db_cpu_us_per_request']:.0f} us/req"
                if server is not None
                else ""
            )
            + f", {metrics['wal_syncs_per_ingest']:.3f} WAL syncs/ingest, "
            f"{metrics['bytes_per_reading']:.0f} bytes/reading"
        )

    @staticmethod
    def metrics(
        label: str,
        warm: Lifetime,
        measured: Lifetime,
        before: Snapshot,
        after: Snapshot,
        postgres: bool,
    ) -> dict[str, float]:
        """The run's numbers; fails when the database did not gain exactly the readings
        acknowledged (every k6 check is a 201, one reading per request)."""
        acknowledged = sum(s.requests for s in measured.summaries)
        warm_acknowledged = sum(s.requests for s in warm.summaries)
        stored = after.readings - before.readings
        if stored != acknowledged or before.readings != warm_acknowledged:
            raise BenchError(
                f"[{label}] {acknowledged} readings acknowledged, the database gained {stored}"
                f" (warm-up: {warm_acknowledged} acknowledged, {before.readings} stored)"
            )
        metrics: dict[str, float] = {
            "rps": sum(s.rps for s in measured.summaries),
            "requests": acknowledged,
            "p95_ms": max(s.p95_ms for s in measured.summaries),
            "p99_ms": max(s.p99_ms for s in measured.summaries),
            "agent_cpu_us_per_request": measured.agent_cpu * 1e6 / acknowledged,
            "readings_acknowledged": acknowledged,
            "readings_stored": stored,
            "wal_syncs_per_ingest": (after.syncs - before.syncs) / acknowledged,
            "bytes_per_reading": (after.bytes - before.bytes) / stored,
        }
        for i, summary in enumerate(measured.summaries):
            metrics[f"requests_r{i + 1}"] = summary.requests
        if postgres:
            commits = after.commits - before.commits
            metrics |= {
                "db_cpu_us_per_request": measured.db_cpu * 1e6 / acknowledged,
                "commits_per_ingest": commits / acknowledged,
                "wal_syncs_per_commit": (after.syncs - before.syncs) / commits,
                "wal_bytes_per_ingest": (after.wal_bytes - before.wal_bytes) / acknowledged,
            }
        return metrics

    # -- --dry-run

    def plan_lines(self) -> list[str]:
        bench, opts = self.bench, self.bench.opts
        bindir = find_bindir()
        lines = [
            "\n# (g) storage backends, nothing pinned; each configuration on a fresh store,"
            " its agents started twice (warm-up, measured run)",
            "PostgreSQL: "
            + (
                f"initdb in a temporary folder and pg_ctl start from {bindir}, a free port,"
                " fsync=on"
                if bindir
                else "NOT INSTALLED (apt-get install postgresql): part (g) would fail"
            ),
        ]
        db = bench.work / "RUN" / "neuros.db"
        for config in CONFIGS:
            url = (
                "postgresql://neuros:***@127.0.0.1:PG_PORT/RUN"
                if config.backend != "sqlite"
                else ""
            )
            vus = config.vus(opts.vus)
            lines.append(f"\n# (g) {config.name}: {config.label}, k6 VUs {'+'.join(map(str, vus))}")
            for port in self.ports(config.replicas):
                env = self.agent_env(config, port, db, url) | {"PATH": "$PATH", "HOME": "$HOME"}
                assignments = [f"{k}={v}" for k, v in env.items()]
                lines.append("would run: env -i " + shlex.join(assignments + self.agent_cmd()))
            jobs = self.k6_jobs(
                config, config.name, f"{config.name}-rN", INGEST_MEASURE_OFFSET, MEASURE_STRIDE,
                opts.duration,
            )  # fmt: skip
            lines += ["would run: " + shlex.join(job.cmd) for job in jobs]
        return lines


def check_prerequisites(port: int) -> None:
    """PostgreSQL's server installed, and the second agent's port (``port``) free."""
    if find_bindir() is None:
        raise BenchError("part (g) needs PostgreSQL's server: apt-get install postgresql")
    with suppress(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0)
        raise BenchError(f"something already answers on port {port}: use another --port")


# --------------------------------------------------------------------------------------
# The agent part (g) starts.


def serve() -> None:
    """``neuros.__main__.main``, and the SQLite writer's count of group commits on
    stderr when it closes (a COMMIT is one WAL fsync under synchronous=FULL)."""
    import neuros.__main__ as agent_main
    from neuros.ingest import GroupCommitWriter

    close = GroupCommitWriter.close

    async def close_and_count(self: GroupCommitWriter) -> None:
        await close(self)
        print(f"{GROUPS_TAG} {self.groups_committed}", file=sys.stderr, flush=True)

    GroupCommitWriter.close = close_and_count  # type: ignore[method-assign]
    agent_main.main()


if __name__ == "__main__":
    serve()
