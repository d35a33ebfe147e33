// Smoke: minimal load. Does every route answer correctly, within the SLO, right now?
// Run it before any other scenario and after every deploy.
//
// Environment (defaults give a run under 30 s, setup included):
//   BASE_URL              agent URL (default http://localhost:8000)
//   NEUROS_API_TOKEN      API token, sent on every request (required; run-load-tests.sh
//                         reads it from secrets/neuros-admin-token)
//   K6_RATE               iterations (= requests) per second (default 5)
//   HOLD_DURATION         how long (default 15s)
//   K6_PRE_ALLOCATED_VUS  VUs allocated up front (default 5)
//   K6_MAX_VUS            VU ceiling (default 10)
//   K6_USERS              population size, seeded in setup() (default 500)
//   K6_SEED               PRNG seed of the traffic (default 20261127)
import { constantArrivalRate, envHold, envRate } from '../lib/scenario.js';

export { default, setup } from '../lib/scenario.js';

export const options = constantArrivalRate('smoke', envRate(5), {
  duration: envHold('15s'),
  gracefulStop: '5s',
});
