// Load: the typical production rate. Does the agent meet its SLO on an ordinary day?
// Ramps up, holds, ramps down (k6 "average-load test").
//
// Environment:
//   BASE_URL              agent URL (default http://localhost:8000)
//   NEUROS_API_TOKEN      API token, sent on every request (required; run-load-tests.sh
//                         reads it from secrets/neuros-admin-token)
//   K6_RATE               iterations (= requests) per second at the plateau (default 50)
//   K6_RAMP_DURATION      ramp-up time, also the ramp-down time (default 5m)
//   HOLD_DURATION         plateau (default 30m)
//   K6_PRE_ALLOCATED_VUS  VUs allocated up front (default rate / 5)
//   K6_MAX_VUS            VU ceiling (default 2 x rate)
//   K6_USERS, K6_SEED     population size and traffic seed (defaults 500, 20261127)
import { TYPICAL_RATE } from '../lib/config.js';
import { envHold, envRamp, envRate, rampingArrivalRate, upHoldDown } from '../lib/scenario.js';

export { default, setup } from '../lib/scenario.js';

const rate = envRate(TYPICAL_RATE);

export const options = rampingArrivalRate('load', rate, {
  stages: upHoldDown(rate, envRamp('5m'), envHold('30m')),
});
