// Breakpoint: a rate rising steadily until the SLO breaks. At what rate does it? The
// thresholds abort the test there (abortOnFail); the rate reached is the capacity.
// Run it against a disposable deployment, never production.
//
// Environment:
//   BASE_URL              agent URL (default http://localhost:8000)
//   NEUROS_API_TOKEN      API token, sent on every request (required; run-load-tests.sh
//                         reads it from secrets/neuros-admin-token)
//   K6_RATE               rate at the end of the ramp, if nothing broke before
//                         (default 20 x the typical 50)
//   HOLD_DURATION         length of the ramp (default 30m)
//   K6_ABORT_DELAY        warm-up before abortOnFail thresholds are evaluated (default 30s)
//   K6_PRE_ALLOCATED_VUS  VUs allocated up front (default rate / 5)
//   K6_MAX_VUS            VU ceiling (default 2 x rate)
//   K6_USERS, K6_SEED     population size and traffic seed (defaults 500, 20261127)
import { TYPICAL_RATE } from '../lib/config.js';
import { envAbortDelay, envHold, envRate, rampingArrivalRate } from '../lib/scenario.js';

export { default, setup } from '../lib/scenario.js';

const rate = envRate(20 * TYPICAL_RATE);

export const options = rampingArrivalRate(
  'breakpoint',
  rate,
  { stages: [{ target: rate, duration: envHold('30m') }] },
  { abortDelay: envAbortDelay('30s') },
);
