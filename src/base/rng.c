/* Seeding the one generator (rng.h) from the kernel. */
#include "base/rng.h"

#include <stdint.h>
#include <sys/random.h>
#include <time.h>

uint64_t rng_seed_random(void) {
  uint64_t seed;
  /* getrandom blocks only before the kernel's pool is initialised; a
   * failure falls back to the clock, which is enough for jitter. */
  if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  }
  return rng_seed(seed);
}
