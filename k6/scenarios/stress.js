// Stress: above the typical rate. Does the agent still meet its SLO at peak-season
// load, and how does it degrade? Aborts as soon as the SLO is broken (abortOnFail).
//
// Environment:
//   BASE_URL              agent URL (default http://localhost:8000)
//   K6_RATE               iterations (= requests) per second at the plateau
//                         (default 3 x the typical 50)
//   K6_RAMP_DURATION      ramp-up time, also the ramp-down time (default 10m)
//   HOLD_DURATION         plateau (default 30m)
//   K6_ABORT_DELAY        warm-up before abortOnFail thresholds are evaluated (default 1m)
//   K6_PRE_ALLOCATED_VUS  VUs allocated up front (default rate / 5)
//   K6_MAX_VUS            VU ceiling (default 2 x rate)
//   K6_USERS, K6_SEED     population size and traffic seed (defaults 500, 20261127)
import {
  SUMMARY_TREND_STATS,
  TYPICAL_RATE,
  envDuration,
  envInt,
  sloThresholds,
  vus,
} from '../lib/config.js';
import { iteration, prepare } from '../lib/traffic.js';

const slo = JSON.parse(open('../lib/slo.json'));
const rate = envInt('K6_RATE', 3 * TYPICAL_RATE);
const ramp = envDuration('K6_RAMP_DURATION', '10m');

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      stages: [
        { target: rate, duration: ramp },
        { target: rate, duration: envDuration('HOLD_DURATION', '30m') },
        { target: 0, duration: ramp },
      ],
      ...vus(rate),
    },
  },
  thresholds: sloThresholds(slo, {
    abortOnFail: true,
    abortDelay: envDuration('K6_ABORT_DELAY', '1m'),
  }),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export function setup() {
  return prepare();
}

export default function () {
  iteration();
}
