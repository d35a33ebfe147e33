// The bounded, deterministic user population: K6_USERS ids k6-user-0001, k6-user-0002, ...
import { envInt } from './config.js';

export const USER_COUNT = envInt('K6_USERS', 500);
if (USER_COUNT < 1) throw new Error('K6_USERS must be at least 1');

// The seed of every random choice (K6_SEED); the same seed replays the same traffic.
export const SEED = envInt('K6_SEED', 20261127);

export function userIds(count = USER_COUNT) {
  const width = Math.max(4, String(count).length);
  const ids = [];
  for (let i = 1; i <= count; i++) ids.push(`k6-user-${String(i).padStart(width, '0')}`);
  return ids;
}
