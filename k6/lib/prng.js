// mulberry32: a tiny seeded PRNG (32-bit state), so that the user population and
// every iteration's choices are the same on every run, every VU and every machine.
export function mulberry32(seed) {
  let state = seed >>> 0;
  return function next() {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// One independent stream per (seed, index): iteration n draws the same numbers
// whichever VU happens to run it.
export function streamFor(seed, index) {
  return mulberry32((Math.imul(index >>> 0, 0x9e3779b9) ^ seed) >>> 0);
}

export function pickInt(rng, min, max) {
  return min + Math.floor(rng() * (max - min + 1));
}

export function pickFloat(rng, min, max, decimals) {
  const scale = 10 ** decimals;
  return Math.round((min + rng() * (max - min)) * scale) / scale;
}

export function pick(rng, items) {
  return items[Math.floor(rng() * items.length)];
}
