/* The one pseudo-random generator: xorshift64* (Vigna). Fast, 64 bits of
 * state, good enough for simulation, jitter and WebSocket masking keys, and
 * deterministic from a seed (--task-seed, the sim feed's seed). Never for
 * secrets: those come from getrandom (uuid_random_bytes). The state must
 * not be 0; rng_seed() turns any seed, 0 included, into a valid state. */
#ifndef TD_RNG_H
#define TD_RNG_H

#include <stdint.h>

static inline uint64_t rng_next(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in [0, 1). */
static inline double rng_unit(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1.0p-53; }

/* A nonzero state from any seed: splitmix64 of the seed, low bit set. */
static inline uint64_t rng_seed(uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) | 1;
}

/* A state seeded from the kernel (getrandom), for generators nobody needs
 * to replay. */
uint64_t rng_seed_random(void);

/* The one retry delay: the window doubles per attempt from `min_ms` up to
 * `max_ms`, and the delay is uniform in its upper half ("equal jitter"):
 * never two instant retries, and clients that failed together spread out. */
static inline uint64_t backoff_ms(uint64_t min_ms, uint64_t max_ms, unsigned attempt, uint64_t *rng) {
  uint64_t d = min_ms;
  for (unsigned i = 0; i < attempt && d < max_ms; i++) d *= 2;
  if (d > max_ms) d = max_ms;
  return d / 2 + rng_next(rng) % (d / 2 + 1);
}

#endif
