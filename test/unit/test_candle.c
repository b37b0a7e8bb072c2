/* candle: bar boundaries, late trades within and after the grace period,
 * corrections and cancels, quiet symbols closed by the timer, mid bars, bad
 * input, bounds; and random streams checked against a reference that
 * computes every bar from scratch from the trades that count. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "market/candle.h"

#define S 1000000000LL
#define MS 1000000LL
/* 2026-12-03T10:00:00Z: a whole hour, so every default timeframe starts here. */
#define T0 (1796292000LL * S)

/* ---- what on_bar saw ------------------------------------------------------- */

#define MAX_SEEN 20000
typedef struct {
  int tf;
  candle_bar bar;
} seen_bar;

static seen_bar seen[MAX_SEEN];
static int nseen;

static void on_bar(void *ud, const char *sym, size_t n, int tf, const candle_bar *b) {
  if (nseen < MAX_SEEN) seen[nseen++] = (seen_bar){tf, *b};
}

static int setup(void **state) {
  nseen = 0;
  log_set_stdout(false);
  return 0;
}

static candle_engine *engine(const char *tfs, int64_t grace_ms, uint32_t history, uint32_t max_symbols) {
  char err[128];
  candle_opts o = {.timeframes = tfs, .grace_ms = grace_ms, .history = history, .max_symbols = max_symbols,
                   .on_bar = on_bar};
  candle_engine *e = candle_new(&o, err, sizeof(err));
  assert_non_null(e);
  return e;
}

static int bars(candle_engine *e, int tf, candle_bar *out) {
  return candle_history(e, "AAPL", 4, tf, 1000, out);
}

static void trade(candle_engine *e, int64_t t, double p, int64_t s, int64_t now) {
  candle_trade(e, "AAPL", 4, t, p, s, now);
}

/* ---- timeframes ---------------------------------------------------------------- */

static void test_timeframes(void **state) {
  assert_int_equal(candle_tf_parse("1s", 2), 1);
  assert_int_equal(candle_tf_parse("15m", 3), 900);
  assert_int_equal(candle_tf_parse("1h", 2), 3600);
  assert_int_equal(candle_tf_parse("1d", 2), 86400);
  assert_int_equal(candle_tf_parse("0s", 2), -1);
  assert_int_equal(candle_tf_parse("2d", 2), -1);
  assert_int_equal(candle_tf_parse("m", 1), -1);
  assert_int_equal(candle_tf_parse("1x", 2), -1);
  assert_int_equal(candle_tf_parse("01m", 3), -1);
  candle_engine *e = engine(NULL, -1, 0, 0);
  assert_int_equal(candle_tf_count(e), 6);
  assert_string_equal(candle_tf_name(e, 2), "1m");
  assert_int_equal(candle_tf_find(e, "15m", 3), 4);
  assert_int_equal(candle_tf_find(e, "2m", 2), -1);
  candle_free(e);
  char err[128];
  candle_opts o = {.timeframes = "1s,xx"};
  assert_null(candle_new(&o, err, sizeof(err)));
  assert_non_null(strstr(err, "xx"));
  o.timeframes = "1m,60s";
  assert_null(candle_new(&o, err, sizeof(err)));
  assert_non_null(strstr(err, "twice"));
}

/* ---- boundaries ------------------------------------------------------------------ */

static void test_trade_on_boundary(void **state) {
  candle_engine *e = engine("1m", 0, 10, 10);
  candle_bar b[8];
  trade(e, T0 + 59 * S + 999999999, 10, 1, T0 + 60 * S);   /* last ns of the first minute */
  trade(e, T0 + 60 * S, 11, 2, T0 + 60 * S);               /* exactly on the boundary: the next bar */
  assert_int_equal(bars(e, 0, b), 2);
  assert_int_equal(b[0].start, T0 / S);
  assert_int_equal(b[0].count, 1);
  assert_true(b[0].close == 10);
  assert_int_equal(b[1].start, T0 / S + 60);
  assert_true(b[1].open == 11);
  assert_int_equal(b[1].volume, 2);
  /* with no grace the boundary trade closed the first bar at once */
  assert_true(b[0].flags & CANDLE_F_CLOSED);
  assert_false(b[1].flags & CANDLE_F_CLOSED);
  assert_int_equal(nseen, 1);
  assert_true(seen[0].bar.flags & CANDLE_F_CLOSED);
  candle_free(e);
}

static void test_late_within_and_after_grace(void **state) {
  candle_engine *e = engine("1m", 2000, 10, 10);
  candle_bar b[8];
  candle_stats st;
  trade(e, T0 + 10 * S, 10, 1, T0 + 10 * S);
  trade(e, T0 + 61 * S, 20, 1, T0 + 61 * S);          /* next minute; first still open (grace) */
  trade(e, T0 + 5 * S, 9, 3, T0 + 61 * S);            /* late, within grace: becomes the open */
  assert_int_equal(bars(e, 0, b), 2);
  assert_false(b[0].flags & CANDLE_F_CLOSED);
  assert_true(b[0].open == 9);
  assert_true(b[0].close == 10);
  assert_true(b[0].low == 9);
  assert_int_equal(b[0].volume, 4);
  trade(e, T0 + 62 * S, 21, 1, T0 + 62 * S);          /* 60 s + 2 s grace: closes minute 0 */
  assert_int_equal(bars(e, 0, b), 2);
  assert_true(b[0].flags & CANDLE_F_CLOSED);
  trade(e, T0 + 30 * S, 1, 100, T0 + 62 * S);         /* after grace: counted, not applied */
  assert_int_equal(bars(e, 0, b), 2);
  assert_int_equal(b[0].volume, 4);
  candle_get_stats(e, &st);
  assert_int_equal(st.late, 1);
  assert_int_equal(st.trades, 4);
  /* a late trade for a minute that had no bar, now closed, makes none */
  trade(e, T0 - 30 * S, 1, 1, T0 + 62 * S);
  assert_int_equal(bars(e, 0, b), 2);
  /* but one within grace for an empty minute inserts a bar in order */
  trade(e, T0 + 121 * S, 22, 1, T0 + 121 * S);
  trade(e, T0 + 119 * S, 23, 1, T0 + 121 * S);
  assert_int_equal(bars(e, 0, b), 3);
  assert_int_equal(b[1].start, T0 / S + 60);
  assert_true(b[1].close == 23);
  assert_int_equal(b[2].start, T0 / S + 120);
  candle_free(e);
}

static void test_quiet_symbol_closed_by_timer(void **state) {
  candle_engine *e = engine("1s,1m", 500, 10, 10);
  candle_bar b[8];
  trade(e, T0 + 10 * S, 10, 1, T0 + 10 * S);
  candle_tick(e, T0 + 11 * S);             /* 1 s bar ends at 11 s, grace to 11.5 */
  assert_int_equal(bars(e, 0, b), 1);
  assert_false(b[0].flags & CANDLE_F_CLOSED);
  candle_tick(e, T0 + 11 * S + 500 * MS);
  assert_int_equal(bars(e, 0, b), 1);
  assert_true(b[0].flags & CANDLE_F_CLOSED);
  assert_int_equal(bars(e, 1, b), 1);
  assert_false(b[0].flags & CANDLE_F_CLOSED);
  candle_tick(e, T0 + 60 * S + 500 * MS);
  assert_int_equal(bars(e, 1, b), 1);
  assert_true(b[0].flags & CANDLE_F_CLOSED);
  /* each closed bar was handed over once, closed */
  int closed = 0;
  for (int i = 0; i < nseen; i++) closed += (seen[i].bar.flags & CANDLE_F_CLOSED) != 0;
  assert_int_equal(closed, 2);
  candle_free(e);
}

/* A feed 15 minutes behind: the timer must not close its bars on our clock. */
static void test_delayed_feed(void **state) {
  candle_engine *e = engine("1m", 1000, 10, 10);
  candle_bar b[8];
  int64_t lag = 900 * S;
  trade(e, T0 + 10 * S, 10, 1, T0 + 10 * S + lag);
  candle_tick(e, T0 + 30 * S + lag);
  trade(e, T0 + 30 * S, 11, 1, T0 + 30 * S + lag);
  assert_int_equal(bars(e, 0, b), 1);
  assert_int_equal(b[0].count, 2);
  assert_false(b[0].flags & CANDLE_F_CLOSED);
  candle_tick(e, T0 + 61 * S + lag);
  assert_int_equal(bars(e, 0, b), 1);
  assert_true(b[0].flags & CANDLE_F_CLOSED);
  candle_free(e);
}

static void test_live_bar_rate(void **state) {
  candle_engine *e = engine("1m", 0, 10, 10);
  trade(e, T0 + 1 * S, 10, 1, T0 + 1 * S);
  candle_tick(e, T0 + 1 * S);
  assert_int_equal(nseen, 1);
  trade(e, T0 + 1 * S + 100 * MS, 11, 1, T0 + 1 * S + 100 * MS);
  candle_tick(e, T0 + 1 * S + 200 * MS);   /* within a second of the last: held */
  assert_int_equal(nseen, 1);
  candle_tick(e, T0 + 2 * S);
  assert_int_equal(nseen, 2);
  assert_true(seen[1].bar.close == 11);
  candle_tick(e, T0 + 3 * S);              /* nothing changed: nothing sent */
  assert_int_equal(nseen, 2);
  candle_free(e);
}

/* ---- corrections and cancels ------------------------------------------------------ */

static void test_corrections_and_cancels(void **state) {
  candle_engine *e = engine("1m", 2000, 10, 10);
  candle_bar b[8];
  candle_stats st;
  trade(e, T0 + 1 * S, 10, 100, T0 + 1 * S);
  trade(e, T0 + 2 * S, 12, 100, T0 + 2 * S);
  trade(e, T0 + 3 * S, 11, 100, T0 + 3 * S);
  /* the close (t = 3 s, 11) was really 13 x 50 */
  candle_correct(e, "AAPL", 4, T0 + 3 * S, 11, 100, 13, 50, T0 + 4 * S);
  assert_int_equal(bars(e, 0, b), 1);
  assert_true(b[0].close == 13);
  assert_true(b[0].high == 13);
  assert_int_equal(b[0].volume, 250);
  assert_int_equal(b[0].count, 3);
  assert_true(fabs(b[0].pv - (1000 + 1200 + 650)) < 1e-9);
  assert_true(b[0].flags & CANDLE_F_ADJUSTED);
  /* the trade at 2 s is canceled */
  candle_cancel(e, "AAPL", 4, T0 + 2 * S, 12, 100, T0 + 5 * S);
  assert_int_equal(bars(e, 0, b), 1);
  assert_int_equal(b[0].count, 2);
  assert_int_equal(b[0].volume, 150);
  /* a cancel larger than the bar: unmatched; one for a closed bar: late */
  candle_cancel(e, "AAPL", 4, T0 + 2 * S, 12, 1000, T0 + 5 * S);
  trade(e, T0 + 200 * S, 10, 1, T0 + 200 * S);
  candle_cancel(e, "AAPL", 4, T0 + 1 * S, 10, 100, T0 + 200 * S);
  candle_get_stats(e, &st);
  assert_int_equal(st.adjusted, 2);
  assert_int_equal(st.adjust_unmatched, 1);
  assert_int_equal(st.adjust_late, 1);
  assert_int_equal(bars(e, 0, b), 2);
  assert_int_equal(b[0].volume, 150);
  candle_free(e);
}

/* By trade id: a correction or cancel adjusts the bar of the trade it
 * names, at that trade's time, whatever its own; an id not remembered (or
 * already cancelled) is counted and changes nothing. */
static void test_corrections_and_cancels_by_trade_id(void **state) {
  candle_engine *e = engine("1s,1m", 2000, 10, 10);
  uint32_t id = 0;
  candle_bar b[8];
  candle_stats st;
  candle_trade(e, "AAPL", 4, T0, 1, 1, T0);   /* interns AAPL (id 0), no id remembered */
  candle_trade_ref_id(e, id, 101, T0 + 1 * S + 100 * MS, 10, 100, T0 + 1 * S);
  candle_trade_ref_id(e, id, 102, T0 + 2 * S + 100 * MS, 12, 50, T0 + 2 * S);
  /* the correction of 101 comes during the next second: placed in 101's bar (1 s) */
  candle_correct_ref_id(e, id, 101, 10, 100, 10.5, 80, T0 + 2 * S + 500 * MS);
  assert_int_equal(bars(e, 0, b), 3);
  assert_int_equal(b[1].start, T0 / S + 1);
  assert_int_equal(b[1].volume, 80);
  assert_true(b[1].close == 10.5 && b[1].open == 10.5);
  assert_true(fabs(b[1].pv - 840) < 1e-9);
  assert_true(b[1].flags & CANDLE_F_ADJUSTED);
  assert_int_equal(b[2].volume, 50);   /* the bar of the correction's own time: untouched */
  assert_false(b[2].flags & CANDLE_F_ADJUSTED);
  /* the minute bar holds all three; corrected too */
  assert_int_equal(bars(e, 1, b), 1);
  assert_int_equal(b[0].volume, 1 + 80 + 50);
  /* cancelling 101 now takes the corrected trade out (10.5 x 80, as the
   * cancel names it) */
  candle_cancel_ref_id(e, id, 101, 10.5, 80, T0 + 2 * S + 600 * MS);
  assert_int_equal(bars(e, 0, b), 3);
  assert_int_equal(b[1].volume, 0);
  assert_int_equal(b[1].count, 0);
  assert_int_equal(b[2].volume, 50);
  assert_int_equal(bars(e, 1, b), 1);
  assert_int_equal(b[0].volume, 51);
  assert_int_equal(b[0].count, 2);
  /* unknown: never seen, already cancelled, and forgotten (older than the last CANDLE_TRADE_IDS) */
  candle_cancel_ref_id(e, id, 999, 10, 1, T0 + 2 * S + 700 * MS);
  candle_cancel_ref_id(e, id, 101, 10.5, 80, T0 + 2 * S + 700 * MS);
  for (uint64_t k = 0; k < CANDLE_TRADE_IDS; k++)
    candle_trade_ref_id(e, id, 1000 + k, T0 + 2 * S + 800 * MS, 12, 1, T0 + 2 * S + 800 * MS);
  candle_correct_ref_id(e, id, 102, 12, 50, 13, 50, T0 + 2 * S + 900 * MS);
  candle_get_stats(e, &st);
  assert_int_equal(st.adjust_unknown, 3);
  assert_int_equal(st.adjusted, 2);
  /* the newest ids are still known */
  candle_cancel_ref_id(e, id, 1000 + CANDLE_TRADE_IDS - 1, 12, 1, T0 + 2 * S + 900 * MS);
  candle_get_stats(e, &st);
  assert_int_equal(st.adjusted, 3);
  assert_int_equal(bars(e, 0, b), 3);
  assert_int_equal(b[2].volume, 50 + CANDLE_TRADE_IDS - 1);
  candle_free(e);
}

/* ---- quotes ------------------------------------------------------------------------ */

static void test_mid_bars_until_trades(void **state) {
  candle_engine *e = engine("1m", 0, 10, 10);
  candle_bar b[8];
  candle_quote(e, "AAPL", 4, T0 + 1 * S, 10, 12, T0 + 1 * S);
  candle_quote(e, "AAPL", 4, T0 + 2 * S, 12, 14, T0 + 2 * S);
  candle_quote(e, "AAPL", 4, T0 + 3 * S, 0, 14, T0 + 3 * S);    /* one-sided: no mid */
  assert_int_equal(bars(e, 0, b), 1);
  assert_true(b[0].flags & CANDLE_F_MID);
  assert_true(b[0].open == 11 && b[0].close == 13 && b[0].high == 13 && b[0].low == 11);
  assert_int_equal(b[0].count, 2);
  assert_int_equal(b[0].volume, 0);
  /* the first trade turns the open bar into a trade bar */
  trade(e, T0 + 4 * S, 20, 5, T0 + 4 * S);
  candle_quote(e, "AAPL", 4, T0 + 5 * S, 30, 32, T0 + 5 * S);   /* ignored now */
  assert_int_equal(bars(e, 0, b), 1);
  assert_false(b[0].flags & CANDLE_F_MID);
  assert_true(b[0].open == 20 && b[0].high == 20);
  assert_int_equal(b[0].count, 1);
  /* but a quote's time still closes bars */
  candle_quote(e, "AAPL", 4, T0 + 60 * S, 30, 32, T0 + 60 * S);
  assert_int_equal(bars(e, 0, b), 1);
  assert_true(b[0].flags & CANDLE_F_CLOSED);
  candle_free(e);
}

/* ---- bad input and bounds -------------------------------------------------------------- */

static void test_bad_input(void **state) {
  candle_engine *e = engine("1m", 0, 10, 10);
  candle_bar b[8];
  candle_stats st;
  trade(e, T0, 10, 0, T0);
  trade(e, T0, 10, -5, T0);
  trade(e, T0, NAN, 1, T0);
  trade(e, T0, INFINITY, 1, T0);
  trade(e, T0, -1, 1, T0);
  trade(e, T0 + 3600 * S, 10, 1, T0);    /* an hour ahead of our clock */
  candle_get_stats(e, &st);
  assert_int_equal(st.bad[CANDLE_BAD_SIZE], 2);
  assert_int_equal(st.bad[CANDLE_BAD_PRICE], 3);
  assert_int_equal(st.bad[CANDLE_BAD_FUTURE], 1);
  assert_int_equal(st.trades, 0);
  assert_int_equal(bars(e, 0, b), 0);
  /* the future trade did not move the horizon: a normal one still counts */
  trade(e, T0 + 1 * S, 10, 1, T0 + 1 * S);
  assert_int_equal(bars(e, 0, b), 1);
  candle_free(e);
}

static void test_bounds(void **state) {
  candle_engine *e = engine("1s", 0, 5, 2);
  candle_bar b[8];
  candle_stats st;
  for (int i = 0; i < 12; i++) trade(e, T0 + i * S, 10 + i, 1, T0 + i * S);
  assert_int_equal(bars(e, 0, b), 5);
  assert_int_equal(b[0].start, T0 / S + 7);   /* the oldest forgotten */
  assert_int_equal(b[4].start, T0 / S + 11);
  candle_trade(e, "MSFT", 4, T0, 1, 1, T0);
  candle_trade(e, "GOOG", 4, T0, 1, 1, T0);   /* a third symbol: refused */
  candle_get_stats(e, &st);
  assert_int_equal(st.symbols, 2);
  assert_int_equal(st.refused, 1);
  assert_int_equal(candle_history(e, "GOOG", 4, 0, 10, b), -1);
  size_t before = st.bytes;
  for (int i = 12; i < 100; i++) trade(e, T0 + i * S, 10, 1, T0 + i * S);
  candle_get_stats(e, &st);
  assert_int_equal(st.bytes, before);        /* no growth past the history */
  candle_free(e);
}

/* ---- random streams against a reference ------------------------------------------------ */

#define R_TRADES 3000
#define R_TF 3

/* A trade as each timeframe's bar holds it: a cancel or correction reaches
 * only the bars still open, so the timeframes may disagree afterwards. */
typedef struct {
  int64_t t;
  double p[R_TF];
  int64_t s[R_TF];
  bool applied[R_TF];   /* counted in that timeframe's bar */
} r_trade;

static r_trade rt[R_TRADES];
static int nrt;

static uint64_t rng_state;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

typedef struct {
  int64_t start;
  double o, h, l, c, pv;
  uint64_t v;
  uint32_t n;
  bool adjusted;
} r_bar;

/* The reference bar of [start, start + tf) from the trades that count, from
 * scratch: stable order by time, open first, close last. */
static bool reference_bar(int tfi, int64_t tf_s, int64_t start, r_bar *out) {
  memset(out, 0, sizeof(*out));
  out->start = start;
  int64_t first = INT64_MAX, last = INT64_MIN;
  for (int i = 0; i < nrt; i++) {
    r_trade *x = &rt[i];
    if (!x->applied[tfi] || floor_div(floor_div(x->t, S), tf_s) * tf_s != start) continue;
    double p = x->p[tfi];
    if (out->n == 0 || p > out->h) out->h = p;
    if (out->n == 0 || p < out->l) out->l = p;
    if (x->t < first) first = x->t, out->o = p;
    if (x->t >= last) last = x->t, out->c = p;
    out->v += (uint64_t)x->s[tfi];
    out->pv += p * (double)x->s[tfi];
    out->n++;
  }
  return out->n > 0;
}

/* Bars of the run by index (the run starts a few seconds before T0 and lasts
 * a few hundred seconds). */
#define R_SLOTS 2000
/* Bars compared field by field over all runs: the check is not vacuous. */
static int exact_bars;
static int slot(int64_t start, int64_t tf_s) { return (int)((start - T0 / S + 100) / tf_s); }

static const int64_t r_tf_s[R_TF] = {1, 5, 60};

/* A bar of the engine (from on_bar or candle_history) against the
 * reference of this moment. */
static void check_bar(int f, const candle_bar *g, bool adjusted) {
  r_bar r;
  bool has = reference_bar(f, r_tf_s[f], g->start, &r);
  if (g->count == 0) {   /* every trade canceled */
    assert_false(has);
    assert_int_equal(g->volume, 0);
    return;
  }
  assert_true(has);
  assert_int_equal(g->count, r.n);
  assert_int_equal(g->volume, r.v);
  assert_true(fabs(g->pv - r.pv) < 1e-6 * r.pv);
  if (adjusted) {
    /* the bar keeps no trades: a removed extreme stays (documented) */
    assert_true(g->high >= r.h);
    assert_true(g->low <= r.l);
    return;
  }
  assert_true(g->open == r.o);
  assert_true(g->close == r.c);
  assert_true(g->high == r.h);
  assert_true(g->low == r.l);
  exact_bars++;
}

/* A random stream of one symbol: every `step_ms` at most an event, trades
 * up to `late_ms` behind the clock (out of order, some after grace). */
static void random_stream(uint64_t seed, int64_t grace_ms, int step_ms, int late_ms) {
  static const char *tfs = "1s,5s,1m";
  const int64_t *tf_s = r_tf_s;
  candle_engine *e = engine(tfs, grace_ms, 1000, 10);
  rng_state = seed;
  nrt = 0;
  nseen = 0;
  int64_t now = T0 + (int64_t)(rnd() % 1000) * MS;
  int64_t mark = 0, mark_arrival = 0, horizon = 0;
  static bool adjusted_bar[R_TF][R_SLOTS];
  memset(adjusted_bar, 0, sizeof(adjusted_bar));
  for (int k = 0; k < R_TRADES; k++) {
    now += (int64_t)(rnd() % (uint64_t)step_ms) * MS;
    int what = (int)(rnd() % 100);
    if (what < 5) {   /* the timer */
      int before = nseen;
      candle_tick(e, now);
      if (mark_arrival && mark + (now - mark_arrival) > horizon) horizon = mark + (now - mark_arrival);
      /* what it handed on, and what a reader sees now, hold every trade so far */
      for (int j = before; j < nseen; j++)
        check_bar(seen[j].tf, &seen[j].bar, adjusted_bar[seen[j].tf][slot(seen[j].bar.start, tf_s[seen[j].tf])]);
      static candle_bar now_bars[4];
      for (int f = 0; f < R_TF; f++)
        for (int j = 0, n = candle_history(e, "AAPL", 4, f, 4, now_bars); j < n; j++)
          check_bar(f, &now_bars[j], adjusted_bar[f][slot(now_bars[j].start, tf_s[f])]);
      continue;
    }
    if (what < 12 && nrt > 0) {   /* a correction or cancel of an earlier trade */
      r_trade *x = &rt[rnd() % (uint64_t)nrt];
      bool all = true;
      for (int f = 0; f < R_TF; f++) all = all && x->applied[f] && x->p[f] == x->p[0] && x->s[f] == x->s[0];
      if (!all) continue;   /* the engine cannot tell which bar a dropped trade missed */
      bool cancel = what < 8;
      double op = x->p[0], cp = op + (double)((int)(rnd() % 21) - 10) / 100;
      int64_t os = x->s[0], cs = 1 + (int64_t)(rnd() % 500);
      if (cancel) candle_cancel(e, "AAPL", 4, x->t, op, os, now);
      else candle_correct(e, "AAPL", 4, x->t, op, os, cp, cs, now);
      for (int f = 0; f < R_TF; f++) {
        int64_t start = floor_div(floor_div(x->t, S), tf_s[f]) * tf_s[f];
        if ((start + tf_s[f]) * S + grace_ms * MS <= horizon) continue;   /* closed: keeps the original */
        adjusted_bar[f][slot(start, tf_s[f])] = true;
        if (cancel) x->applied[f] = false;
        x->p[f] = cp;
        x->s[f] = cs;
      }
      continue;
    }
    /* a trade up to 3 s behind the clock: out of order, some after grace */
    r_trade *x = &rt[nrt++];
    x->t = now - (int64_t)(rnd() % (uint64_t)late_ms) * MS - (int64_t)(rnd() % 1000);
    if (rnd() % 10 == 0) x->t = floor_div(x->t, S) * S;   /* exactly on a boundary */
    double p = 100 + (double)(rnd() % 1000) / 100;
    int64_t size = 1 + (int64_t)(rnd() % 300);
    for (int f = 0; f < R_TF; f++) x->p[f] = p, x->s[f] = size;
    if (x->t > mark) {
      mark = x->t;
      mark_arrival = now;
      if (mark > horizon) horizon = mark;
    }
    for (int f = 0; f < R_TF; f++) {
      int64_t start = floor_div(floor_div(x->t, S), tf_s[f]) * tf_s[f];
      x->applied[f] = (start + tf_s[f]) * S + grace_ms * MS > horizon;
    }
    candle_trade(e, "AAPL", 4, x->t, p, size, now);
  }
  /* every bar of the engine against the reference */
  static candle_bar got[1000];
  for (int f = 0; f < R_TF; f++) {
    int n = candle_history(e, "AAPL", 4, f, 1000, got);
    assert_true(n > 0);
    for (int i = 0; i < n; i++) {
      candle_bar *g = &got[i];
      if (i > 0) assert_true(g->start > got[i - 1].start);
      assert_int_equal(g->start % tf_s[f], 0);
      bool closed = (g->start + tf_s[f]) * S + grace_ms * MS <= horizon;
      assert_int_equal(!!(g->flags & CANDLE_F_CLOSED), closed);
      check_bar(f, g, adjusted_bar[f][slot(g->start, tf_s[f])]);
    }
    /* no reference bar is missing from the engine */
    for (int i = 0; i < nrt; i++) {
      if (!rt[i].applied[f]) continue;
      int64_t start = floor_div(floor_div(rt[i].t, S), tf_s[f]) * tf_s[f];
      bool found = false;
      for (int j = 0; j < n && !found; j++) found = got[j].start == start;
      assert_true(found);
    }
    /* each closed bar went to on_bar once, as it is now */
    for (int i = 0; i < n; i++) {
      if (!(got[i].flags & CANDLE_F_CLOSED)) continue;
      int times = 0;
      for (int j = 0; j < nseen; j++)
        if (seen[j].tf == f && seen[j].bar.start == got[i].start && (seen[j].bar.flags & CANDLE_F_CLOSED)) {
          times++;
          assert_int_equal(seen[j].bar.volume, got[i].volume);
          assert_true(seen[j].bar.close == got[i].close);
        }
      assert_int_equal(times, 1);
    }
  }
  candle_free(e);
}

static void test_random_streams(void **state) {
  exact_bars = 0;
  for (uint64_t seed = 1; seed <= 20; seed++)
    random_stream(seed * 0x9e3779b97f4a7c15ull, (int64_t)(seed % 4) * 500, 200, 3000);
  assert_true(exact_bars > 2000);
}

/* A busy symbol: many trades a second, most in the second of the one
 * before (the engine's pending path), some late; checked the same way. */
static void test_random_busy_streams(void **state) {
  exact_bars = 0;
  for (uint64_t seed = 1; seed <= 20; seed++)
    random_stream(seed * 0xbf58476d1ce4e5b9ull, (int64_t)(seed % 4) * 500, 20, seed % 2 ? 300 : 1200);
  assert_true(exact_bars > 2000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_timeframes, setup),
    cmocka_unit_test_setup(test_trade_on_boundary, setup),
    cmocka_unit_test_setup(test_late_within_and_after_grace, setup),
    cmocka_unit_test_setup(test_quiet_symbol_closed_by_timer, setup),
    cmocka_unit_test_setup(test_delayed_feed, setup),
    cmocka_unit_test_setup(test_live_bar_rate, setup),
    cmocka_unit_test_setup(test_corrections_and_cancels, setup),
    cmocka_unit_test_setup(test_corrections_and_cancels_by_trade_id, setup),
    cmocka_unit_test_setup(test_mid_bars_until_trades, setup),
    cmocka_unit_test_setup(test_bad_input, setup),
    cmocka_unit_test_setup(test_bounds, setup),
    cmocka_unit_test_setup(test_random_streams, setup),
    cmocka_unit_test_setup(test_random_busy_streams, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
