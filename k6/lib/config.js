// Environment, SLO thresholds and options shared by every scenario.
import { MIX } from './mix.js';

export const BASE_URL = (__ENV.BASE_URL || 'http://localhost:8000').replace(/\/+$/, '');

// The API token every /v1 request carries (variable name: neuros/auth/admin_token.py
// TOKEN_VARIABLE, cross-checked by tests/stack/test_k6_runner.py). k6/run-load-tests.sh exports
// it into k6's environment, never onto its command line, where `ps` would show it.
export const TOKEN_VARIABLE = 'NEUROS_API_TOKEN';
export const API_TOKEN = (__ENV[TOKEN_VARIABLE] || '').trim();

// Called from setup(): without a token every request would be a 401, and the run would
// fail on its checks for a reason it never names.
export function requireToken() {
  if (!API_TOKEN) {
    throw new Error(
      `${TOKEN_VARIABLE} is not set: run through k6/run-load-tests.sh, which reads ` +
        'secrets/neuros-admin-token (scripts/setup.sh creates it), or export it',
    );
  }
}

// Requests per second a production day brings (iterations/s: one request each). The
// scenarios scale their defaults from it so that "typical" means one number.
export const TYPICAL_RATE = 50;

export const SUMMARY_TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'];

export function envInt(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

const DURATION_PATTERN = /^(\d+(ms|s|m|h))+$/;

export function envDuration(name, fallback) {
  const value = __ENV[name] || fallback;
  if (!DURATION_PATTERN.test(value)) {
    throw new Error(`${name} must be a k6 duration like 30s or 1h30m, got ${JSON.stringify(value)}`);
  }
  return value;
}

// VUs an arrival-rate executor needs: rate x latency (Little's law) with headroom for a
// slow second; K6_PRE_ALLOCATED_VUS / K6_MAX_VUS override.
export function vus(peakRate) {
  const preAllocated = envInt('K6_PRE_ALLOCATED_VUS', Math.max(5, Math.ceil(peakRate / 5)));
  const max = envInt('K6_MAX_VUS', Math.max(preAllocated, peakRate * 2));
  return { preAllocatedVUs: preAllocated, maxVUs: Math.max(preAllocated, max) };
}

// The SLO (k6/lib/slo.json, generated from prometheus/slo.yml) as k6 thresholds.
// Deliberately invalid requests declare their 4xx as expected, so http_req_failed and
// expected_response:true see only the traffic the SLO is about. With abortOnFail the
// test stops as soon as the SLO is broken, after `abortDelay` of warm-up.
//
// The SLO spec has a single latency objective (latency_objective of requests under
// latency_threshold_ms: 99 % under 300 ms), so its percentile, p(99), is the SLO
// threshold. p(95) is held to the same bound because the spec gives no other number to
// take: it can only fail when p(99) fails too, so it adds no verdict of its own (a
// stricter p95 bound would be a number the spec does not have). Regressions of p95
// under the SLO bound are the performance gate's job: k6/perf-gate.sh compares p95 and
// p99 with the committed baseline.
export function sloThresholds(slo, { abortOnFail = false, abortDelay = '30s' } = {}) {
  const rule = (threshold) =>
    abortOnFail ? { threshold, abortOnFail: true, delayAbortEval: abortDelay } : threshold;
  const ms = slo.latency_threshold_ms;
  const percentiles = [...new Set([95, Number((slo.latency_objective * 100).toFixed(4))])];
  return {
    http_req_failed: [rule(`rate<${slo.max_error_rate}`)],
    'http_req_duration{expected_response:true}': percentiles.map((p) => rule(`p(${p})<${ms}`)),
    checks: [rule(`rate>${slo.availability_objective}`)],
    // Every part of the mix must actually be sent (this also puts the per-kind request
    // counts into the end-of-test summary).
    ...Object.fromEntries(MIX.map(([kind]) => [`http_reqs{kind:${kind}}`, ['count>0']])),
  };
}
