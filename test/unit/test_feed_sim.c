/* feed_sim: rate arithmetic, determinism, realistic valid quotes, and the
 * timer lifecycle on a real loop (no assertion on timing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>

#include "market/feed_sim.c"

/* The arithmetic is checked on a 10 ms step, whatever the feed's own tick. */
#define SIM_TEST_TICK_MS 10

/* 2026-11-21T20:00:00.000000000Z */
#define T0 1795291200000000000ll

typedef struct {
  char *text;
  size_t len, cap;
  int batches;
  sim_feed *close_after;    /* sim_close from inside deliver after 2 batches */
  int closed;
} sink;

static void collect(void *ud, const char *json, size_t len) {
  sink *k = ud;
  if (k->len + len + 1 > k->cap) {
    k->cap = (k->len + len + 1) * 2;
    k->text = realloc(k->text, k->cap);
  }
  memcpy(k->text + k->len, json, len);
  k->len += len;
  k->text[k->len++] = '\n';
  k->batches++;
  if (k->close_after && k->batches == 2) sim_close(k->close_after, NULL);
}

static void test_quotes_due(void **state) {
  double carry = 0;
  uint64_t total = 0;
  for (int i = 0; i < 100; i++) {
    uint64_t n = sim_quotes_due(20, SIM_TEST_TICK_MS, &carry);
    assert_true(n <= 1);
    total += n;
    if (i == 3) assert_int_equal(total, 0);   /* 0.8 so far: carried, not rounded up */
  }
  assert_int_equal(total, 20);   /* one second's worth, nothing lost to rounding */
  carry = 0;
  total = 0;
  for (int i = 0; i < 200; i++) total += sim_quotes_due(1234.5, SIM_TEST_TICK_MS, &carry);
  assert_int_equal(total, 2469);
  assert_true(carry >= 0 && carry < 1);
  carry = 0;
  assert_int_equal(sim_quotes_due(1e6, SIM_TEST_TICK_MS, &carry), 10000);
  assert_int_equal(sim_quotes_due(1e6, 0, &carry), 0);
  carry = 0.7;
  assert_int_equal(sim_quotes_due(0, SIM_TEST_TICK_MS, &carry), 0);   /* paused */
  assert_true(carry == 0);
  carry = 0.5;
  assert_int_equal(sim_quotes_due(50, SIM_TEST_TICK_MS, &carry), 1);
  assert_true(carry == 0);
}

static void test_new_errors(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *err = NULL;
  assert_null(sim_new(&loop, "", 10, 1, collect, NULL, &err));
  assert_string_equal(err, "no symbols");
  assert_null(sim_new(&loop, " , ", 10, 1, collect, NULL, &err));
  assert_string_equal(err, "no symbols");
  assert_null(sim_new(&loop, "AAPL,ms ft", 10, 1, collect, NULL, &err));
  assert_string_equal(err, "invalid symbol");
  assert_null(sim_new(&loop, "AAPL", -1, 1, collect, NULL, &err));
  assert_string_equal(err, "invalid rate");
  assert_null(sim_new(&loop, "AAPL", NAN, 1, collect, NULL, &err));
  assert_string_equal(err, "invalid rate");
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void closed_cb(void *ud) { ((sink *)ud)->closed++; }

static sim_feed *make(uv_loop_t *loop, uint64_t seed, sink *k) {
  const char *err = NULL;
  sim_feed *s = sim_new(loop, "AAPL, MSFT,BRK.B,GOOGL", 100, seed, collect, k, &err);
  assert_non_null(s);
  return s;
}

static void test_deterministic(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sink a = {0}, b = {0}, c = {0};
  sim_feed *sa = make(&loop, 42, &a), *sb = make(&loop, 42, &b), *sc = make(&loop, 43, &c);
  sim_generate(sa, 2500, T0);
  sim_generate(sb, 2500, T0);
  sim_generate(sc, 2500, T0);
  assert_int_equal(a.batches, 3);   /* 1000 + 1000 + 500 */
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.text, b.text, a.len);
  assert_true(a.len != c.len || memcmp(a.text, c.text, a.len) != 0);
  sim_close(sa, closed_cb);
  sim_close(sb, closed_cb);
  sim_close(sc, closed_cb);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.closed + b.closed + c.closed, 3);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(a.text);
  free(b.text);
  free(c.text);
}

typedef struct {
  int n;
  const char *want_sym[4];
  double last_mid[4];
} quote_check;

static void check_quote(void *ud, const smsg_msg *m) {
  quote_check *q = ud;
  /* The published payload: smsg_msg's jansson object is private (and absent
   * on stream_msg's fast path). */
  td_buf *b = smsg_encode(m, 1, "0000000000000000");
  assert_non_null(b);
  json_t *o = json_loadb(b->data, b->len, 0, NULL);
  assert_non_null(o);
  assert_int_equal(m->kind, SMSG_QUOTE);
  assert_string_equal(m->symbol, q->want_sym[q->n % 4]);   /* round-robin */
  double bp = json_number_value(json_object_get(o, "bp")), ap = json_number_value(json_object_get(o, "ap"));
  assert_true(bp >= SIM_PRICE_FLOOR - 0.5);
  assert_true(ap > bp);                                     /* spread > 0 */
  assert_true(ap - bp < 0.2);                               /* and a few cents */
  assert_true(json_integer_value(json_object_get(o, "bs")) >= 100);
  assert_true(json_integer_value(json_object_get(o, "as")) >= 100);
  assert_non_null(strchr(exchanges, json_string_value(json_object_get(o, "bx"))[0]));
  const char *t = json_string_value(json_object_get(o, "t"));
  assert_int_equal(strlen(t), 30);                          /* nanoseconds */
  assert_memory_equal(t, "2026-11-21T20:00:00.", 20);
  double mid = (ap + bp) / 2, *last = &q->last_mid[q->n % 4];
  if (*last > 0) assert_true(fabs(mid / *last - 1) < 0.02);   /* a walk, not jumps */
  *last = mid;
  q->n++;
  json_decref(o);
  buf_unref(b);
}

static void test_quotes_are_valid_alpaca(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sink a = {0};
  sim_feed *s = make(&loop, 7, &a);
  sim_generate(s, 4000, T0);
  quote_check q = {.want_sym = {"AAPL", "MSFT", "BRK.B", "GOOGL"}};
  smsg_stats st = {0};
  for (char *line = a.text, *nl; (nl = memchr(line, '\n', a.len - (size_t)(line - a.text))); line = nl + 1)
    assert_true(smsg_parse_stream(line, (size_t)(nl - line), check_quote, NULL, &q, &st) > 0);
  assert_int_equal(q.n, 4000);
  assert_int_equal(st.delivered, 4000);
  assert_int_equal(st.items, 4000);   /* nothing skipped */
  sim_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(a.text);
}

typedef struct {
  int quotes, trades;
  char sym[TD_SYMBOL_MAX + 1];
  double bp, ap;
} tape_check;

/* Each trade follows a quote of its symbol and lies between its bid and ask. */
static void check_tape(void *ud, const smsg_msg *m) {
  tape_check *k = ud;
  td_buf *b = smsg_encode(m, 1, "0000000000000000");
  json_t *o = json_loadb(b->data, b->len, 0, NULL);
  assert_non_null(o);
  if (m->kind == SMSG_QUOTE) {
    k->quotes++;
    snprintf(k->sym, sizeof(k->sym), "%s", m->symbol);
    k->bp = json_number_value(json_object_get(o, "bp"));
    k->ap = json_number_value(json_object_get(o, "ap"));
  } else {
    assert_int_equal(m->kind, SMSG_TRADE);
    k->trades++;
    assert_string_equal(m->symbol, k->sym);
    double p = json_number_value(json_object_get(o, "p"));
    assert_true(p >= k->bp - 1e-9 && p <= k->ap + 1e-9);
    json_int_t size = json_integer_value(json_object_get(o, "s"));
    assert_true(size >= 1 && size <= 500);
    assert_int_equal(json_integer_value(json_object_get(o, "i")), k->trades);
  }
  json_decref(o);
  buf_unref(b);
}

static void test_trades_between_bid_and_ask(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sink a = {0};
  sim_feed *s = make(&loop, 7, &a);
  sim_set_trades(s, 0.5);
  sim_set_trades(s, 2);   /* out of range: ignored */
  sim_generate(s, 4000, T0);
  tape_check k = {0};
  smsg_stats st = {0};
  for (char *line = a.text, *nl; (nl = memchr(line, '\n', a.len - (size_t)(line - a.text))); line = nl + 1)
    assert_true(smsg_parse_stream(line, (size_t)(nl - line), check_tape, NULL, &k, &st) > 0);
  sim_stats ss;
  sim_get_stats(s, &ss);
  assert_int_equal(k.quotes, 4000);
  assert_int_equal(k.trades, ss.trades);
  assert_true(k.trades > 1500 && k.trades < 2500);
  assert_int_equal(st.items, st.delivered);   /* nothing skipped */
  sim_close(s, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(a.text);
}

/* A timer that fails the test instead of letting a broken feed hang it. */
static void on_guard(uv_timer_t *t) { fail_msg("feed did not deliver"); }

static void test_timer_lifecycle(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sink a = {0};
  const char *err;
  /* High rate so that each tick yields at least one batch. */
  sim_feed *s = sim_new(&loop, "AAPL", 200000, 1, collect, &a, &err);
  a.close_after = s;
  uv_timer_t guard;
  uv_timer_init(&loop, &guard);
  uv_timer_start(&guard, on_guard, 10000, 0);
  uv_unref((uv_handle_t *)&guard);
  assert_int_equal(sim_start(s), 0);
  uv_run(&loop, UV_RUN_DEFAULT);   /* ends when the feed closed itself from deliver */
  assert_int_equal(a.batches, 2);   /* nothing delivered after sim_close */
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(a.text);
}

typedef struct {
  sim_feed *s;
  sink *k;
} pause_ctx;

static void on_check(uv_timer_t *t) {
  pause_ctx *p = t->data;
  sim_stats st;
  sim_get_stats(p->s, &st);
  if (st.ticks < 5) return;
  assert_int_equal(st.quotes, 0);   /* rate 0: ticks, no quotes */
  assert_int_equal(p->k->batches, 0);
  uv_timer_stop(t);
  sim_close(p->s, closed_cb);
}

static void test_paused(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  sink a = {0};
  const char *err;
  sim_feed *s = sim_new(&loop, "AAPL", 0, 1, collect, &a, &err);
  assert_int_equal(sim_start(s), 0);
  assert_int_equal(sim_start(s), 0);   /* idempotent */
  pause_ctx p = {s, &a};
  uv_timer_t check;
  uv_timer_init(&loop, &check);
  check.data = &p;
  uv_timer_start(&check, on_check, SIM_TEST_TICK_MS, SIM_TEST_TICK_MS);
  uv_run(&loop, UV_RUN_ONCE);
  while (!a.closed) uv_run(&loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&check, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_quotes_due),     cmocka_unit_test(test_new_errors),
    cmocka_unit_test(test_deterministic),  cmocka_unit_test(test_quotes_are_valid_alpaca),
    cmocka_unit_test(test_timer_lifecycle), cmocka_unit_test(test_paused),
    cmocka_unit_test(test_trades_between_bid_and_ask),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
