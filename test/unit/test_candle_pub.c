/* candle_pub: the JSON of a bar, the same text on every path (Redis,
 * WebSocket, SSE, GET): a known bar exactly, and prices on random values
 * against a straightforward reference (llround to a hundredth of a cent,
 * printed with printf, trailing zeros dropped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "market/candle_pub.h"

static void test_bar_json(void **state) {
  candle_bar b = {.start = 1796292000, .open = 189.5, .high = 190.125, .low = 0.0001, .close = 7,
                  .pv = 189.5 * 300, .volume = 300, .count = 2, .flags = CANDLE_F_CLOSED};
  char out[CANDLE_JSON_MAX];
  size_t n = candle_pub_bar_json(out, "AAPL", 4, "1m", &b);
  const char *want = "{\"S\":\"AAPL\",\"tf\":\"1m\",\"t\":\"2026-12-03T10:00:00Z\",\"o\":189.5,\"h\":190.125,"
                     "\"l\":0.0001,\"c\":7,\"v\":300,\"n\":2,\"vw\":189.5,\"src\":\"trades\",\"closed\":true}";
  assert_string_equal(out, want);
  assert_int_equal(n, strlen(want));
  b.volume = 0;
  b.flags = CANDLE_F_MID;
  candle_pub_bar_json(out, "AAPL", 4, "1m", &b);
  assert_non_null(strstr(out, "\"vw\":null,\"src\":\"mid\",\"closed\":false}"));
}

/* The price as the reference writes it. */
static void reference_price(char *out, size_t n, double v) {
  if (!(v >= 0 && v < 1e12)) {
    snprintf(out, n, "%.10g", v);
    return;
  }
  long long ticks = llround(v * 10000);
  int k = snprintf(out, n, "%lld.%04lld", ticks / 10000, ticks % 10000);
  while (out[k - 1] == '0') out[--k] = 0;
  if (out[k - 1] == '.') out[--k] = 0;
}

/* The "o" of the bar's JSON. */
static void written_price(char *out, size_t n, double v) {
  candle_bar b = {.start = 0, .open = v, .high = v, .low = v, .close = v, .volume = 1, .pv = v, .count = 1};
  char json[CANDLE_JSON_MAX];
  candle_pub_bar_json(json, "A", 1, "1s", &b);
  const char *o = strstr(json, "\"o\":") + 4, *end = strchr(o, ',');
  snprintf(out, n, "%.*s", (int)(end - o), o);
}

static void test_prices(void **state) {
  /* ties at the fifth decimal (exact in binary), rounding up into the
   * integer part, magnitudes up to the fast path's limit, and past it */
  const double fixed[] = {0, 0.03125, 0.00005, 0.99995, 1.99999, 9.99995, 123456789.00005, 999999999999.9999,
                          1e12, 2e15, -1, -0.0, 0.1, 0.3, 100.01, 4503599627.3704995};
  srand(17);
  for (int i = 0; i < 200000; i++) {
    double v;
    if (i < (int)(sizeof(fixed) / sizeof(fixed[0]))) {
      v = fixed[i];
    } else {
      double mag = pow(10, rand() % 13 - 1);
      v = (double)rand() / RAND_MAX * mag;
      if (i % 3 == 0) v = round(v * 10000) / 10000;   /* a price on a tick, as feeds send */
      if (i % 7 == 0) v = (round(v * 20000) + 1) / 20000;   /* near a tie */
    }
    char got[64], want[64];
    written_price(got, sizeof(got), v);
    reference_price(want, sizeof(want), v);
    if (strcmp(got, want) != 0) fail_msg("%.17g: wrote %s, want %s", v, got, want);
  }
}

/* The bar's "t" against gmtime_r, over the years a bar can start in
 * (int64_t nanoseconds: 1678 to 2262). */
static void test_bar_times(void **state) {
  srand(18);
  for (int i = 0; i < 200000; i++) {
    int64_t start = i < 4 ? (int64_t[]){0, -1, 86399, -86400}[i]
                          : ((int64_t)rand() << 31 ^ rand()) % 18000000000LL - 9200000000LL;
    candle_bar b = {.start = start};
    char json[CANDLE_JSON_MAX], want[32];
    candle_pub_bar_json(json, "A", 1, "1s", &b);
    time_t t = (time_t)start;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(want, sizeof(want), "\"t\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
    if (!strstr(json, want)) fail_msg("%lld: %s, want %s", (long long)start, json, want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_bar_json),
    cmocka_unit_test(test_prices),
    cmocka_unit_test(test_bar_times),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
