// Spike: a sudden surge and its end (a push notification, a sync storm). Does the agent
// survive it, and does it recover once the surge is gone?
//
// Environment:
//   BASE_URL              agent URL (default http://localhost:8000)
//   NEUROS_API_TOKEN      API token, sent on every request (required; run-load-tests.sh
//                         reads it from secrets/neuros-admin-token)
//   K6_BASE_RATE          iterations per second before and after the spike (default 10)
//   K6_RATE               iterations per second at the top (default 8 x the typical 50)
//   K6_RAMP_DURATION      time to reach the top, also the time to fall back (default 30s)
//   HOLD_DURATION         time at the top (default 1m)
//   K6_RECOVERY_DURATION  time at the base rate after the spike (default 2m)
//   K6_PRE_ALLOCATED_VUS  VUs allocated up front (default rate / 5)
//   K6_MAX_VUS            VU ceiling (default 2 x rate)
//   K6_USERS, K6_SEED     population size and traffic seed (defaults 500, 20261127)
import { TYPICAL_RATE, envDuration, envInt } from '../lib/config.js';
import { envHold, envRamp, envRate, rampingArrivalRate } from '../lib/scenario.js';

export { default, setup } from '../lib/scenario.js';

const base = envInt('K6_BASE_RATE', 10);
const rate = envRate(8 * TYPICAL_RATE);
const ramp = envRamp('30s');

export const options = rampingArrivalRate('spike', rate, {
  startRate: base,
  stages: [
    { target: rate, duration: ramp },
    { target: rate, duration: envHold('1m') },
    { target: base, duration: ramp },
    { target: base, duration: envDuration('K6_RECOVERY_DURATION', '2m') },
  ],
});
