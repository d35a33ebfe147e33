// Ingest plus KPI reads for users that already have a history.
//
// Run by scripts/bench-agent.sh (stacktools/bench/agent.py) for (c), a database with
// years of history against one with only the last 15 days, and (d), users with 288
// readings a day against users with one. The driver seeds the users first; this
// script only adds to them. By hand, after seeding (and with NEUROS_API_TOKEN set):
//   k6 run -e USER_PREFIX=hist- -e USERS=200 -e BASE_MS=1704067200000 \
//          -e STEP_MS=86400000 -e RATE=200 -e DURATION=20s k6/bench/user_mix.js
//
// Environment (DURATION, VUS, RATE, PRE_VUS and MAX_VUS are read by common.js):
//   BASE_URL     agent URL (default http://127.0.0.1:8000)
//   NEUROS_API_TOKEN  API token sent with every request (required)
//   DURATION     how long (default 20s)
//   USER_PREFIX  user ids are USER_PREFIX + index on 3 digits (default bench-mix-)
//   USERS        how many users, index 0 to USERS - 1 (default 200)
//   BASE_MS      epoch ms of the users' newest seeded reading (default 2024-01-01)
//   STEP_MS      time between a user's readings: new readings keep the seeded
//                cadence, so the user's KPI window keeps its size (default 1 day)
//   VUS          closed loop: virtual users, each sending back to back (default 16)
//   RATE         open model instead: requests started per second (constant-arrival-rate)
//   PRE_VUS      with RATE: VUs allocated up front (default RATE / 2, at least 16)
//   MAX_VUS      with RATE: most VUs ever running (default RATE, at least PRE_VUS)
//   SEQ_OFFSET   first request number; a second run against the same database starts
//                past the first one's requests so that no reading is replaced (default 0)
//
// Request n (unique per run: the scenario's iteration number across all VUs) is, for
// even n, an ingest of one reading (300 RR intervals) and, for odd n, a KPI read, both
// for user (n div 2) mod USERS. The user's i-th new reading, i = n div (2 USERS), is
// recorded at BASE_MS + (i + 1) STEP_MS: always the user's latest instant. The driver
// checks that these instants stay in the past.

import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { benchScenario, headers, requireToken, rrSeries as buildRrSeries } from './common.js';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const SEQ_OFFSET = parseInt(__ENV.SEQ_OFFSET || '0', 10);
const USER_PREFIX = __ENV.USER_PREFIX || 'bench-mix-';
const USERS = parseInt(__ENV.USERS || '200', 10);
const BASE_MS = parseInt(__ENV.BASE_MS || String(Date.UTC(2024, 0, 1)), 10);
const STEP_MS = parseInt(__ENV.STEP_MS || '86400000', 10);

const RR_PER_READING = 300;
const RR_SERIES = 64;
if (!(USERS > 0 && STEP_MS > 0 && SEQ_OFFSET >= 0)) {
  throw new Error('USERS and STEP_MS must be positive, SEQ_OFFSET not negative');
}

export const options = {
  scenarios: { mix: benchScenario() },
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    checks: ['rate==1'],
    // Always true: they only make the summary export carry each operation's latency.
    'http_req_duration{op:ingest}': ['max>=0'],
    'http_req_duration{op:kpis}': ['max>=0'],
  },
};

const rrs = buildRrSeries(RR_SERIES, RR_PER_READING);

const userIds = [];
for (let u = 0; u < USERS; u++) {
  userIds.push(`${USER_PREFIX}${String(u).padStart(3, '0')}`);
}

const ingestParams = {
  headers: headers(),
  tags: { name: 'POST /v1/users/{user_id}/readings', op: 'ingest' },
};
const kpisParams = {
  headers: headers(false),
  tags: { name: 'GET /v1/users/{user_id}/kpis', op: 'kpis' },
};

export function setup() {
  requireToken();
}

export default function () {
  const n = SEQ_OFFSET + exec.scenario.iterationInTest;
  const pair = Math.floor(n / 2);
  const user = userIds[pair % USERS];
  if (n % 2 === 1) {
    const res = http.get(`${BASE_URL}/v1/users/${user}/kpis`, kpisParams);
    check(res, { 'kpis status is 200': (r) => r.status === 200 });
    return;
  }
  const i = Math.floor(pair / USERS);
  const recordedAt = new Date(BASE_MS + (i + 1) * STEP_MS).toISOString();
  const body =
    `{"readings":[{"recorded_at":"${recordedAt}",` +
    `"rr_intervals_ms":${rrs[pair % RR_SERIES]},` +
    `"resting_hr_bpm":${50 + (pair % 17)},"sleep_hours":${5 + (pair % 7) * 0.5}}]}`;
  const res = http.post(`${BASE_URL}/v1/users/${user}/readings`, body, ingestParams);
  check(res, { 'ingest status is 201': (r) => r.status === 201 });
}
