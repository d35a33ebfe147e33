// The demo's population and clock (k6/scenarios/demo.js, whose header documents the
// variables): who the synthetic users are, what they send on which simulated day, and
// how simulated time maps onto the real clock, season after season. Pure: no k6 import
// and no clock of its own (callers pass the real time), so a dry run plans exactly
// what a real run sends.
import { DAY_MS, dayOf, rrSeries, stream, traits } from './physiology.js';

// Every id the demo builds: `demo-s<season>-u<user>`, e.g. demo-s1-u001. The demo's
// token reaches `demo-*` only (scripts/setup.sh); the script checks every id too.
export const ID_PREFIX = 'demo-';
const DEMO_ID = /^demo-[A-Za-z0-9_-]{1,59}$/; // neuros/schemas.py USER_ID_PATTERN, within demo-

// A reading is sent only if its instant is at least this far behind the real clock
// (the agent refuses readings more than a day ahead of its clock: neuros/schemas.py
// MAX_CLOCK_SKEW; the demo never relies on that tolerance).
export const SAFETY_MARGIN_MS = 60 * 1000;

// Readings per backfill request: 14 days of one user (a morning and a night each).
export const BACKFILL_CHUNK_DAYS = 14;
// Share of morning readings followed by a read of the user's KPIs.
export const KPI_READ_SHARE = 0.1;

export const DEFAULTS = Object.freeze({
  DEMO_SEED: 20261214,
  DEMO_USERS: 40,
  DEMO_TIME_FACTOR: 1440,
  DEMO_BACKFILL_DAYS: 14,
  DEMO_SEASON_DAYS: 60,
  DEMO_ILLNESS_START_DAY: 2,
  DEMO_ILLNESS_DAYS: 4,
  DEMO_ILLNESS_SHARE: 0.4,
  DEMO_DRIFT_SHARE: 0.1,
  DEMO_VUS: 4,
});

const MAX_USERS = 9999;
const MAX_BACKFILL_DAYS = 366;

function raw(env, name) {
  const value = env[name];
  return value === undefined || value === '' ? undefined : String(value).trim();
}

function integer(env, name, min, max) {
  const value = raw(env, name);
  if (value === undefined) return DEFAULTS[name];
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    throw new Error(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return n;
}

function number(env, name, min, max) {
  const value = raw(env, name);
  if (value === undefined) return DEFAULTS[name];
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || n < min || n > max) {
    throw new Error(`${name} must be a number in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return n;
}

function flag(env, name) {
  const value = (raw(env, name) || '').toLowerCase();
  if (!['', '0', '1', 'false', 'true'].includes(value)) {
    throw new Error(`${name} must be 1 or 0, got ${JSON.stringify(env[name])}`);
  }
  return value === '1' || value === 'true';
}

const DURATION_PART = /(\d+)(ms|s|m|h)/g;
const DURATION = /^(\d+(ms|s|m|h))+$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000 };

// A k6 duration ("10m", "1h30m") in ms.
export function durationMs(text) {
  if (!DURATION.test(text)) throw new Error(`not a k6 duration: ${JSON.stringify(text)}`);
  let total = 0;
  for (const [, n, unit] of text.matchAll(DURATION_PART)) total += Number(n) * UNIT_MS[unit];
  return total;
}

// The demo's settings from `env` (k6's __ENV); throws on a malformed value.
export function config(env) {
  const cfg = {
    seed: integer(env, 'DEMO_SEED', 0, 2 ** 32 - 1),
    users: integer(env, 'DEMO_USERS', 1, MAX_USERS),
    factor: number(env, 'DEMO_TIME_FACTOR', 1, 1e9),
    backfillDays: integer(env, 'DEMO_BACKFILL_DAYS', 0, MAX_BACKFILL_DAYS),
    seasonDays: integer(env, 'DEMO_SEASON_DAYS', 1, 3650),
    illnessStart: integer(env, 'DEMO_ILLNESS_START_DAY', 0, 3650),
    illnessDays: integer(env, 'DEMO_ILLNESS_DAYS', 0, 3650),
    illnessShare: number(env, 'DEMO_ILLNESS_SHARE', 0, 1),
    driftShare: number(env, 'DEMO_DRIFT_SHARE', 0, 1),
    dryRun: flag(env, 'DEMO_DRY_RUN'),
  };
  if (cfg.illnessShare + cfg.driftShare > 1) {
    throw new Error('DEMO_ILLNESS_SHARE + DEMO_DRIFT_SHARE must not exceed 1');
  }
  cfg.vus = Math.min(cfg.users, integer(env, 'DEMO_VUS', 1, MAX_USERS));
  const first = raw(env, 'DEMO_FIRST_SEASON') || 'auto';
  if (first === 'auto') {
    cfg.firstSeason = cfg.dryRun ? 1 : 'auto';
  } else if (/^[1-9]\d{0,8}$/.test(first)) {
    cfg.firstSeason = Number(first);
  } else {
    throw new Error(
      `DEMO_FIRST_SEASON must be auto or an integer >= 1, got ${JSON.stringify(first)}`,
    );
  }
  const now = raw(env, 'DEMO_NOW');
  if (now !== undefined) {
    if (!cfg.dryRun) throw new Error('DEMO_NOW pins the clock of a dry run only (DEMO_DRY_RUN=1)');
    cfg.now = /^\d+$/.test(now) ? Number(now) : Date.parse(now);
    if (!Number.isFinite(cfg.now)) throw new Error(`DEMO_NOW is not an instant: ${now}`);
  }
  return cfg;
}

// --- ids and cohorts ----------------------------------------------------------------

export function assertDemoId(id) {
  if (typeof id !== 'string' || !DEMO_ID.test(id)) {
    throw new Error(`refusing user id ${JSON.stringify(id)}: the demo writes demo-* ids only`);
  }
  return id;
}

export function userId(cfg, season, index) {
  const width = Math.max(3, String(cfg.users).length);
  return assertDemoId(`${ID_PREFIX}s${season}-u${String(index + 1).padStart(width, '0')}`);
}

// Cohort of each user index of `season`: a seeded shuffle, then the first
// round(illnessShare x users) are the illness cohort, the next round(driftShare x
// users) drift into sleep debt, the rest are steady.
export function cohorts(cfg, season) {
  const rng = stream(cfg.seed, season, 0xc0407);
  const order = [...Array(cfg.users).keys()];
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const ill = Math.round(cfg.illnessShare * cfg.users);
  const drift = Math.min(cfg.users - ill, Math.round(cfg.driftShare * cfg.users));
  const out = new Array(cfg.users).fill('steady');
  order.forEach((user, rank) => {
    if (rank < ill) out[user] = 'illness';
    else if (rank < ill + drift) out[user] = 'drift';
  });
  return out;
}

export function people(cfg, season) {
  return cohorts(cfg, season).map((cohort, index) => ({
    index,
    id: userId(cfg, season, index),
    traits: traits(cfg.seed, season, index, cohort),
  }));
}

// --- the clock ----------------------------------------------------------------------

function utcMidnight(ms) {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

// Season `label` starting at real instant `realStart` (ms): its time-lapse starts at
// the UTC midnight seasonDays before that day (simStart) and simulated time runs at
// `factor` x real time, sim(t) = simStart + factor x (t - realStart). It ends (realEnd)
// when sim(t) would come within SAFETY_MARGIN_MS of the real clock:
// realEnd = realStart + (realStart - SAFETY_MARGIN_MS - simStart) / (factor - 1);
// never, at factor 1.
export function season(cfg, label, realStart) {
  const simStart = utcMidnight(realStart) - cfg.seasonDays * DAY_MS;
  const lead = realStart - SAFETY_MARGIN_MS - simStart;
  const realEnd = cfg.factor > 1 ? realStart + lead / (cfg.factor - 1) : Infinity;
  return { label, realStart, simStart, realEnd };
}

export function nextSeason(cfg, s) {
  return season(cfg, s.label + 1, s.realEnd);
}

export function simAt(cfg, s, realMs) {
  return s.simStart + cfg.factor * (realMs - s.realStart);
}

// The real instant at which simulated instant `simMs` of season `s` comes due.
export function dueAt(cfg, s, simMs) {
  return s.realStart + (simMs - s.simStart) / cfg.factor;
}

// --- what a user sends --------------------------------------------------------------

// RFC 3339 in the person's own offset, e.g. 2026-10-05T06:40:00+02:00 (whole seconds).
export function rfc3339(epochMs, offsetMin) {
  const local = new Date(epochMs + offsetMin * 60000).toISOString().slice(0, 19);
  if (offsetMin === 0) return `${local}Z`;
  const abs = Math.abs(offsetMin);
  const hh = String(Math.floor(abs / 60)).padStart(2, '0');
  const mm = String(abs % 60).padStart(2, '0');
  return `${local}${offsetMin < 0 ? '-' : '+'}${hh}:${mm}`;
}

// The two readings of `person` on day `day` of season `s` (0 = the time-lapse's first;
// negative: backfill): the night's sleep when they wake, and ten minutes later the
// morning recording (5-minute RR series and resting HR). Each is { kind, at (sim ms),
// reading (the API's body item), truth (what the physiology intended) }.
export function dayReadings(cfg, s, person, day) {
  const dayMs = s.simStart + day * DAY_MS;
  const ctx = {
    seed: cfg.seed,
    season: s.label,
    user: person.index,
    day,
    illness: { start: cfg.illnessStart, days: cfg.illnessDays },
    driftDays: day + cfg.backfillDays,
  };
  const p = dayOf(person.traits, dayMs, ctx);
  const wake = dayMs + (person.traits.wake_minute_utc + p.wake_jitter_min) * 60000;
  const offset = person.traits.utc_offset_min;
  const morning = wake + 10 * 60000;
  const rr = rrSeries(p.resting_hr_bpm, p.rmssd_ms, [cfg.seed, s.label, person.index, day]);
  const readKpis = stream(cfg.seed, s.label, person.index, day, 4)() < KPI_READ_SHARE;
  const truth = {
    day,
    illness: p.illness,
    after_training: p.after_training,
    rmssd_expected_ms: p.rmssd_expected_ms,
  };
  return [
    {
      kind: 'sleep',
      at: wake,
      reading: { recorded_at: rfc3339(wake, offset), sleep_hours: p.sleep_hours },
      truth,
      readKpis: false,
    },
    {
      kind: 'morning',
      at: morning,
      reading: {
        recorded_at: rfc3339(morning, offset),
        rr_intervals_ms: rr,
        resting_hr_bpm: p.resting_hr_bpm,
      },
      truth: { ...truth, rmssd_ms: p.rmssd_ms },
      readKpis,
    },
  ];
}

// The backfill of `person` in season `s`: days -backfillDays..-1, as request bodies of
// at most BACKFILL_CHUNK_DAYS days each, oldest first.
export function backfillBatches(cfg, s, person) {
  const batches = [];
  for (let first = -cfg.backfillDays; first < 0; first += BACKFILL_CHUNK_DAYS) {
    const events = [];
    for (let day = first; day < Math.min(0, first + BACKFILL_CHUNK_DAYS); day++) {
      events.push(...dayReadings(cfg, s, person, day));
    }
    batches.push(events);
  }
  return batches;
}

// Whether an instant may be sent now: at least SAFETY_MARGIN_MS behind the clock.
export function inThePast(atMs, nowMs) {
  return atMs <= nowMs - SAFETY_MARGIN_MS;
}

// --- the plan of a dry run ----------------------------------------------------------

// Everything a run starting at `realStart` for `holdMs` sends, in order of sending:
// per season a line describing it, a line per user, the backfill (sent at the
// season's start) and the time-lapse readings (each sent when due, until the season
// ends or the hold does). `emit` gets one object per line.
export function plan(cfg, realStart, holdMs, emit) {
  const stop = realStart + holdMs;
  let s = season(cfg, cfg.firstSeason, realStart);
  for (; s.realStart < stop; s = nextSeason(cfg, s)) {
    emit({
      type: 'season',
      season: s.label,
      real_start: new Date(s.realStart).toISOString(),
      sim_start: new Date(s.simStart).toISOString(),
      real_end: Number.isFinite(s.realEnd) ? new Date(s.realEnd).toISOString() : null,
      time_factor: cfg.factor,
    });
    const everyone = people(cfg, s.label);
    for (const person of everyone) {
      emit({ type: 'user', season: s.label, user: person.id, ...person.traits });
    }
    const line = (person, event, sendAt) => ({
      type: 'reading',
      season: s.label,
      user: person.id,
      cohort: person.traits.cohort,
      kind: event.kind,
      send_at: new Date(sendAt).toISOString(),
      read_kpis: event.readKpis,
      truth: event.truth,
      reading: event.reading,
    });
    for (const person of everyone) {
      for (const batch of backfillBatches(cfg, s, person)) {
        for (const event of batch) emit(line(person, event, s.realStart));
      }
    }
    const end = Math.min(stop, s.realEnd);
    const due = [];
    for (const person of everyone) {
      for (let day = 0; dueAt(cfg, s, s.simStart + day * DAY_MS) < end; day++) {
        for (const event of dayReadings(cfg, s, person, day)) {
          const sendAt = dueAt(cfg, s, event.at);
          if (sendAt < end) due.push([sendAt, person.index, event, person]);
        }
      }
    }
    due.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (const [sendAt, , event, person] of due) emit(line(person, event, sendAt));
  }
}
