/* fmt_num: fmt_u64 and fmt_i64 against snprintf, at every length's edges
 * (10^k - 1, 10^k, 10^k + 1), the type's extremes, and pseudo-random
 * values of every magnitude. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/fmt_num.h"

static void check_u64(uint64_t v) {
  char want[32], got[FMT_U64_MAX + 8];
  memset(got, 'x', sizeof(got));
  snprintf(want, sizeof(want), "%" PRIu64, v);
  char *e = fmt_u64(got, v);
  if ((size_t)(e - got) != strlen(want) || memcmp(got, want, strlen(want)) != 0)
    fail_msg("fmt_u64(%s) wrote %.*s", want, (int)(e - got), got);
  if (got[strlen(want)] != 'x') fail_msg("fmt_u64(%s) wrote past its end", want);
}

static void check_i64(int64_t v) {
  char want[32], got[FMT_I64_MAX + 8];
  snprintf(want, sizeof(want), "%" PRId64, v);
  char *e = fmt_i64(got, v);
  if ((size_t)(e - got) != strlen(want) || memcmp(got, want, strlen(want)) != 0)
    fail_msg("fmt_i64(%s) wrote %.*s", want, (int)(e - got), got);
}

static void test_every_length_edge(void **state) {
  (void)state;
  uint64_t p = 1;
  for (int k = 0; k <= 19; k++, p *= 10) {
    check_u64(p - 1);
    check_u64(p);
    check_u64(p + 1);
    check_i64((int64_t)(p - 1));
    if (p <= (uint64_t)INT64_MAX) check_i64(-(int64_t)p);
  }
  check_u64(UINT64_MAX);
  check_u64(UINT64_MAX - 1);
  check_i64(INT64_MAX);
  check_i64(INT64_MIN);
  check_i64(INT64_MIN + 1);
  for (uint64_t v = 0; v < 100000; v++) check_u64(v);
}

static void test_random_values(void **state) {
  (void)state;
  uint64_t x = 0x9E3779B97F4A7C15u;
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;   /* xorshift64 */
    uint64_t v = x >> (x % 64);                 /* every magnitude */
    check_u64(v);
    check_i64((int64_t)v);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_every_length_edge),
    cmocka_unit_test(test_random_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
