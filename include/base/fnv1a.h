/* FNV-1a, 32 bits: the hash of tickerd's small string tables (symbols,
 * channels, the publisher's maps) and of the channel -> connection shard.
 * Short keys, no adversary able to choose many colliding ones within the
 * bounded tables, and cheap enough to run per quote. */
#ifndef TD_FNV1A_H
#define TD_FNV1A_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A_INIT 2166136261u

/* Continues a hash over n more bytes (to hash a key in parts). */
static inline uint32_t fnv1a_more(uint32_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

static inline uint32_t fnv1a(const void *p, size_t n) { return fnv1a_more(FNV1A_INIT, p, n); }

#endif
