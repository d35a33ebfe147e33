// Demo: a synthetic population that keeps every dashboard alive (issue 14). Not a load
// test: gentle, steady traffic of physiologically plausible readings through the
// public API only. Run it with `k6/run-load-tests.sh demo`, `k6 run
// k6/scenarios/demo.js`, or the compose profile `demo` (k6/ mounted read-only at /k6).
//
// Who: DEMO_USERS synthetic users per season, ids demo-s<season>-u<nnn> (e.g.
// demo-s1-u001) and never anything else: every id is checked against ^demo- before a
// request is built, and the demo token (scripts/setup.sh) reaches users demo-* only,
// so the agent itself refuses anything else with 403.
//   - each has a personal HRV level (RMSSD ~ lognormal, median 48 ms, 25-100 ms), a
//     resting HR of 48-72 bpm (lower with higher HRV), a sleep need of 7.5-8.5 h and
//     day-to-day noise (k6/lib/physiology.js);
//   - every morning a 5-minute RR series (about 5 x HR intervals, mean 60000/HR,
//     respiratory oscillation plus beat-to-beat noise scaled to the day's RMSSD) and
//     the resting HR; every night's sleep when they wake (sleep_hours). They live in
//     all time zones: each wakes at about 06:00-07:30 their time, at their own UTC
//     minute (+-20 min a day), and sends their UTC offset in recorded_at;
//   - weekly rhythm: hard training on Tue/Thu/Sat (UTC) lowers the next morning's HRV
//     by 6-12 % and raises resting HR by 1-3 bpm; other mornings are 3 % better;
//   - DEMO_DRIFT_SHARE of them drift into sleep debt: 0.05-0.08 h less sleep per day,
//     up to 3 h below their need;
//   - DEMO_ILLNESS_SHARE of them go through an illness episode from day
//     DEMO_ILLNESS_START_DAY of the time-lapse for DEMO_ILLNESS_DAYS days: HRV 25-35 %
//     below their usual level, resting HR +5-10 bpm, two hours less sleep a night
//     (fever), then two days of recovery. That puts them in the low readiness band
//     (neuros/kpi.py: score <= 33) while it lasts, and out of it after. At the
//     defaults the episode runs from about 2 to 7 minutes after each season's start,
//     the low-band share of a fresh population at 0.35-0.45 from minute 3 to 6.
//   The KPI alerts are population-level (prometheus/rules/kpi-alerts.yml:
//   NeurosLowRecoveryShareRising needs more than 30 % of all users in the low band),
//   so a cohort below 30 % could never fire them: the default share is 0.4. The
//   steady users stay out of the low band on nearly every day.
//
// Time: simulated time runs DEMO_TIME_FACTOR (F) times faster than the real clock, and
// is never ahead of it (the agent refuses readings from the future). A season starts
// at real instant R: its time-lapse starts at S = the UTC midnight DEMO_SEASON_DAYS
// days before R's day, and simulated time is sim(t) = S + F x (t - R). At R every user
// of the season gets DEMO_BACKFILL_DAYS days of history (before S) in batches, so
// baselines and readiness bands exist at once; then each reading is sent when its
// simulated instant has passed. The season ends when sim(t) would come within a
// minute of the real clock, after (R - 1 min - S) / (F - 1) real seconds (about an
// hour at the defaults: 60 days at one simulated day per real minute); the next season
// starts then with new ids (demo-s2-...), again DEMO_SEASON_DAYS in the past. Each
// reading's instant is checked at send time against the real clock (at least a
// minute behind it) and skipped otherwise (metric demo_readings_skipped).
// The agent counts every user it ever stored in its population gauges, including the
// users of finished seasons, frozen in their last band: after n seasons an episode
// moves the low-band share by about DEMO_ILLNESS_SHARE / n.
//
// Rate: 2 readings a user per simulated day, and a KPI read after 1 morning in 10:
// at the defaults 40 x 2.1 / 60 s = about 1.4 requests/s, spread over each real
// minute (wake times cover the UTC day), plus the backfill (one request a user) at
// each season's start. VUs (DEMO_VUS) each own a share of the users and send what is
// due, in time order, then sleep until the next reading is (constant-vus: the
// schedule, not the executor, sets the rate).
//
// Environment:
//   BASE_URL               agent URL (default http://localhost:8000)
//   NEUROS_API_TOKEN       API token; else NEUROS_API_TOKEN_FILE, a file holding it
//                          (read at start; an absolute path: k6's open() resolves a
//                          relative one against k6/scenarios/; compose mounts
//                          secrets/neuros-demo-token at /run/secrets/neuros-demo-token).
//                          Needs readings:write and kpis:read for users demo-*.
//   HOLD_DURATION          how long to run (default 10m)
//   DEMO_SEED              seed of the population and its days (default 20261214)
//   DEMO_USERS             users per season (default 40)
//   DEMO_TIME_FACTOR       simulated seconds per real second, >= 1 (default 1440: a
//                          simulated day per real minute; 1: real time, one season)
//   DEMO_BACKFILL_DAYS     history sent at each season's start (default 14)
//   DEMO_SEASON_DAYS       how far in the past a season's time-lapse starts (default 60)
//   DEMO_ILLNESS_START_DAY day of the time-lapse the illness starts on (default 2: at
//                          the defaults, two minutes after the start)
//   DEMO_ILLNESS_DAYS      length of the episode, 0 for none (default 4)
//   DEMO_ILLNESS_SHARE     share of users in the illness cohort (default 0.4)
//   DEMO_DRIFT_SHARE       share of users drifting into sleep debt (default 0.1)
//   DEMO_VUS               VUs sharing the users (default 4, at most DEMO_USERS)
//   DEMO_FIRST_SEASON      number of the first season, or auto (default): the first
//                          one whose demo-s<n>-u001 the agent does not know, so a
//                          restart never writes into an earlier season's users
//   DEMO_DRY_RUN=1         send nothing: print the plan of the whole run (every season,
//                          user and reading, with its real send time) as JSON lines
//                          through console.log; the first season is 1
//   DEMO_NOW               dry run only: the real clock to plan from (RFC 3339 or
//                          epoch ms), so that a plan is reproducible
import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { BASE_URL, SUMMARY_TREND_STATS, TOKEN_VARIABLE, envDuration } from '../lib/config.js';
import {
  assertDemoId,
  backfillBatches,
  config,
  dayReadings,
  durationMs,
  dueAt,
  inThePast,
  nextSeason,
  people,
  plan,
  season,
  simAt,
  userId,
} from '../lib/demo_population.js';
import { ROUTES } from '../lib/traffic.js';

const CFG = config(__ENV);
const HOLD = envDuration('HOLD_DURATION', '10m');
const TOKEN_FILE_VARIABLE = 'NEUROS_API_TOKEN_FILE';
// The longest a VU sleeps at once: it notices the end of the run within this.
const MAX_NAP_SECONDS = 5;

// In the init context: open() reads files nowhere else.
function readToken() {
  const direct = (__ENV[TOKEN_VARIABLE] || '').trim();
  if (direct) return direct;
  const file = (__ENV[TOKEN_FILE_VARIABLE] || '').trim();
  return file ? open(file).trim() : '';
}
const TOKEN = readToken();
const HEADERS = Object.freeze({
  'Content-Type': 'application/json',
  Authorization: `Bearer ${TOKEN}`,
});

const readingsSent = new Counter('demo_readings_sent');
const readingsSkipped = new Counter('demo_readings_skipped');

export const options = CFG.dryRun
  ? {
      scenarios: {
        plan: { executor: 'shared-iterations', vus: 1, iterations: 1, maxDuration: '10m' },
      },
    }
  : {
      scenarios: {
        demo: { executor: 'constant-vus', vus: CFG.vus, duration: HOLD, gracefulStop: '10s' },
      },
      // The demo's steady state must not burn any error budget: every request valid.
      thresholds: { http_req_failed: ['rate==0'], checks: ['rate==1'] },
      summaryTrendStats: SUMMARY_TREND_STATS,
    };

function url(id, route) {
  return `${BASE_URL}/v1/users/${encodeURIComponent(assertDemoId(id))}/${route}`;
}

function params(route, extra = {}) {
  return { headers: HEADERS, tags: { name: route }, ...extra };
}

// The first season whose first user the agent does not know: exponential, then binary
// search (seasons are used in order), a few requests even after months of restarts.
function firstFreeSeason() {
  const known = (n) => {
    const res = http.get(url(userId(CFG, n, 0), 'kpis'), {
      ...params(ROUTES.kpis),
      responseCallback: http.expectedStatuses(200, 404),
    });
    if (res.status !== 200 && res.status !== 404) {
      throw new Error(
        `probing ${userId(CFG, n, 0)}: ${res.status} ${res.error || res.body}; the token ` +
          'needs kpis:read and readings:write for users demo-*',
      );
    }
    return res.status === 200;
  };
  if (!known(1)) return 1;
  let used = 1;
  let free = 2;
  while (known(free)) {
    used = free;
    free *= 2;
  }
  while (free - used > 1) {
    const mid = Math.floor((used + free) / 2);
    if (known(mid)) used = mid;
    else free = mid;
  }
  return free;
}

export function setup() {
  if (CFG.dryRun) return {};
  if (!TOKEN) {
    throw new Error(`no API token: set ${TOKEN_VARIABLE} or ${TOKEN_FILE_VARIABLE}`);
  }
  const first = CFG.firstSeason === 'auto' ? firstFreeSeason() : CFG.firstSeason;
  return { realStart: Date.now(), firstSeason: first };
}

function post(id, readings) {
  const fresh = readings.filter((r) => inThePast(Date.parse(r.recorded_at), Date.now()));
  readingsSkipped.add(readings.length - fresh.length);
  if (fresh.length === 0) return null;
  return {
    method: 'POST',
    url: url(id, 'readings'),
    body: JSON.stringify({ readings: fresh }),
    params: params(ROUTES.readings),
    count: fresh.length,
  };
}

function stored(res, count) {
  if (check(res, { 'reading stored: 201': (r) => r.status === 201 })) readingsSent.add(count);
}

// This VU's users of season `s`: every DEMO_VUS-th, from the VU's number on.
function myUsers(s) {
  const slot = (exec.vu.idInTest - 1) % CFG.vus;
  return people(CFG, s.label)
    .filter((person) => person.index % CFG.vus === slot)
    .map((person) => ({ person, day: 0, queue: dayReadings(CFG, s, person, 0) }));
}

function backfill(s, users) {
  const requests = [];
  for (const { person } of users) {
    for (const batch of backfillBatches(CFG, s, person)) {
      const request = post(person.id, batch.map((e) => e.reading));
      if (request) requests.push(request);
    }
  }
  if (requests.length === 0) return;
  http.batch(requests).forEach((res, i) => stored(res, requests[i].count));
}

// The user whose next reading comes first (refilling each queue a day at a time).
function earliest(s, users) {
  let next = null;
  for (const user of users) {
    if (user.queue.length === 0) {
      user.day += 1;
      user.queue = dayReadings(CFG, s, user.person, user.day);
    }
    if (next === null || user.queue[0].at < next.queue[0].at) next = user;
  }
  return next;
}

function send(user) {
  const event = user.queue.shift();
  const request = post(user.person.id, [event.reading]);
  if (request === null) return;
  stored(http.post(request.url, request.body, request.params), 1);
  if (event.readKpis) {
    const res = http.get(url(user.person.id, 'kpis'), params(ROUTES.kpis));
    check(res, { 'kpis read: 200': (r) => r.status === 200 });
  }
}

// Per VU: the season it is in and its users' queues.
let state = null;

function tick(data) {
  if (state === null) {
    state = { season: season(CFG, data.firstSeason, data.realStart), users: null };
  }
  while (Date.now() >= state.season.realEnd) {
    state.season = nextSeason(CFG, state.season);
    state.users = null;
  }
  const s = state.season;
  if (state.users === null) {
    state.users = myUsers(s);
    backfill(s, state.users);
  }
  let next = earliest(s, state.users);
  while (next.queue[0].at <= simAt(CFG, s, Date.now()) && Date.now() < s.realEnd) {
    send(next);
    next = earliest(s, state.users);
  }
  const wake = Math.min(dueAt(CFG, s, next.queue[0].at), s.realEnd);
  sleep(Math.max(0, Math.min(MAX_NAP_SECONDS, (wake - Date.now()) / 1000)));
}

export default function (data) {
  if (CFG.dryRun) {
    const start = CFG.now === undefined ? Date.now() : CFG.now;
    plan(CFG, start, durationMs(HOLD), (line) => console.log(JSON.stringify(line)));
    return;
  }
  tick(data);
}
