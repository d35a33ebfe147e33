// What the scenarios share: the VU code (setup() seeds the population, each iteration
// sends one request of the mix), the env knobs they have in common and a builder for
// their options: one arrival-rate scenario, the SLO as its thresholds. A scenario file
// re-exports `setup` and `default`, reads its knobs with the env* helpers below (the
// defaults are its own) and builds `options`; its header documents the knobs.
import { SUMMARY_TREND_STATS, envDuration, envInt, sloThresholds, vus } from './config.js';
import { iteration, prepare } from './traffic.js';

// Resolved like the scenarios' own '../lib/slo.json' used to be: from k6/scenarios/
// and from k6/lib/ alike it names k6/lib/slo.json.
const SLO = JSON.parse(open('../lib/slo.json'));

export function setup() {
  return prepare();
}

export default function () {
  iteration();
}

// K6_RATE: iterations (= requests) per second at the scenario's peak.
export function envRate(fallback) {
  return envInt('K6_RATE', fallback);
}

// HOLD_DURATION: how long the scenario stays at its rate (or ramps, for breakpoint).
export function envHold(fallback) {
  return envDuration('HOLD_DURATION', fallback);
}

// K6_RAMP_DURATION: the time to reach the peak rate, also the time to leave it.
export function envRamp(fallback) {
  return envDuration('K6_RAMP_DURATION', fallback);
}

// K6_ABORT_DELAY: warm-up before abortOnFail thresholds are evaluated.
export function envAbortDelay(fallback) {
  return envDuration('K6_ABORT_DELAY', fallback);
}

// Up to `rate` in `ramp`, `hold` there, back down to 0 in `ramp`.
export function upHoldDown(rate, ramp, hold) {
  return [
    { target: rate, duration: ramp },
    { target: rate, duration: hold },
    { target: 0, duration: ramp },
  ];
}

// Options of the single scenario `name`: `executor` sized in VUs for `peakRate`. With
// `abortDelay` the test stops as soon as the SLO is broken, after that warm-up.
function arrivalRateOptions(name, peakRate, executor, abortDelay) {
  const abort = abortDelay === undefined ? {} : { abortOnFail: true, abortDelay };
  return {
    scenarios: { [name]: { ...executor, timeUnit: '1s', ...vus(peakRate) } },
    thresholds: sloThresholds(SLO, abort),
    summaryTrendStats: SUMMARY_TREND_STATS,
  };
}

// `fields`: duration and any other constant-arrival-rate field.
export function constantArrivalRate(name, rate, fields, { abortDelay } = {}) {
  const executor = { executor: 'constant-arrival-rate', rate, ...fields };
  return arrivalRateOptions(name, rate, executor, abortDelay);
}

// `fields`: stages and, unless 0, startRate. `peakRate` sizes the VUs.
export function rampingArrivalRate(name, peakRate, fields, { abortDelay } = {}) {
  const executor = { executor: 'ramping-arrival-rate', startRate: 0, ...fields };
  return arrivalRateOptions(name, peakRate, executor, abortDelay);
}
