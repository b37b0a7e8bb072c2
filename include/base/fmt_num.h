/* Decimal digits without snprintf: every hot encoder (response heads, RESP
 * lengths, quote payloads, /status) writes whole numbers, and snprintf's
 * format parsing cost more than the rest of such a write. */
#ifndef TD_FMT_NUM_H
#define TD_FMT_NUM_H

#include <stdint.h>
#include <string.h>

/* Room fmt_u64 needs at most. */
#define FMT_U64_MAX 20

/* Writes v's decimal digits at o (no NUL); returns the end. */
static inline char *fmt_u64(char *o, uint64_t v) {
  if (v < 10) { /* most counters, sequence numbers early on, sizes: one digit */
    *o = (char)('0' + v);
    return o + 1;
  }
  char tmp[FMT_U64_MAX], *e = tmp + sizeof(tmp), *d = e;
  do {
    *--d = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  memcpy(o, d, (size_t)(e - d));
  return o + (e - d);
}

/* Room fmt_i64 needs at most: a sign and FMT_U64_MAX digits. */
#define FMT_I64_MAX (1 + FMT_U64_MAX)

/* Writes v in decimal at o (no NUL); returns the end. */
static inline char *fmt_i64(char *o, int64_t v) {
  if (v < 0) {
    *o++ = '-';
    return fmt_u64(o, (uint64_t)0 - (uint64_t)v);
  }
  return fmt_u64(o, (uint64_t)v);
}

#endif
