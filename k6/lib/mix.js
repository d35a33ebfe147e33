// What the traffic is made of: one source for traffic.js and the thresholds.

// Values of the `kind` tag on every request and check (stacktools/generate/k6_thresholds.py reads
// this block to validate threshold selectors).
export const KINDS = Object.freeze({
  INGEST: 'ingest',
  READ: 'read',
  ANALYZE: 'analyze',
  INVALID: 'invalid',
  SEED: 'seed',
});

// Percent of iterations per kind.
export const MIX = Object.freeze([
  [KINDS.INGEST, 50],
  [KINDS.READ, 35],
  [KINDS.ANALYZE, 10],
  [KINDS.INVALID, 5],
]);
