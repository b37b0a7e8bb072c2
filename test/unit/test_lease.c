/* lease against a real redis-server: one holder among three, a clean
 * release handed over at once, a holder that cannot renew (redis paused)
 * stops being one before the key could have expired on the server, a
 * holder whose key was taken over steps down, and bad options. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/log.h"
#include "redis/lease.h"
#include "redis_fixture.h"

#define N 3
#define TTL_MS 600
#define RENEW_MS 100

typedef struct ctx {
  uv_loop_t loop;
  rfx redis;
  char url[128];
  td_lease *l[N];
  char id[N][LEASE_ID_LEN + 1];
  int became_holder[N], became_standby[N];
  int closed;
} ctx;

static const char *KEY = "test:lease";

static void on_role(td_lease *l, bool holder, void *ud) {
  ctx *c = ud;
  for (int i = 0; i < N; i++)
    if (c->l[i] == l) (holder ? c->became_holder : c->became_standby)[i]++;
}

static void on_closed(void *ud) { ((ctx *)ud)->closed++; }

static int holders(const ctx *c) {
  int n = 0;
  for (int i = 0; i < N; i++) n += c->l[i] && lease_held(c->l[i]);
  return n;
}
static bool one_holder(void *a) { return holders(a) == 1; }
static bool no_holder(void *a) { return holders(a) == 0; }
static bool all_closed(void *a) { return ((ctx *)a)->closed == N; }

static int holder_index(const ctx *c) {
  for (int i = 0; i < N; i++)
    if (c->l[i] && lease_held(c->l[i])) return i;
  return -1;
}

static void ctx_start(ctx *c) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  assert_int_equal(rfx_spawn(&c->redis, NULL), 0);
  rfx_url(&c->redis, c->url, sizeof(c->url), NULL, 0);
  lease_options o = {.key = KEY, .ttl_ms = TTL_MS, .renew_ms = RENEW_MS,
                     .conn = {.connect_timeout_ms = 500, .backoff_min_ms = 20, .backoff_max_ms = 80}};
  for (int i = 0; i < N; i++) {
    lease_make_id(c->id[i]);
    const char *err = NULL;
    c->l[i] = lease_new(&c->loop, c->url, c->id[i], &o, on_role, c, &err);
    assert_non_null(c->l[i]);
    lease_start(c->l[i]);
  }
}

/* Every lease has seen the holder (the standbys had a round). */
static bool all_see_holder(void *a) {
  ctx *c = a;
  int h = holder_index(c);
  for (int i = 0; i < N && h >= 0; i++) {
    lease_stats st;
    lease_get_stats(c->l[i], &st);
    if (strcmp(st.holder_id, c->id[h]) != 0) return false;
  }
  return h >= 0;
}

/* Three leases, one of which became the holder and the others saw it: its index. */
static int ctx_start_holder(ctx *c) {
  ctx_start(c);
  assert_true(rfx_run_until(&c->loop, one_holder, c, 2000));
  assert_true(rfx_run_until(&c->loop, all_see_holder, c, 2000));
  return holder_index(c);
}

static void ctx_finish(ctx *c) {
  /* a NULL slot was closed by its test, with on_closed too */
  for (int i = 0; i < N; i++)
    if (c->l[i]) lease_close(c->l[i], on_closed, c);
  assert_true(rfx_run_until(&c->loop, all_closed, c, 3000));
  assert_true(rfx_loop_close(&c->loop));
  rfx_kill(&c->redis);
}

static void redis_value(const ctx *c, char *out, size_t n) {
  redisContext *r = rfx_client(&c->redis);
  assert_non_null(r);
  redisReply *rep = redisCommand(r, "GET %s", KEY);
  snprintf(out, n, "%s", rep && rep->type == REDIS_REPLY_STRING ? rep->str : "");
  freeReplyObject(rep);
  redisFree(r);
}

static void test_one_holder_among_three(void **state) {
  ctx c;
  ctx_start(&c);
  assert_true(rfx_run_until(&c.loop, one_holder, &c, 2000));
  /* it stays one through many renew rounds, and the key names it */
  for (int t = 0; t < 10; t++) {
    rfx_run_for(&c.loop, RENEW_MS);
    assert_int_equal(holders(&c), 1);
  }
  int h = holder_index(&c);
  char v[64];
  redis_value(&c, v, sizeof(v));
  assert_string_equal(v, c.id[h]);
  lease_stats st;
  lease_get_stats(c.l[(h + 1) % N], &st);
  assert_false(st.holder);
  assert_string_equal(st.holder_id, c.id[h]);
  assert_int_equal(st.acquired, 0);
  lease_get_stats(c.l[h], &st);
  assert_int_equal(st.acquired, 1);
  assert_int_equal(st.takeovers, 0);
  assert_true(st.rounds >= 5);
  assert_int_equal(c.became_holder[h], 1);
  ctx_finish(&c);
}

static void test_release_hands_over(void **state) {
  ctx c;
  int h = ctx_start_holder(&c);
  lease_close(c.l[h], on_closed, &c);
  c.l[h] = NULL;
  /* the key was deleted: a standby takes over at its next round, long
   * before the TTL would have freed it */
  uint64_t t0 = uv_hrtime();
  assert_true(rfx_run_until(&c.loop, one_holder, &c, 2000));
  assert_true((uv_hrtime() - t0) / 1000000 < TTL_MS);
  int h2 = holder_index(&c);
  assert_int_not_equal(h2, h);
  lease_stats st;
  lease_get_stats(c.l[h2], &st);
  assert_int_equal(st.takeovers, 1);
  ctx_finish(&c);
}

/* Redis paused: nobody can renew. The holder must stop being one before
 * the key's TTL can have run out on the server. */
static void test_unrenewed_holder_steps_down_first(void **state) {
  ctx c;
  int h = ctx_start_holder(&c);
  rfx_signal(&c.redis, SIGSTOP);
  uint64_t stopped = uv_hrtime();
  assert_true(rfx_run_until(&c.loop, no_holder, &c, 2 * TTL_MS));
  /* the last renew the server answered was sent before the stop, so the
   * holder's deadline (that send + TTL - margin) lies within TTL of the
   * stop, and the key lives at least until that send + TTL */
  assert_true((uv_hrtime() - stopped) / 1000000 < TTL_MS);
  rfx_run_for(&c.loop, 20); /* the role callback follows at the deadline timer */
  assert_int_equal(c.became_standby[h], 1);
  lease_stats st;
  lease_get_stats(c.l[h], &st);
  assert_int_equal(st.expired_unrenewed, 1);
  rfx_signal(&c.redis, SIGCONT);
  /* and a holder comes back once Redis answers */
  assert_true(rfx_run_until(&c.loop, one_holder, &c, 3000));
  ctx_finish(&c);
}

/* Someone else's value in the key (an operator, a takeover after a pause):
 * the holder's next renew sees it and steps down. */
static void test_holder_sees_takeover(void **state) {
  ctx c;
  int h = ctx_start_holder(&c);
  redisContext *r = rfx_client(&c.redis);
  redisReply *rep = redisCommand(r, "SET %s %s PX %d", KEY, "ffffffffffffffff", 60000);
  freeReplyObject(rep);
  redisFree(r);
  assert_true(rfx_run_until(&c.loop, no_holder, &c, 1000));
  rfx_run_for(&c.loop, 3 * RENEW_MS);
  assert_int_equal(holders(&c), 0);
  lease_stats st;
  lease_get_stats(c.l[h], &st);
  assert_string_equal(st.holder_id, "ffffffffffffffff");
  assert_int_equal(st.lost, 1);
  lease_close(c.l[h], on_closed, &c);
  c.l[h] = NULL;
  rfx_run_for(&c.loop, 50);
  /* the release left another instance's key alone */
  char v[64];
  redis_value(&c, v, sizeof(v));
  assert_string_equal(v, "ffffffffffffffff");
  ctx_finish(&c);
}

static void test_bad_options(void **state) {
  lease_options o = {.key = "k", .ttl_ms = 1000, .renew_ms = 900};
  assert_non_null(lease_check_options(&o)); /* leaves no margin */
  o.renew_ms = 300;
  assert_null(lease_check_options(&o));
  o.ttl_ms = 10;
  assert_non_null(lease_check_options(&o));
  o.ttl_ms = 1000;
  o.key = "";
  assert_non_null(lease_check_options(&o));
  char id[LEASE_ID_LEN + 1], id2[LEASE_ID_LEN + 1];
  lease_make_id(id);
  lease_make_id(id2);
  assert_int_equal(strlen(id), LEASE_ID_LEN);
  assert_int_equal(strspn(id, "0123456789abcdef"), LEASE_ID_LEN);
  assert_string_not_equal(id, id2);
  uv_loop_t loop;
  uv_loop_init(&loop);
  const char *err = NULL;
  o.key = "k";
  assert_null(lease_new(&loop, "redis://127.0.0.1:1", "short", &o, NULL, NULL, &err));
  assert_non_null(err);
  assert_null(lease_new(&loop, "http://x", id, &o, NULL, NULL, &err));
  uv_loop_close(&loop);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_holder_among_three),
      cmocka_unit_test(test_release_hands_over),
      cmocka_unit_test(test_unrenewed_holder_steps_down_first),
      cmocka_unit_test(test_holder_sees_takeover),
      cmocka_unit_test(test_bad_options),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  return rc;
}
