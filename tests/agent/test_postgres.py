"""PostgreSQL as the shared store of several replicas, against a real server.

Two apps on one database stand for two replicas: re-sends of the same readings
reaching both at once count once, day totals equal the stored readings, users per band
are right and each replica's gauge shows them; /ready follows the server down and
back without a restart; a start against a bad URL stops with one line; replicas
starting at once migrate once.
"""

import asyncio
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from neuros.config import Settings
from neuros.main import build_backend
from neuros.postgres import PostgresBackend
from neuros.postgres_schema import SCHEMA_VERSION
from tests.support.agent import InProcess, reading
from tests.support.postgres_server import PASSWORD, PostgresServer, require_bindir
from tests.support.processes import LiveAgent, free_port, wait_until

USERS = [f"user-{n}" for n in range(6)]
INSTANTS = [f"2026-11-{d:02d}T{h:02d}:00:00Z" for d in range(7, 21) for h in (6, 22)]
BANDS = ("high", "moderate", "low")
WRONG_PASSWORD = "Wrong-Secret-42"  # noqa: S105 - not a real secret


@pytest.fixture
def backend() -> str:
    return "postgresql"


def _fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def _batch(rng: random.Random) -> list[dict[str, object]]:
    """Some of the instants, each with one of two values: re-sends that replace."""
    chosen = rng.sample(INSTANTS, rng.randint(1, 8))
    return [
        reading(at, sleep_hours=rng.choice([0.0, 9.0]), resting_hr_bpm=rng.choice([50, 70]))
        for at in chosen
    ]


def test_two_replicas_receiving_the_same_readings_count_them_once(
    make_app: Callable[..., InProcess], pg_url: str
) -> None:
    replicas = [make_app(population_refresh_seconds=0.1) for _ in range(2)]
    rng = random.Random(13)  # noqa: S311 - reproducible test data
    # Every batch goes to both replicas at once, 16 requests in flight.
    sends = [(user, _batch(rng)) for user in USERS for _ in range(15)]

    def post(job: tuple[int, tuple[str, list[dict[str, object]]]]) -> int:
        replica, (user, batch) = job
        response = replicas[replica].client.post(
            f"/v1/users/{user}/readings", json={"readings": batch}
        )
        return int(response.status_code)

    jobs = [(r, send) for send in sends for r in (0, 1)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(post, jobs))
    assert set(statuses) == {201}

    # Each instant sent is stored once, and the day totals are exactly the readings'.
    stored = _fetch(
        pg_url,
        "SELECT user_id, count(*), count(DISTINCT recorded_at_us) FROM readings GROUP BY 1",
    )
    sent = {user: {r["recorded_at"] for u, b in sends if u == user for r in b} for user in USERS}
    assert {u: (n, d) for u, n, d in stored} == {u: (len(s), len(s)) for u, s in sent.items()}
    mismatched = _fetch(
        pg_url,
        """
        SELECT * FROM daily_totals t FULL JOIN (
            SELECT user_id, (recorded_at_us / 86400000000)::int AS day,
                   sum(round(resting_hr_bpm * 16777216))::bigint AS rhr_q,
                   count(resting_hr_bpm) AS rhr_n,
                   coalesce(sum(round(sleep_hours * 16777216)), 0)::bigint AS sleep_q,
                   count(sleep_hours) AS sleep_n
            FROM readings GROUP BY 1, 2) r USING (user_id, day)
        WHERE t.rhr_q IS DISTINCT FROM r.rhr_q OR t.rhr_n IS DISTINCT FROM r.rhr_n
           OR t.sleep_q IS DISTINCT FROM r.sleep_q OR t.sleep_n IS DISTINCT FROM r.sleep_n
        """,
    )
    assert mismatched == []

    # No band move lost: each user's recorded band is the band of their final KPIs,
    # and the users per band add up to it.
    final = {
        user: replicas[0].client.get(f"/v1/users/{user}/kpis").json()["readiness"] for user in USERS
    }
    assert dict(_fetch(pg_url, "SELECT user_id, readiness FROM user_state")) == final
    expected = {band: sum(1 for b in final.values() if b == band) for band in BANDS}
    counted = dict(
        _fetch(pg_url, "SELECT readiness, sum(users)::int FROM readiness_counts GROUP BY 1")
    )
    assert {band: counted.get(band, 0) for band in BANDS} == expected

    # Each replica exports the population from the database: the same figures on both
    # (dashboards take max across instances). Per-request counters add up across them.
    for replica in replicas:
        wait_until(
            lambda r=replica: all(  # type: ignore[misc]
                r.sample("neuros_users_by_readiness", {"readiness": band}) == n
                for band, n in expected.items()
            ),
            10,
            "the gauge to show the database's users per band",
        )
    accepted = [r.sample("neuros_readings_accepted_total") for r in replicas]
    assert sum(accepted) == sum(len(batch) for _, batch in sends) * 2
    assert all(a > 0 for a in accepted)


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[PostgresServer]:
    """A server of this test's own, to stop and start."""
    server = PostgresServer(require_bindir(), free_port()).init().start()
    yield server
    server.destroy()


def test_ready_follows_the_database_down_and_back_without_restart(
    make_app: Callable[..., InProcess], own_server: PostgresServer
) -> None:
    app = make_app(database_url=own_server.url())
    one = {"readings": [reading()]}
    assert app.client.get("/ready").status_code == 200
    own_server.stop()
    wait_until(lambda: app.client.get("/ready").status_code == 503, 30, "/ready 503")
    refused = app.client.post("/v1/users/u1/readings", json=one)
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "5"
    assert "nothing was stored" in refused.json()["detail"]
    own_server.start()
    wait_until(lambda: app.client.get("/ready").status_code == 200, 60, "/ready 200 again")
    wait_until(
        lambda: app.client.post("/v1/users/u1/readings", json=one).status_code == 201,
        30,
        "ingest to succeed again",
    )
    assert app.client.get("/v1/users/u1/kpis").status_code == 200


def _start_neuros(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "NEUROS_DATABASE_URL": url,
        "NEUROS_API_TOKENS_FILE": str(tmp_path / "missing.yml"),
        "OTEL_SDK_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "neuros"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("make_url", "says"),
    [
        (lambda s: f"mysql://neuros:{PASSWORD}@127.0.0.1/db", "scheme 'mysql'"),
        (lambda s: f"postgresql://neuros:{PASSWORD}@127.0.0.1:{free_port()}/db", "connect"),
        (lambda s: s.url(password=WRONG_PASSWORD), "password authentication failed"),
    ],
    ids=["bad-scheme", "unreachable", "wrong-password"],
)
def test_a_bad_database_url_stops_the_start_with_one_line(
    postgres_server: PostgresServer,
    tmp_path: Path,
    make_url: Callable[[PostgresServer], str],
    says: str,
) -> None:
    url = make_url(postgres_server)
    done = _start_neuros(url, tmp_path)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("neuros: ")
    assert "NEUROS_DATABASE_URL" in lines[0]
    assert says in lines[0]
    assert PASSWORD not in output
    assert WRONG_PASSWORD not in output


def test_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    async def start_together() -> list[int]:
        backends = [PostgresBackend(pg_url, min_size=1, max_size=2) for _ in range(6)]
        await asyncio.gather(*(b.start() for b in backends))
        versions = [b.schema_version for b in backends]
        await asyncio.gather(*(b.stop() for b in backends))
        return versions

    assert asyncio.run(start_together()) == [SCHEMA_VERSION] * 6
    assert asyncio.run(start_together()) == [SCHEMA_VERSION] * 6  # again: a no-op
    assert _fetch(pg_url, "SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_the_deployed_agent_serves_from_postgresql(
    live_agent: Callable[..., LiveAgent], pg_url: str
) -> None:
    """``python -m neuros`` with NEUROS_DATABASE_URL: two processes, one database; a
    reading written through one is read through the other."""
    env = {"NEUROS_DATABASE_URL": pg_url}
    first, second = live_agent(env=env), live_agent(env=env)
    body = {"readings": [reading(sleep_hours=6)]}
    with first.client() as client:
        assert client.post("/v1/users/u1/readings", json=body).status_code == 201
    with second.client() as client:
        kpis = client.get("/v1/users/u1/kpis")
        assert kpis.status_code == 200
        assert kpis.json()["sleep_debt_hours"] == pytest.approx(2.0)
        assert client.get("/ready").status_code == 200
    assert "postgresql database schema v1" in first.log()
    assert PASSWORD not in first.log()


def test_database_settings() -> None:
    """Unset or empty (compose's ``${NEUROS_DATABASE_URL:-}``) is SQLite; the URL is a
    secret in the settings' repr; pool bounds are checked."""
    assert Settings(database_url="").database_url is None
    url = f"postgresql://neuros:{PASSWORD}@db:5432/neuros"
    settings = Settings(database_url=url)
    assert PASSWORD not in repr(settings)
    assert isinstance(build_backend(settings), PostgresBackend)
    with pytest.raises(ValidationError, match="NEUROS_DATABASE_POOL_MIN"):
        Settings(database_pool_min=5, database_pool_max=2)
