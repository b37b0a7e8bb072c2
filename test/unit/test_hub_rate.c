/* hub_rate: interval groups on a real libuv loop. A burst offered between
 * two ticks reaches each phase once, as its newest message, encoded once
 * per transport for every phase, and is counted as skipped for each member;
 * a quiet round flushes nothing; clients with one interval share a group;
 * the group's timer closes with its last client so that the loop ends; the
 * limits on intervals and groups hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "stream/hub_rate.h"

#define MAX_SYMS 16
#define FLUSHES_MAX 16

typedef struct {
  uint32_t sym;
  uint8_t group, phase;
  const td_buf *bufs[HUB_TRANSPORTS];  /* for identity only: freed once every phase was sent them */
  char text[HUB_TRANSPORTS][16];       /* their bytes; "" for none */
  uint64_t seq;
} flush_rec;

static flush_rec flushes[FLUSHES_MAX];
static int nflushes, nencodes;

/* The "encoding" is the payload itself, so a test can see which message a
 * flush carries. */
static td_buf *on_encode(void *ud, uint32_t sym, hub_transport t, uint64_t epoch, uint64_t seq, const char *payload,
                         size_t len) {
  nencodes++;
  return buf_from(payload, len);
}

static void on_flush(void *ud, uint32_t sym, uint8_t group, uint8_t phase, wsd_variant bufs[HUB_TRANSPORTS],
                     uint64_t seq) {
  assert_true(nflushes < FLUSHES_MAX);
  flush_rec *f = &flushes[nflushes++];
  f->sym = sym;
  f->group = group;
  f->phase = phase;
  for (int t = 0; t < HUB_TRANSPORTS; t++) {
    const td_buf *b = bufs[t].plain;
    f->bufs[t] = b;
    assert_true(!b || b->len < sizeof(f->text[t]));
    snprintf(f->text[t], sizeof(f->text[t]), "%.*s", b ? (int)b->len : 0, b ? b->data : "");
  }
  f->seq = seq;
}

/* Runs the loop until `n` flushes were made. One loop iteration runs the
 * timers before and after its poll: one or two ticks. */
static void run_until(uv_loop_t *loop, int n) {
  for (int i = 0; i < 100 && nflushes < n; i++) uv_run(loop, UV_RUN_ONCE);
  assert_int_equal(nflushes, n);
}

/* At least one whole round of ticks: every phase served once or more. */
static void run_round(uv_loop_t *loop) {
  for (int p = 0; p < HUB_RATE_PHASES; p++) uv_run(loop, UV_RUN_ONCE);
}

static bool text_is(const char *text, const char *s) { return !strcmp(text, s); }

static void offer(hub_rate *r, uint32_t sym, uint64_t seq, const char *s) { hub_rate_offer(r, sym, false, 1, seq, s, strlen(s)); }

static void test_burst_flushes_newest_once(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  nflushes = nencodes = 0;
  hub_rate *r = hub_rate_new(&loop, MAX_SYMS, on_encode, on_flush, NULL);
  assert_int_equal(hub_rate_join(r, 50), 1);
  assert_int_equal(hub_rate_join(r, 50), 1);   /* the same interval: the same group */
  /* two WebSocket clients in phases 0 and 2, an SSE client in phase 2 */
  assert_int_equal(hub_rate_member(r, 1, 3, HUB_WS, 0, 1), 0);
  assert_int_equal(hub_rate_member(r, 1, 3, HUB_WS, 2, 1), 0);
  assert_int_equal(hub_rate_member(r, 1, 3, HUB_SSE, 2, 1), 0);
  assert_int_equal(hub_rate_throttled(r, 3, HUB_WS), 2);
  offer(r, 5, 1, "nobody");                     /* no member of symbol 5: not kept */
  offer(r, 3, 1, "first");
  offer(r, 3, 2, "second");
  offer(r, 3, 3, "third");
  run_until(&loop, 2);
  run_round(&loop);
  assert_int_equal(nflushes, 2);                /* phases 0 and 2, once each */
  assert_int_equal(flushes[0].phase, 0);
  assert_int_equal(flushes[1].phase, 2);
  for (int i = 0; i < 2; i++) {
    assert_int_equal(flushes[i].sym, 3);
    assert_int_equal(flushes[i].group, 1);
    assert_int_equal(flushes[i].seq, 3);
    assert_true(text_is(flushes[i].text[HUB_WS], "third"));
  }
  assert_string_equal(flushes[0].text[HUB_SSE], "");        /* no SSE client in phase 0: not encoded yet */
  assert_true(text_is(flushes[1].text[HUB_SSE], "third"));
  assert_ptr_equal(flushes[0].bufs[HUB_WS], flushes[1].bufs[HUB_WS]);   /* one encoding for both phases */
  assert_int_equal(nencodes, 2);
  hub_rate_stats st;
  hub_rate_get_stats(r, &st);
  assert_int_equal(st.skipped[HUB_WS], 4);      /* two messages replaced, two clients each */
  assert_int_equal(st.skipped[HUB_SSE], 2);
  assert_int_equal(st.frames_encoded, 2);       /* one per transport */
  assert_int_equal(st.groups, 1);
  assert_int_equal(st.clients, 2);
  /* a quiet round sends nothing again */
  run_round(&loop);
  assert_int_equal(nflushes, 2);
  /* replaced after one phase was served: the other phase gets the newer
   * one, and the first one gets it on its next tick */
  offer(r, 3, 4, "fourth");
  run_until(&loop, 3);
  uint8_t first = flushes[2].phase, other = first == 0 ? 2 : 0;
  assert_true(text_is(flushes[2].text[HUB_WS], "fourth"));
  offer(r, 3, 5, "fifth");
  run_until(&loop, 5);
  assert_true(text_is(flushes[3].text[HUB_WS], "fifth") && flushes[3].phase == other);
  assert_true(text_is(flushes[4].text[HUB_WS], "fifth") && flushes[4].phase == first);
  hub_rate_get_stats(r, &st);
  /* "fourth" was never sent to the other phase's clients: phase 0 has one on WebSocket, phase 2 one of each */
  assert_int_equal(st.skipped[HUB_WS], 5);
  assert_int_equal(st.skipped[HUB_SSE], other == 2 ? 3 : 2);
  /* the last member gone, the next message is not kept */
  hub_rate_member(r, 1, 3, HUB_WS, 0, -1);
  hub_rate_member(r, 1, 3, HUB_WS, 2, -1);
  hub_rate_member(r, 1, 3, HUB_SSE, 2, -1);
  offer(r, 3, 6, "sixth");
  run_round(&loop);
  assert_int_equal(nflushes, 5);
  hub_rate_leave(r, 1);
  hub_rate_leave(r, 1);
  /* the group's timer closed: the loop ends */
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  hub_rate_get_stats(r, &st);
  assert_int_equal(st.groups, 0);
  assert_int_equal(st.clients, 0);
  hub_rate_free(r);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A group's pattern clients: a symbol a pattern matches gets its slot with
 * its first quote (none before), and a burst reaches their phase once, as
 * the newest; with no pattern client left, nothing is kept. */
static void test_pattern_clients_get_newest_once(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  nflushes = nencodes = 0;
  hub_rate *r = hub_rate_new(&loop, MAX_SYMS, on_encode, on_flush, NULL);
  assert_int_equal(hub_rate_join(r, 50), 1);
  assert_int_equal(hub_rate_wild(r, 1, HUB_WS, 1, 1), 0);
  hub_rate_offer(r, 7, false, 1, 1, "unmatched", 9);   /* no pattern matches it: not kept */
  hub_rate_offer(r, 7, true, 1, 2, "old", 3);
  hub_rate_offer(r, 7, true, 1, 3, "new", 3);
  run_until(&loop, 1);
  run_round(&loop);
  assert_int_equal(nflushes, 1);
  assert_int_equal(flushes[0].sym, 7);
  assert_int_equal(flushes[0].phase, 1);
  assert_true(text_is(flushes[0].text[HUB_WS], "new"));
  assert_string_equal(flushes[0].text[HUB_SSE], "");
  assert_int_equal(nencodes, 1);
  assert_int_equal(hub_rate_wild(r, 1, HUB_WS, 1, -1), 0);
  hub_rate_offer(r, 7, true, 1, 4, "gone", 4);
  run_round(&loop);
  assert_int_equal(nflushes, 1);
  hub_rate_leave(r, 1);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  hub_rate_free(r);
  uv_loop_close(&loop);
}

static void test_limits(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  hub_rate *r = hub_rate_new(&loop, MAX_SYMS, on_encode, on_flush, NULL);
  assert_true(hub_rate_valid(0));
  assert_true(hub_rate_valid(HUB_RATE_MIN_MS));
  assert_true(hub_rate_valid(HUB_RATE_MAX_MS));
  assert_false(hub_rate_valid(HUB_RATE_MIN_MS - 1));
  assert_false(hub_rate_valid(HUB_RATE_MAX_MS + 1));
  assert_false(hub_rate_valid(-1));
  for (int i = 0; i < HUB_RATE_MAX_GROUPS; i++) assert_int_equal(hub_rate_join(r, HUB_RATE_MIN_MS + (uint32_t)i), i + 1);
  assert_int_equal(hub_rate_join(r, HUB_RATE_MAX_MS), -ENOSPC);
  assert_int_equal(hub_rate_join(r, HUB_RATE_MIN_MS), 1);   /* an interval in use still joins */
  assert_int_equal(hub_rate_interval(r, 2), HUB_RATE_MIN_MS + 1);
  hub_rate_leave(r, 1);
  for (int i = 1; i <= HUB_RATE_MAX_GROUPS; i++) hub_rate_leave(r, (uint8_t)i);
  assert_int_equal(hub_rate_join(r, HUB_RATE_MAX_MS), 1);   /* room again */
  hub_rate_leave(r, 1);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  hub_rate_free(r);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_flushes_newest_once),
      cmocka_unit_test(test_pattern_clients_get_newest_once),
      cmocka_unit_test(test_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
