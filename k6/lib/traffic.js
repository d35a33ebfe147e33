// The traffic mix: readings ingest, KPI reads, analyze calls and a share of invalid
// requests that must be refused with a 4xx. Every choice of iteration n comes from
// streamFor(SEED, n), so a run replays the same requests in the same order.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { API_TOKEN, BASE_URL, requireToken } from './config.js';
import { KINDS, MIX } from './mix.js';
import { SEED, userIds } from './population.js';
import { pick, pickFloat, pickInt, streamFor } from './prng.js';

// Route templates as `name` tags: one time series per route, not one per user
// (stacktools/generate/k6_thresholds.py reads this block to validate `name` selectors).
export const ROUTES = Object.freeze({
  readings: 'POST /v1/users/{user_id}/readings',
  kpis: 'GET /v1/users/{user_id}/kpis',
  analyze: 'POST /v1/users/{user_id}/analyze',
});

const USERS = userIds();
// Every request of the mix carries the token: the invalid cases are refused for their
// payload (422) or user (404), not for a missing credential.
const JSON_HEADERS = Object.freeze({
  'Content-Type': 'application/json',
  Authorization: `Bearer ${API_TOKEN}`,
});
const DAY_MS = 24 * 3600 * 1000;
const OFFSETS_MIN = [0, 60, 120, -300, -420, 330, 540, 600];
const READINESS = ['high', 'moderate', 'low'];
const RECOMMENDATIONS = ['rest', 'active_recovery', 'train_as_planned', 'prioritise_sleep'];

// RFC 3339 with the given UTC offset, e.g. 2026-03-01T07:00:00.000+01:00.
export function rfc3339(epochMs, offsetMin) {
  const local = new Date(epochMs + offsetMin * 60000).toISOString().slice(0, -1);
  if (offsetMin === 0) return `${local}Z`;
  const abs = Math.abs(offsetMin);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  return `${local}${offsetMin < 0 ? '-' : '+'}${hh}:${mm}`;
}

// A morning recording: 1 to 4 minutes of RR intervals around a resting heart rate.
function rrIntervals(rng) {
  const base = pickFloat(rng, 750, 1150, 0); // 52 to 80 bpm
  const out = [];
  for (let i = pickInt(rng, 60, 240); i > 0; i--) out.push(pickFloat(rng, base - 60, base + 60, 1));
  return out;
}

function reading(rng, epochMs) {
  const body = {
    recorded_at: rfc3339(epochMs, pick(rng, OFFSETS_MIN)),
    rr_intervals_ms: rrIntervals(rng),
    resting_hr_bpm: pickFloat(rng, 45, 80, 0),
    sleep_hours: pickFloat(rng, 4.5, 9.5, 1),
  };
  if (rng() < 0.3) body.hrv_rmssd_ms = pickFloat(rng, 20, 120, 1);
  return body;
}

function params(kind, route, extra = {}) {
  return { headers: JSON_HEADERS, tags: { name: route, kind }, ...extra };
}

const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const numberOrNull = (v) => v === null || isNumber(v);

function json(res) {
  try {
    return res.json();
  } catch (_) {
    return undefined;
  }
}

function validKpis(k) {
  return (
    k !== null &&
    typeof k === 'object' &&
    isNumber(k.recovery_score) &&
    k.recovery_score >= 0 &&
    k.recovery_score <= 100 &&
    isNumber(k.sleep_debt_hours) &&
    k.sleep_debt_hours >= 0 &&
    READINESS.includes(k.readiness) &&
    ['hrv_rmssd_ms', 'hrv_baseline_ms', 'hrv_deviation_pct', 'resting_hr_bpm',
      'resting_hr_baseline_bpm'].every((f) => f in k && numberOrNull(k[f])) &&
    !Number.isNaN(Date.parse(k.as_of))
  );
}

// A week of daily summaries per user, so that every KPI read and analyze call finds
// data (200, not 404) from the first iteration on, and baselines exist.
export function seedUsers(chunk = 25) {
  const now = Date.now();
  for (let start = 0; start < USERS.length; start += chunk) {
    const requests = USERS.slice(start, start + chunk).map((user, i) => {
      const rng = streamFor(SEED ^ 0x5eed, start + i);
      const readings = [];
      for (let day = 7; day >= 0; day--) {
        readings.push({
          recorded_at: rfc3339(now - day * DAY_MS - 3600 * 1000, pick(rng, OFFSETS_MIN)),
          hrv_rmssd_ms: pickFloat(rng, 25, 110, 1),
          resting_hr_bpm: pickFloat(rng, 45, 75, 0),
          sleep_hours: pickFloat(rng, 5.5, 9, 1),
        });
      }
      return {
        method: 'POST',
        url: `${BASE_URL}/v1/users/${user}/readings`,
        body: JSON.stringify({ readings }),
        params: params(KINDS.SEED, ROUTES.readings),
      };
    });
    http.batch(requests).forEach((res, i) => {
      const ok = check(res, { 'seed: status 201': (r) => r.status === 201 }, { kind: KINDS.SEED });
      if (!ok) {
        throw new Error(`seeding ${USERS[start + i]} failed: ${res.status} ${res.error || ''}`);
      }
    });
  }
  return { users: USERS.length };
}

function ingest(rng, user) {
  const now = Date.now();
  const readings = [];
  for (let n = pickInt(rng, 1, 3); n > 0; n--) {
    readings.push(reading(rng, now - pickInt(rng, 60, 7 * 24 * 3600) * 1000));
  }
  const res = http.post(
    `${BASE_URL}/v1/users/${user}/readings`,
    JSON.stringify({ readings }),
    params(KINDS.INGEST, ROUTES.readings),
  );
  const body = json(res);
  check(
    res,
    {
      'ingest: status 201': (r) => r.status === 201,
      'ingest: all readings accepted': () => body !== undefined && body.accepted === readings.length,
      'ingest: KPIs present and numeric': () => body !== undefined && validKpis(body.kpis),
    },
    { kind: KINDS.INGEST },
  );
}

function read(user) {
  const res = http.get(`${BASE_URL}/v1/users/${user}/kpis`, params(KINDS.READ, ROUTES.kpis));
  const body = json(res);
  check(
    res,
    {
      'read: status 200': (r) => r.status === 200,
      'read: KPIs present and numeric': () => body !== undefined && validKpis(body),
    },
    { kind: KINDS.READ },
  );
}

function analyze(user) {
  const res = http.post(
    `${BASE_URL}/v1/users/${user}/analyze`,
    null,
    params(KINDS.ANALYZE, ROUTES.analyze),
  );
  const body = json(res);
  check(
    res,
    {
      'analyze: status 200': (r) => r.status === 200,
      'analyze: advice present': () =>
        body !== undefined &&
        RECOMMENDATIONS.includes(body.recommendation) &&
        Array.isArray(body.reasons) &&
        body.reasons.length > 0 &&
        body.reasons.every((s) => typeof s === 'string' && s.length > 0) &&
        validKpis(body.kpis),
    },
    { kind: KINDS.ANALYZE },
  );
}

// Each invalid case: the request, the status it must get and what the body must name.
const INVALID_CASES = Object.freeze([
  {
    case: 'out_of_range',
    status: 422,
    send: (rng, user) => {
      const r = reading(rng, Date.now() - 3600 * 1000);
      r.resting_hr_bpm = pickInt(rng, 251, 400);
      return postReadings(user, JSON.stringify({ readings: [r] }));
    },
    field: 'resting_hr_bpm',
  },
  {
    case: 'missing_field',
    status: 422,
    send: (rng, user) => {
      const r = reading(rng, Date.now() - 3600 * 1000);
      delete r.recorded_at;
      return postReadings(user, JSON.stringify({ readings: [r] }));
    },
    field: 'recorded_at',
  },
  {
    case: 'future_timestamp',
    status: 422,
    send: (rng, user) =>
      postReadings(user, JSON.stringify({ readings: [reading(rng, Date.now() + 3 * DAY_MS)] })),
    field: 'recorded_at',
  },
  {
    case: 'malformed_json',
    status: 422,
    send: (rng, user) => {
      const text = JSON.stringify({ readings: [reading(rng, Date.now() - 3600 * 1000)] });
      return postReadings(user, text.slice(0, pickInt(rng, 1, text.length - 1)));
    },
    type: 'json_invalid',
  },
  {
    case: 'unknown_user',
    status: 404,
    send: (rng) =>
      http.get(
        `${BASE_URL}/v1/users/k6-unknown-${pickInt(rng, 1, 1e9)}/kpis`,
        params(KINDS.INVALID, ROUTES.kpis, { responseCallback: http.expectedStatuses(404) }),
      ),
  },
]);

function postReadings(user, body) {
  return http.post(
    `${BASE_URL}/v1/users/${user}/readings`,
    body,
    params(KINDS.INVALID, ROUTES.readings, { responseCallback: http.expectedStatuses(422) }),
  );
}

function invalid(rng, user, c = pick(rng, INVALID_CASES)) {
  const res = c.send(rng, user);
  const body = json(res);
  const detail = body === undefined ? undefined : body.detail;
  check(
    res,
    {
      [`invalid ${c.case}: status ${c.status}`]: (r) => r.status === c.status,
      [`invalid ${c.case}: error detail names the problem`]: () => {
        if (c.field) {
          return Array.isArray(detail) && detail.some((d) => d.loc.includes(c.field));
        }
        if (c.type) return Array.isArray(detail) && detail.some((d) => d.type === c.type);
        return typeof detail === 'string' && detail.length > 0;
      },
    },
    { kind: KINDS.INVALID },
  );
}

// Each invalid case once, from setup(): every run checks all of them, whatever share of
// the mix happens to draw.
export function probeInvalidCases() {
  const rng = streamFor(SEED ^ 0xbad, 0);
  INVALID_CASES.forEach((c) => invalid(rng, USERS[0], c));
}

// setup() of every scenario: check the token, seed the population, then probe the
// invalid cases.
export function prepare() {
  requireToken();
  const seeded = seedUsers();
  probeInvalidCases();
  return seeded;
}

export function kindOf(roll) {
  let acc = 0;
  for (const [kind, weight] of MIX) {
    acc += weight;
    if (roll * 100 < acc) return kind;
  }
  return MIX[MIX.length - 1][0];
}

// One iteration = one request of the mix.
export function iteration() {
  const rng = streamFor(SEED, exec.scenario.iterationInTest);
  const kind = kindOf(rng());
  const user = pick(rng, USERS);
  if (kind === KINDS.INGEST) ingest(rng, user);
  else if (kind === KINDS.READ) read(user);
  else if (kind === KINDS.ANALYZE) analyze(user);
  else invalid(rng, user);
}
