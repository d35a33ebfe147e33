// What the benchmark scripts share: the executor from the env, the API token, and
// deterministic RR series.
//
// Environment read here:
//   DURATION  how long (default 20s)
//   VUS       closed loop: virtual users, each sending back to back (default 16)
//   RATE      open model instead: requests started per second, whatever the latency
//             (constant-arrival-rate); iterations that find no free VU are counted in
//             dropped_iterations
//   PRE_VUS   with RATE: VUs allocated up front (default RATE / 2, at least 16)
//   MAX_VUS   with RATE: most VUs ever running (default RATE, at least PRE_VUS)
//   NEUROS_API_TOKEN  the API token every request carries (required); stacktools/bench/agent.py
//             puts it in k6's environment, not on its command line

const DURATION = __ENV.DURATION || '20s';
const VUS = parseInt(__ENV.VUS || '16', 10);
const RATE = parseInt(__ENV.RATE || '0', 10);
const PRE_VUS = parseInt(__ENV.PRE_VUS || String(Math.max(16, Math.ceil(RATE / 2))), 10);
const MAX_VUS = Math.max(PRE_VUS, parseInt(__ENV.MAX_VUS || String(RATE), 10));

// Name: neuros/auth/admin_token.py TOKEN_VARIABLE (cross-checked by tests/stack/test_k6_runner.py).
const TOKEN_VARIABLE = 'NEUROS_API_TOKEN';
const API_TOKEN = (__ENV[TOKEN_VARIABLE] || '').trim();

// Headers of every request: the token, and the body's type when it has one.
export function headers(body = true) {
  const h = { Authorization: `Bearer ${API_TOKEN}` };
  if (body) h['Content-Type'] = 'application/json';
  return h;
}

// setup() of each script: without a token every request would be a 401.
export function requireToken() {
  if (!API_TOKEN) {
    throw new Error(`${TOKEN_VARIABLE} is not set (scripts/bench-agent.sh sets it)`);
  }
}

export function benchScenario() {
  return RATE > 0
    ? {
        executor: 'constant-arrival-rate',
        rate: RATE,
        timeUnit: '1s',
        duration: DURATION,
        preAllocatedVUs: PRE_VUS,
        maxVUs: MAX_VUS,
        gracefulStop: '5s',
      }
    : {
        executor: 'constant-vus',
        vus: VUS,
        duration: DURATION,
        gracefulStop: '5s',
      };
}

// Park-Miller minimal standard generator: same numbers on every run and every VU.
function lcg(seed) {
  let state = seed % 2147483647;
  if (state <= 0) state += 2147483646;
  return () => {
    state = (state * 16807) % 2147483647;
    return (state - 1) / 2147483646;
  };
}

// `count` pre-serialised RR arrays of `length` intervals (JSON text), so that each
// iteration only concatenates strings.
export function rrSeries(count, length) {
  const series = [];
  for (let s = 0; s < count; s++) {
    const next = lcg(1000 + s);
    const base = 700 + 300 * next(); // 55 to 86 bpm
    const values = [];
    for (let i = 0; i < length; i++) {
      values.push(Math.round((base + 120 * (next() - 0.5)) * 10) / 10);
    }
    series.push(JSON.stringify(values));
  }
  return series;
}
