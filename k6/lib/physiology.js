// The demo's physiology (k6/scenarios/demo.js): one synthetic person's traits, their
// day (HRV, resting HR, sleep) and the 5-minute RR series of a morning recording.
// Pure functions of their arguments and of seeded random streams (no k6 import, no
// clock), so a seed always gives the same people and the same days.
import { mulberry32 } from './prng.js';

export const DAY_MS = 24 * 3600 * 1000;

// RR intervals the agent accepts (neuros/schemas.py RrInterval).
export const RR_MIN_MS = 250;
export const RR_MAX_MS = 2500;

// A morning recording: five minutes at rest, so about 5 x HR intervals.
export const RECORDING_SECONDS = 300;

// Harder training days, by UTC weekday (0 = Sunday): they lower the next morning's
// HRV and raise its resting HR. The morning after a rest day is a little better.
export const TRAINING_WEEKDAYS = Object.freeze([2, 4, 6]); // Tue, Thu, Sat
const REST_BONUS = 0.03;

// Day-to-day noise: lnRMSSD sd, resting HR sd (bpm), sleep sd (h).
const HRV_LOG_SD = 0.06;
const RHR_SD_BPM = 1.2;
const SLEEP_SD_H = 0.45;
// People sleep a little more than they need on average (need + this).
const SLEEP_SURPLUS_H = 0.25;
// Illness: fragmented nights cost this much sleep; recovery takes this many days.
const ILLNESS_SLEEP_LOSS_H = 2.0;
export const RECOVERY_DAYS = 2;
// Sleep drift: at most this much below one's need.
const MAX_DRIFT_H = 3.0;

// --- seeded streams -----------------------------------------------------------------

// murmur3's finaliser over a list of 32-bit keys: one well-mixed 32-bit seed per tuple
// (seed, season, user, day, purpose), so any day of anyone can be computed on its own,
// in any order, on any VU.
export function mixSeed(...keys) {
  let h = 0x811c9dc5;
  for (const key of keys) {
    h = Math.imul(h ^ (key >>> 0), 0x85ebca6b) >>> 0;
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35) >>> 0;
    h ^= h >>> 16;
  }
  return h >>> 0;
}

export function stream(...keys) {
  return mulberry32(mixSeed(...keys));
}

// Standard normal (Box-Muller; 1 - u keeps log's argument in (0, 1]).
export function gaussian(rng) {
  const u = 1 - rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));
const uniform = (rng, lo, hi) => lo + (hi - lo) * rng();
const round = (x, decimals) => Math.round(x * 10 ** decimals) / 10 ** decimals;

// Purposes of the streams (the last key of each tuple).
const TRAITS = 1;
const DAY_NOISE = 2;
const RR_NOISE = 3;

// --- traits -------------------------------------------------------------------------

// Where someone lives: the UTC minute they wake at, spread over the whole day so that
// the population's readings are too (20 min of jitter and the 10 min to the morning
// recording keep both readings in that UTC day, the agent's unit), and the whole-hour
// UTC offset that makes it about 06:00-07:30 their time; readings carry that offset,
// as a device would send them.
function home(rng) {
  const wake = Math.round(uniform(rng, 40, 1390));
  let offsetHours = Math.round((uniform(rng, 6 * 60, 7.5 * 60) - wake) / 60);
  if (offsetHours < -12) offsetHours += 24;
  if (offsetHours > 14) offsetHours -= 24;
  return { wake_minute_utc: wake, utc_offset_min: offsetHours * 60 };
}

// One person: `cohort` is 'steady', 'illness' or 'drift'. RMSSD ~ lognormal (median
// 48 ms) clamped to 25-100 ms; resting HR 48-72 bpm, lower with higher HRV; sleep
// need 7.5-8.5 h; how hard training hits them; for the illness cohort the episode's
// HRV drop (25-35 %) and resting-HR rise (+5-10 bpm); for drifters the nightly sleep
// lost per day (h/day).
export function traits(seed, season, user, cohort) {
  const rng = stream(seed, season, user, TRAITS);
  const z = gaussian(rng);
  const rmssd = clamp(48 * Math.exp(0.35 * z), 25, 100);
  const rhr = clamp(60 - 4 * z + 3 * gaussian(rng), 48, 72);
  return {
    cohort,
    rmssd_ms: round(rmssd, 1),
    resting_hr_bpm: round(rhr, 1),
    sleep_need_h: round(uniform(rng, 7.5, 8.5), 2),
    ...home(rng),
    training_hrv_drop: round(uniform(rng, 0.06, 0.12), 3),
    training_rhr_rise_bpm: round(uniform(rng, 1, 3), 1),
    illness_hrv_drop: round(uniform(rng, 0.25, 0.35), 3),
    illness_rhr_rise_bpm: round(uniform(rng, 5, 10), 1),
    drift_h_per_day: round(uniform(rng, 0.05, 0.08), 3),
  };
}

// --- one day ------------------------------------------------------------------------

// Mean factor of the weekly rhythm on the morning HRV (a drop after each training day,
// REST_BONUS after the others): illness applies to this usual level, so its drop is
// measured against what the person usually has, not against a rested morning.
export function weeklyHrvFactor(t) {
  const hard = TRAINING_WEEKDAYS.length;
  return (hard * (1 - t.training_hrv_drop) + (7 - hard) * (1 + REST_BONUS)) / 7;
}

// Likewise the weekly mean of the resting-HR shift (training days raise the next
// morning's): illness raises resting HR above this usual level.
export function weeklyRhrShift(t) {
  return (TRAINING_WEEKDAYS.length * t.training_rhr_rise_bpm) / 7;
}

export function isTrainingDay(epochMs) {
  return TRAINING_WEEKDAYS.includes(new Date(epochMs).getUTCDay());
}

// Illness share of day `day` (days of the time-lapse, 0 = its first): 1 during the
// episode [start, start + days), then a linear recovery over RECOVERY_DAYS, else 0.
export function illnessLevel(day, start, days) {
  if (day < start) return 0;
  if (day < start + days) return 1;
  const after = day - (start + days) + 1;
  return after <= RECOVERY_DAYS ? 1 - after / (RECOVERY_DAYS + 1) : 0;
}

// The morning of UTC day `dayMs` (its midnight) for person `t`: expected and drawn
// RMSSD, resting HR and the hours slept the night before. `ctx`: seed, season, user,
// day (index in the time-lapse; negative: backfill), illness {start, days} and
// driftDays (days since the drift began).
export function dayOf(t, dayMs, ctx) {
  const rng = stream(ctx.seed, ctx.season, ctx.user, ctx.day, DAY_NOISE);
  const afterTraining = isTrainingDay(dayMs - DAY_MS);
  let hrvFactor = afterTraining ? 1 - t.training_hrv_drop : 1 + REST_BONUS;
  let rhrShift = afterTraining ? t.training_rhr_rise_bpm : 0;
  let sleepShift = SLEEP_SURPLUS_H;
  const { start, days } = ctx.illness;
  const ill = t.cohort === 'illness' ? illnessLevel(ctx.day, start, days) : 0;
  if (ill > 0) {
    // Ill people do not train: the drop applies to their usual (weekly mean) level.
    const illFactor = weeklyHrvFactor(t) * (1 - t.illness_hrv_drop);
    hrvFactor = ill * illFactor + (1 - ill) * hrvFactor;
    rhrShift = ill * (weeklyRhrShift(t) + t.illness_rhr_rise_bpm) + (1 - ill) * rhrShift;
    sleepShift -= ill * ILLNESS_SLEEP_LOSS_H;
  }
  if (t.cohort === 'drift') {
    sleepShift -= Math.min(MAX_DRIFT_H, t.drift_h_per_day * Math.max(0, ctx.driftDays));
  }
  const rmssdExpected = t.rmssd_ms * hrvFactor;
  return {
    illness: ill,
    after_training: afterTraining,
    rmssd_expected_ms: round(rmssdExpected, 2),
    rmssd_ms: round(rmssdExpected * Math.exp(HRV_LOG_SD * gaussian(rng)), 2),
    resting_hr_bpm: Math.round(t.resting_hr_bpm + rhrShift + RHR_SD_BPM * gaussian(rng)),
    sleep_hours: round(clamp(t.sleep_need_h + sleepShift + SLEEP_SD_H * gaussian(rng), 3, 11), 2),
    // Minutes after the person's usual wake time, so the readings do not tick in step.
    wake_jitter_min: Math.round(uniform(rng, -20, 20)),
  };
}

// --- the RR series ------------------------------------------------------------------

function mssdRoot(xs) {
  let sum = 0;
  for (let i = 1; i < xs.length; i++) sum += (xs[i] - xs[i - 1]) ** 2;
  return Math.sqrt(sum / (xs.length - 1));
}

// A 5-minute RR series (whole ms) at heart rate `hrBpm` whose RMSSD is `rmssdMs`:
// mean RR 60000 / HR; around it a respiratory oscillation (12-16 breaths/min, half
// the successive-difference power), iid beat-to-beat noise (the other half; iid noise
// of sd s gives RMSSD s * sqrt(2)) and a slow wander that barely moves successive
// differences. The deviations are then centred and scaled so that their RMSSD is the
// target exactly; rounding to whole ms and the [250, 2500] clamp move it by well under 1 %.
export function rrSeries(hrBpm, rmssdMs, keys, seconds = RECORDING_SECONDS) {
  const rng = stream(...keys, RR_NOISE);
  const meanRr = 60000 / hrBpm;
  const n = Math.max(2, Math.round((seconds * 1000) / meanRr));
  const breathMs = 60000 / uniform(rng, 12, 16);
  const step = (2 * Math.PI * meanRr) / breathMs;
  const phase = uniform(rng, 0, 2 * Math.PI);
  // Equal shares: a sinusoid of amplitude 1 has mean square successive difference
  // 2 sin^2(step / 2); iid noise of sd s has 2 s^2.
  const noiseSd = Math.abs(Math.sin(step / 2));
  const deviations = [];
  let wander = 0;
  for (let i = 0; i < n; i++) {
    wander = 0.98 * wander + 0.2 * noiseSd * gaussian(rng);
    deviations.push(Math.sin(phase + i * step) + noiseSd * gaussian(rng) + wander);
  }
  // Centred, so that the series' mean RR is the day's heart rate.
  const mean = deviations.reduce((a, b) => a + b, 0) / n;
  const scale = rmssdMs / mssdRoot(deviations);
  return deviations.map((d) =>
    clamp(Math.round(meanRr + scale * (d - mean)), RR_MIN_MS, RR_MAX_MS),
  );
}
