// Ingest throughput benchmark: POST /v1/users/{user_id}/readings, nothing else.
//
// Run by scripts/bench-agent.sh (stacktools/bench/agent.py); by hand, with the token in
// the environment (export NEUROS_API_TOKEN="$(cat secrets/neuros-admin-token)"):
//   k6 run -e BASE_URL=http://127.0.0.1:8000 -e VUS=16 -e DURATION=20s k6/bench/ingest.js
//   k6 run -e RATE=400 -e DURATION=20s k6/bench/ingest.js      # open model
//
// Environment (DURATION, VUS, RATE, PRE_VUS and MAX_VUS are read by common.js):
//   BASE_URL    agent URL (default http://127.0.0.1:8000)
//   NEUROS_API_TOKEN  API token sent with every request (required)
//   DURATION    how long (default 20s)
//   VUS         closed loop: virtual users, each sending back to back (default 16)
//   RATE        open model instead: requests started per second, whatever the
//               latency (constant-arrival-rate); iterations that find no free VU
//               are counted in dropped_iterations
//   PRE_VUS     with RATE: VUs allocated up front (default RATE / 2, at least 16)
//   MAX_VUS     with RATE: most VUs ever running (default RATE, at least PRE_VUS)
//   SEQ_OFFSET  first sequence number; runs against one database use disjoint
//               ranges so that every recorded_at is new (default 0)
//
// Each request carries one reading with 300 RR intervals. Request n (n unique per
// run: the scenario's iteration number across all VUs) goes to user n mod 500 and is
// recorded at 2025-01-01 + n seconds, so a user gets a new reading every 500 recorded
// seconds and nothing is ever replaced. Timestamps stay in the past (the agent
// refuses readings from the future) as long as SEQ_OFFSET plus the request count
// stays under MAX_SEQ (about a year).
// Bodies are deterministic: the RR series come from a fixed-seed generator.

import http from 'k6/http';
import exec from 'k6/execution';
import { check } from 'k6';
import { benchScenario, headers, requireToken, rrSeries as buildRrSeries } from './common.js';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const SEQ_OFFSET = parseInt(__ENV.SEQ_OFFSET || '0', 10);

const USERS = 500;
const RR_PER_READING = 300;
const RR_SERIES = 64;
const BASE_MS = Date.UTC(2025, 0, 1);
const MAX_SEQ = 31000000;
if (SEQ_OFFSET < 0 || SEQ_OFFSET >= MAX_SEQ) {
  throw new Error(`SEQ_OFFSET must be in [0, ${MAX_SEQ}), got ${SEQ_OFFSET}`);
}

export const options = {
  scenarios: { ingest: benchScenario() },
  // Only the status is checked: do not spend load-generator CPU on bodies.
  discardResponseBodies: true,
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    // A benchmark whose requests fail measures nothing: make it visible.
    checks: ['rate==1'],
  },
};

const rrs = buildRrSeries(RR_SERIES, RR_PER_READING);

const userIds = [];
for (let u = 0; u < USERS; u++) {
  userIds.push(`bench-user-${String(u).padStart(3, '0')}`);
}

const params = {
  headers: headers(),
  tags: { name: 'POST /v1/users/{user_id}/readings' },
};

export function setup() {
  requireToken();
}

export default function () {
  // Unique across VUs within the run, in both executors.
  const seq = (SEQ_OFFSET + exec.scenario.iterationInTest) % MAX_SEQ;
  const user = userIds[seq % USERS];
  const recordedAt = new Date(BASE_MS + seq * 1000).toISOString();
  const restingHr = 50 + (seq % 17);
  const sleepHours = 5 + (seq % 7) * 0.5;
  const body =
    `{"readings":[{"recorded_at":"${recordedAt}",` +
    `"rr_intervals_ms":${rrs[seq % RR_SERIES]},` +
    `"resting_hr_bpm":${restingHr},"sleep_hours":${sleepHours}}]}`;

  const res = http.post(`${BASE_URL}/v1/users/${user}/readings`, body, params);
  check(res, { 'status is 201': (r) => r.status === 201 });
}
