/* candle_mem [symbols]: memory per symbol of the candle engine with every
 * default timeframe full (CANDLE_DEFAULT_HISTORY bars each), for
 * bench/candles.sh. One trade per symbol per hour of exchange time, 310
 * hours: every series opens a bar per trade and is full. Prints the
 * engine's own count and the process's RSS growth, both per symbol. */
#include <stdio.h>
#include <stdlib.h>

#include "market/candle.h"

#define NS 1000000000LL
/* 2026-12-03T00:00:00Z */
#define T0 (1796256000LL * NS)
#define HOURS (CANDLE_DEFAULT_HISTORY + 10)

static long rss_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = 0;
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1) break;
  if (f) fclose(f);
  return kb;
}

int main(int argc, char **argv) {
  int nsym = argc > 1 ? atoi(argv[1]) : 1000;
  char err[128];
  candle_opts o = {.grace_ms = -1};
  candle_engine *e = candle_new(&o, err, sizeof(err));
  if (!e || nsym <= 0) return 1;
  long before = rss_kb();
  for (int h = 0; h < HOURS; h++) {
    int64_t t = T0 + (int64_t)h * 3600 * NS;
    for (int s = 0; s < nsym; s++) {
      char sym[16];
      int n = snprintf(sym, sizeof(sym), "B%04d", s);
      candle_trade(e, sym, (size_t)n, t, 100 + s % 7, 100, t);
    }
  }
  long after = rss_kb();
  candle_stats st;
  candle_get_stats(e, &st);
  printf("%llu bytes per symbol held by the engine (%d timeframes x %d bars of %zu bytes, %d symbols; "
         "RSS grew %.0f bytes per symbol)\n",
         (unsigned long long)(st.bytes / (uint64_t)nsym), candle_tf_count(e), CANDLE_DEFAULT_HISTORY,
         sizeof(candle_bar), nsym, (double)(after - before) * 1024 / nsym);
  candle_free(e);
  return 0;
}
