/* Decimal digits without snprintf: every hot encoder (response heads, RESP
 * lengths, quote payloads, /status) writes whole numbers, and snprintf's
 * format parsing cost more than the rest of such a write. */
#ifndef TD_FMT_NUM_H
#define TD_FMT_NUM_H

#include <stdint.h>
#include <string.h>

/* Room fmt_u64 needs at most. */
#define FMT_U64_MAX 20

/* Digits in pairs, "00" to "99": two digits per division by 100. */
static const char fmt_digit_pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                         "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                         "8081828384858687888990919293949596979899";

/* Writes v's decimal digits at o (no NUL); returns the end. The length is
 * counted first, so the digits are written in place from the end, two per
 * step: the old way (one per step into a scratch buffer, then a memcpy call
 * of variable length) cost a bar's JSON ~40 instructions per number. */
static inline char *fmt_u64(char *o, uint64_t v) {
  if (v < 10) { /* most counters, sequence numbers early on, sizes: one digit */
    *o = (char)('0' + v);
    return o + 1;
  }
  size_t n = 2;
  for (uint64_t p = 100; n < FMT_U64_MAX && v >= p; p *= 10) n++;
  char *d = o + n;
  while (v >= 100) {
    unsigned r = (unsigned)(v % 100);
    v /= 100;
    d -= 2;
    memcpy(d, fmt_digit_pairs + 2 * r, 2);
  }
  if (v >= 10) {
    memcpy(d - 2, fmt_digit_pairs + 2 * v, 2);
  } else {
    d[-1] = (char)('0' + v);
  }
  return o + n;
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
