// Soak: the typical rate for hours. Does anything wear out: memory, database growth,
// connection pools, latency creeping up?
//
// Environment:
//   BASE_URL              agent URL (default http://localhost:8000)
//   K6_RATE               iterations (= requests) per second (default the typical 50)
//   K6_RAMP_DURATION      ramp-up time, also the ramp-down time (default 5m)
//   HOLD_DURATION         hold (default 4h)
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
const rate = envInt('K6_RATE', TYPICAL_RATE);
const ramp = envDuration('K6_RAMP_DURATION', '5m');

export const options = {
  scenarios: {
    soak: {
      executor: 'ramping-arrival-rate',
      startRate: 0,
      timeUnit: '1s',
      stages: [
        { target: rate, duration: ramp },
        { target: rate, duration: envDuration('HOLD_DURATION', '4h') },
        { target: 0, duration: ramp },
      ],
      ...vus(rate),
    },
  },
  thresholds: sloThresholds(slo),
  summaryTrendStats: SUMMARY_TREND_STATS,
};

export function setup() {
  return prepare();
}

export default function () {
  iteration();
}
