/* hub_rate: interval groups on a real libuv loop. A burst offered between
 * two ticks is flushed once, as its newest message, and counted as skipped
 * for each member; a quiet tick flushes nothing; clients with one interval
 * share a group; the group's timer closes with its last client so that
 * the loop ends; the limits on intervals and groups hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "stream/hub_rate.h"

#define MAX_SYMS 16
#define FLUSHES_MAX 16

typedef struct {
  uint32_t sym;
  uint8_t group;
  uint32_t members[HUB_TRANSPORTS];
  uint64_t seq;
  char payload[32];
} flush_rec;

static flush_rec flushes[FLUSHES_MAX];
static int nflushes;

static void on_flush(void *ud, uint32_t sym, uint8_t group, const uint32_t members[HUB_TRANSPORTS], uint64_t epoch,
                     uint64_t seq, const char *payload, size_t len) {
  assert_true(nflushes < FLUSHES_MAX);
  flush_rec *f = &flushes[nflushes++];
  f->sym = sym;
  f->group = group;
  memcpy(f->members, members, sizeof(f->members));
  f->seq = seq;
  assert_true(len < sizeof(f->payload));
  memcpy(f->payload, payload, len);
  f->payload[len] = '\0';
}

/* Runs the loop until the next tick of any group has flushed (or none
 * is due: the loop runs once). */
static void run_one_tick(uv_loop_t *loop) { uv_run(loop, UV_RUN_ONCE); }

static void offer(hub_rate *r, uint32_t sym, uint64_t seq, const char *s) { hub_rate_offer(r, sym, 1, seq, s, strlen(s)); }

static void test_burst_flushes_newest_once(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  nflushes = 0;
  hub_rate *r = hub_rate_new(&loop, MAX_SYMS, on_flush, NULL);
  int g = hub_rate_join(r, 50);
  assert_int_equal(g, 1);
  assert_int_equal(hub_rate_join(r, 50), 1);   /* the same interval: the same group */
  assert_int_equal(hub_rate_member(r, 1, 3, HUB_WS, 1), 0);
  assert_int_equal(hub_rate_member(r, 1, 3, HUB_WS, 1), 0);
  assert_int_equal(hub_rate_member(r, 1, 3, HUB_SSE, 1), 0);
  assert_int_equal(hub_rate_throttled(r, 3, HUB_WS), 2);
  offer(r, 5, 1, "nobody");                     /* no member of symbol 5: not kept */
  offer(r, 3, 1, "first");
  offer(r, 3, 2, "second");
  offer(r, 3, 3, "third");
  run_one_tick(&loop);
  assert_int_equal(nflushes, 1);
  assert_int_equal(flushes[0].sym, 3);
  assert_int_equal(flushes[0].group, 1);
  assert_int_equal(flushes[0].seq, 3);
  assert_string_equal(flushes[0].payload, "third");
  assert_int_equal(flushes[0].members[HUB_WS], 2);
  assert_int_equal(flushes[0].members[HUB_SSE], 1);
  hub_rate_stats st;
  hub_rate_get_stats(r, &st);
  assert_int_equal(st.skipped[HUB_WS], 4);      /* two messages replaced, two clients each */
  assert_int_equal(st.skipped[HUB_SSE], 2);
  assert_int_equal(st.frames_encoded, 2);       /* one per transport */
  assert_int_equal(st.groups, 1);
  assert_int_equal(st.clients, 2);
  /* a quiet tick sends nothing again */
  run_one_tick(&loop);
  assert_int_equal(nflushes, 1);
  /* the last member gone, the next message is not kept */
  hub_rate_member(r, 1, 3, HUB_WS, -2);
  hub_rate_member(r, 1, 3, HUB_SSE, -1);
  offer(r, 3, 4, "fourth");
  run_one_tick(&loop);
  assert_int_equal(nflushes, 1);
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

static void test_limits(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  hub_rate *r = hub_rate_new(&loop, MAX_SYMS, on_flush, NULL);
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
      cmocka_unit_test(test_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
