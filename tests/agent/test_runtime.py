"""The agent as deployed: ``python -m neuros`` under uvicorn, started, killed and stopped.

Settings validation at start, durability across ``kill -9``, a bounded graceful stop when
the trace collector is unreachable, and logs that carry neither user ids nor readings.
"""

import base64
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from neuros.auth.admin_token import bearer
from neuros.auth.tokens import TOKEN_PREFIX, Scope, digest, new_token
from neuros.config import Settings
from tests.support.agent import RR_EXAMPLE, add_token, reading
from tests.support.processes import LiveAgent, free_port, wait_until

StartAgent = Callable[..., LiveAgent]

# Docker sends SIGKILL this long after SIGTERM (`docker stop`, compose's stop_grace_period).
DOCKER_STOP_TIMEOUT_SECONDS = 10.0


@pytest.fixture(autouse=True)
def _no_inherited_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agents here get exactly the NEUROS_*/OTEL_* variables each test sets."""
    for name in list(os.environ):
        if name.startswith(("NEUROS_", "OTEL_")):
            monkeypatch.delenv(name)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("invalid", "named"),
    [
        pytest.param({"NEUROS_PORT": "notaport"}, ["NEUROS_PORT"], id="port"),
        pytest.param(
            {"NEUROS_SLEEP_NEED_HOURS": "-1"}, ["NEUROS_SLEEP_NEED_HOURS"], id="sleep-need"
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ["OTEL_EXPORTER_OTLP_PROTOCOL"],
            id="otlp-protocol",
        ),
        pytest.param(
            {"NEUROS_PORT": "0", "NEUROS_LOG_LEVEL": "loud"},
            ["NEUROS_PORT", "NEUROS_LOG_LEVEL"],
            id="two-at-once",
        ),
    ],
)
def test_invalid_settings_stop_the_start_with_one_clear_line(
    tmp_path: Path, invalid: dict[str, str], named: list[str]
) -> None:
    db_path = tmp_path / "never" / "neuros.db"
    # A valid tokens file: the line must be about the invalid setting, not a missing file.
    tokens_file = tmp_path / "tokens.yml"
    add_token(tokens_file)
    env = {
        **os.environ,  # NEUROS_* and OTEL_* already removed by the autouse fixture
        "NEUROS_HOST": "127.0.0.1",
        "NEUROS_PORT": str(free_port()),
        "NEUROS_DB_PATH": str(db_path),
        "NEUROS_API_TOKENS_FILE": str(tokens_file),
        **invalid,
    }
    if not any(name.startswith("OTEL_") for name in invalid):
        env["OTEL_SDK_DISABLED"] = "true"
    # Valid settings would make it serve, never exit: the timeout turns that into a failure.
    result = subprocess.run(
        [sys.executable, "-m", "neuros"], env=env, cwd=tmp_path, capture_output=True, timeout=30
    )
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].strip()
    for name in named:
        assert name in lines[0]
    assert "Traceback" not in stderr
    assert result.stdout == b""
    assert not db_path.parent.exists(), "the start should stop before touching the disk"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NEUROS_"):
            monkeypatch.delenv(name)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.port == 8000
    assert settings.db_path == Path("./data/neuros.db")
    assert settings.sleep_need_hours == 8.0
    assert settings.metrics_enabled is True
    assert settings.log_level == "info"


def test_database_and_its_missing_parent_directories_are_created(
    live_agent: StartAgent, tmp_path: Path
) -> None:
    db_path = tmp_path / "not" / "yet" / "there" / "neuros.db"
    assert not (tmp_path / "not").exists()
    agent = live_agent(db_path=db_path)
    assert db_path.is_file()
    assert httpx.get(f"{agent.url}/ready", timeout=10).status_code == 200
    batch = {"readings": [reading(sleep_hours=6.5)]}
    with agent.client(timeout=10) as client:
        posted = client.post("/v1/users/created/readings", json=batch)
    assert posted.status_code == 201
    # The reading is in that very file, not somewhere else the agent chose.
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT sleep_hours FROM readings WHERE user_id = 'created'").fetchall()
    assert rows == [(6.5,)]


# --- durability -----------------------------------------------------------------------


def test_an_acknowledged_batch_survives_sigkill(live_agent: StartAgent, tmp_path: Path) -> None:
    db_path = tmp_path / "durable.db"
    first = live_agent(db_path=db_path)
    batch = {
        "readings": [
            reading("2026-11-19T07:00:00Z", sleep_hours=6.25, resting_hr_bpm=55),
            reading("2026-11-20T09:00:00+02:00", rr_intervals_ms=RR_EXAMPLE, sleep_hours=7.5),
        ]
    }
    with first.client(timeout=10) as client:
        created = client.post("/v1/users/durable/readings", json=batch)
    assert created.status_code == 201
    assert first.kill(signal.SIGKILL) == -signal.SIGKILL  # no shutdown code ran

    second = live_agent(db_path=db_path)
    with second.client(timeout=10) as client:
        after = client.get("/v1/users/durable/kpis")
    assert after.status_code == 200
    assert after.json() == created.json()["kpis"]
    assert after.json()["sleep_debt_hours"] == pytest.approx(1.75 + 0.5)


THREADS = 4
POSTS_PER_THREAD = 25
USERS_PER_THREAD = 5  # each user gets POSTS_PER_THREAD / USERS_PER_THREAD batches, in order
READINGS_PER_BATCH = 2
KILL_AFTER_ACKNOWLEDGED = 60
FIRST_DAY = datetime(2026, 11, 11, 7, tzinfo=UTC)
SLEEP_NEED_HOURS = 8.0


@dataclass(frozen=True)
class Planned:
    """One reading: a distinct day per reading, so each adds its own sleep debt."""

    at: datetime
    sleep_hours: float
    resting_hr_bpm: float


def _user(thread: int, post: int) -> str:
    return f"durable-{thread}-{post % USERS_PER_THREAD}"


def _batch(thread: int, post: int) -> list[Planned]:
    """Batch number ``post // USERS_PER_THREAD`` of its user: the next two days."""
    nth, slot = divmod(post, USERS_PER_THREAD)
    planned = []
    for j in range(READINGS_PER_BATCH):
        day = READINGS_PER_BATCH * nth + j
        planned.append(
            Planned(
                at=FIRST_DAY + timedelta(days=day),
                # All below the 8 h need: a lost reading would lower the debt by > 1.5 h.
                sleep_hours=round(3 + 0.37 * day + 0.011 * thread + 0.003 * slot, 3),
                resting_hr_bpm=50.0 + day + thread + 0.5 * slot,
            )
        )
    return planned


def _expected(readings: list[Planned]) -> dict[str, Any]:
    """What GET kpis must say about exactly these readings (all within 14 days)."""
    latest = max(readings, key=lambda r: r.at)
    return {
        "as_of": latest.at,
        "sleep_debt_hours": sum(SLEEP_NEED_HOURS - r.sleep_hours for r in readings),
        "resting_hr_bpm": latest.resting_hr_bpm,
    }


def _matches(kpis: dict[str, Any], expected: dict[str, Any]) -> bool:
    return bool(
        _instant(kpis["as_of"]) == expected["as_of"]
        and kpis["sleep_debt_hours"] == pytest.approx(expected["sleep_debt_hours"])
        and kpis["resting_hr_bpm"] == pytest.approx(expected["resting_hr_bpm"])
    )


def test_every_acknowledged_reading_survives_sigkill_during_concurrent_ingest(
    live_agent: StartAgent, tmp_path: Path
) -> None:
    db_path = tmp_path / "concurrent.db"
    agent = live_agent(db_path=db_path)
    lock = threading.Lock()
    # user -> (readings acknowledged so far, kpis of the last 201), appended in post order
    acknowledged: dict[str, tuple[list[Planned], dict[str, Any]]] = {}

    def acknowledged_count() -> int:
        with lock:
            return sum(len(r) for r, _ in acknowledged.values()) // READINGS_PER_BATCH

    def post_all(thread: int) -> None:
        with agent.client(timeout=10) as client:
            for post in range(POSTS_PER_THREAD):
                user, batch = _user(thread, post), _batch(thread, post)
                body = {
                    "readings": [
                        reading(
                            r.at.isoformat(),
                            sleep_hours=r.sleep_hours,
                            resting_hr_bpm=r.resting_hr_bpm,
                        )
                        for r in batch
                    ]
                }
                try:
                    response = client.post(f"/v1/users/{user}/readings", json=body)
                except httpx.TransportError:
                    return  # killed mid-request: this batch was never acknowledged
                assert response.status_code == 201, response.text
                with lock:
                    previous = acknowledged.get(user, ([], {}))[0]
                    acknowledged[user] = (previous + batch, response.json()["kpis"])

    with ThreadPoolExecutor(THREADS) as pool:
        workers = [pool.submit(post_all, thread) for thread in range(THREADS)]
        wait_until(
            lambda: (
                acknowledged_count() >= KILL_AFTER_ACKNOWLEDGED or all(w.done() for w in workers)
            ),
            timeout=60,
            what=f"{KILL_AFTER_ACKNOWLEDGED} acknowledged batches",
        )
        # Killed while the other batches are still being sent.
        assert agent.kill(signal.SIGKILL) == -signal.SIGKILL
        for worker in workers:
            worker.result()  # re-raises a non-201 seen before the kill
    assert acknowledged_count() >= KILL_AFTER_ACKNOWLEDGED

    restarted = live_agent(db_path=db_path)
    with restarted.client(timeout=10) as client:
        for thread in range(THREADS):
            # A thread's acknowledged posts are a prefix of its sequence; the next one was
            # in flight at the kill and may or may not have been committed.
            users = [_user(thread, slot) for slot in range(USERS_PER_THREAD)]
            sent = sum(len(acknowledged.get(u, ([], {}))[0]) for u in users)
            in_flight_post = sent // READINGS_PER_BATCH
            for user in users:
                readings, last_kpis = acknowledged.get(user, ([], {}))
                in_flight: list[Planned] = []
                if in_flight_post < POSTS_PER_THREAD and _user(thread, in_flight_post) == user:
                    in_flight = _batch(thread, in_flight_post)
                got = client.get(f"/v1/users/{user}/kpis")
                if not readings:
                    if got.status_code != 404:
                        assert in_flight, (user, got.status_code)
                        assert _matches(got.json(), _expected(in_flight)), (user, got.json())
                    continue
                assert got.status_code == 200, user
                kpis = got.json()
                if _matches(kpis, _expected(readings)):
                    assert kpis == last_kpis, user  # the very snapshot that was acknowledged
                else:
                    assert in_flight, (user, kpis)  # an acknowledged reading is missing
                    assert _matches(kpis, _expected(readings + in_flight)), (user, kpis)


# --- shutdown -------------------------------------------------------------------------


def test_sigterm_with_an_unreachable_collector_exits_0_within_docker_stop_timeout(
    live_agent: StartAgent,
) -> None:
    collector_port = free_port()  # nothing listens there
    agent = live_agent(
        env={
            "OTEL_SDK_DISABLED": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector_port}",
            "OTEL_TRACES_EXPORTER": "otlp",
            # Export (and fail) while requests are being served, not only at shutdown.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
    )
    statuses: list[int] = []
    with agent.client(timeout=10) as client:

        def traffic(first: int, count: int) -> None:
            for n in range(first, first + count):
                user = f"traced-{n}"
                body = {"readings": [reading(sleep_hours=7)]}
                statuses.append(client.post(f"/v1/users/{user}/readings", json=body).status_code)
                statuses.append(client.get(f"/v1/users/{user}/kpis").status_code)

        traffic(0, 5)
        # The exporter has tried the collector and failed...
        mentions_collector = re.compile(rf"(?<!\d){collector_port}(?!\d)")
        wait_until(
            lambda: mentions_collector.search(agent.log()) is not None,
            what="a failed span export",
        )
        # ...and requests keep succeeding while it retries.
        traffic(5, 5)
        # Tracing really is on: request latencies carry the exemplars of sampled spans.
        exposition = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert statuses == [201, 200] * 10
    assert 'trace_id="' in exposition.text

    assert agent.process is not None
    started = time.monotonic()
    agent.process.send_signal(signal.SIGTERM)
    code = agent.process.wait(timeout=DOCKER_STOP_TIMEOUT_SECONDS + 20)
    elapsed = time.monotonic() - started
    assert elapsed < DOCKER_STOP_TIMEOUT_SECONDS, f"stopped after {elapsed:.1f}s"
    log = agent.log()
    assert "Traceback" not in log
    assert code == 0, f"exit code {code} after {elapsed:.1f}s\n{log}"


# --- privacy --------------------------------------------------------------------------

CANARY_USER = "privacy-canary-7f3a"
CANARY_SLEEP = 7.123
CANARY_HR = 61.77
# A well-formed token the agent does not know: refused, and no more logged than a valid one.
CANARY_WRONG_TOKEN = new_token()


def _appears(value: float, text: str) -> bool:
    # Digit boundaries: a timestamp such as 12:00:47.123456 is not the value 7.123.
    return re.search(rf"(?<!\d){re.escape(str(value))}(?!\d)", text) is not None


def _canary_traffic(agent: LiveAgent) -> None:
    base = f"/v1/users/{CANARY_USER}"
    good = reading(sleep_hours=CANARY_SLEEP, resting_hr_bpm=CANARY_HR)
    # One good reading and one out of range: the batch is refused as a whole.
    bad = [
        reading("2026-11-21T07:00:00Z", sleep_hours=CANARY_SLEEP, resting_hr_bpm=CANARY_HR),
        reading("2026-11-22T07:00:00Z", sleep_hours=CANARY_HR),
    ]
    malformed = f'{{"readings": [{{"sleep_hours": {CANARY_SLEEP}, "user": "{CANARY_USER}"'
    with agent.client(timeout=10) as client:
        assert client.get(f"{base}/kpis").status_code == 404  # nothing stored yet
        assert client.post(f"{base}/readings", json={"readings": [good]}).status_code == 201
        assert client.get(f"{base}/kpis").status_code == 200
        assert client.post(f"{base}/analyze").status_code == 200
        assert client.post(f"{base}/readings", json={"readings": bad}).status_code == 422
        invalid_json = client.post(
            f"{base}/readings",
            content=malformed,
            headers={"content-type": "application/json"},
        )
        assert invalid_json.status_code == 422
        unrouted = client.get(f"{base}/nowhere", params={"user": CANARY_USER})
        assert unrouted.status_code == 404
        # Refused before the route runs: an unknown token, and a valid one with a
        # scope this route does not take (the 403 path names the token in the log).
        wrong = client.get(f"{base}/kpis", headers=bearer(CANARY_WRONG_TOKEN))
        assert wrong.status_code == 401
        writer = add_token(agent.tokens_file, "canary-writer", (Scope.READINGS_WRITE,))
        wait_until(
            lambda: client.get(f"{base}/kpis", headers=bearer(writer)).status_code == 403,
            what="the reloaded writer token to be refused the kpis scope",
        )


@pytest.mark.parametrize(
    "tracing",
    [
        pytest.param({}, id="tracing-off"),
        # Spans printed to stdout, the container log, must be as clean as the log lines.
        pytest.param(
            {
                "OTEL_SDK_DISABLED": "false",
                "OTEL_TRACES_EXPORTER": "console",
                "OTEL_BSP_SCHEDULE_DELAY": "50",
                "PYTHONUNBUFFERED": "1",
            },
            id="console-spans",
        ),
    ],
)
def test_logs_carry_neither_user_ids_nor_reading_values(
    live_agent: StartAgent, tracing: dict[str, str]
) -> None:
    env = {"NEUROS_LOG_LEVEL": "debug", "NEUROS_API_TOKENS_RELOAD_SECONDS": "0.1", **tracing}
    agent = live_agent(env=env)
    _canary_traffic(agent)
    agent.stop()
    log = agent.log()

    assert CANARY_USER not in log
    assert not _appears(CANARY_SLEEP, log)
    assert not _appears(CANARY_HR, log)
    # No token nor its hash, in any spelling the code could produce; the wrong token
    # neither. The part after the fixed prefix is the secret.
    for token in (agent.token, CANARY_WRONG_TOKEN):
        secret = token.removeprefix(TOKEN_PREFIX)
        assert secret not in log
        hashed = digest(token)
        for spelling in (hashed.hex(), hashed.hex().upper(), base64.b64encode(hashed).decode()):
            assert spelling not in log
    assert "token=admin" in log, "the access log names the token, by its name"
    assert "token=canary-writer" in log, "a refused valid token is named too"
    # Not a silent log: each request left an access line naming its route template.
    for method, route, status in [
        ("GET", "/v1/users/{user_id}/kpis", 404),
        ("POST", "/v1/users/{user_id}/readings", 201),
        ("GET", "/v1/users/{user_id}/kpis", 200),
        ("POST", "/v1/users/{user_id}/analyze", 200),
        ("POST", "/v1/users/{user_id}/readings", 422),
    ]:
        line = rf"neuros\.access {method} {re.escape(route)} {status} "
        assert re.search(line, log), f"no access line {method} {route} {status}:\n{log}"
    if tracing:
        assert '"http.route": "/v1/users/{user_id}/readings"' in log, "no span was printed"
