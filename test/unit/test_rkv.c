/* rkv against a real redis-server: records go out in pipelined batches
 * (on the timer below the batch size, at once at it), with their TTL; a
 * full queue drops and counts while Redis is away and the rest is written
 * once it is back; lookups answer found, missing, unavailable (not
 * connected, no reply in time), and a cancelled one never calls back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/log.h"
#include "redis/rkv.h"
#include "redis_fixture.h"

#define FLUSH_MS 50
#define BATCH 8
#define QUEUE 5
#define TTL_MS 60000
#define GET_TIMEOUT_MS 200

typedef struct ctx {
  uv_loop_t loop;
  rfx redis;
  char url[128];
  td_rkv *kv;
  int closed;
  /* the last lookup's answer */
  int answers;
  rkv_result res;
  char value[64];
  const char *why;
} ctx;

static void on_closed(void *ud) { ((ctx *)ud)->closed++; }
static bool closed(void *a) { return ((ctx *)a)->closed == 1; }
static bool connected(void *a) {
  rkv_stats s;
  rkv_get_stats(((ctx *)a)->kv, &s);
  return s.connected;
}
static bool answered(void *a) { return ((ctx *)a)->answers > 0; }

static rkv_stats stats(const ctx *c) {
  rkv_stats s;
  rkv_get_stats(c->kv, &s);
  return s;
}

static void start(ctx *c, bool with_redis) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  if (with_redis) assert_int_equal(rfx_spawn(&c->redis, NULL), 0);
  else c->redis.port = rfx_free_port(); /* nothing listens there yet */
  rfx_url(&c->redis, c->url, sizeof(c->url), NULL, 0);
  rkv_options o = {.flush_ms = FLUSH_MS, .batch_max = BATCH, .queue_max = QUEUE, .get_timeout_ms = GET_TIMEOUT_MS,
                   .conn = {.connect_timeout_ms = 500, .backoff_min_ms = 20, .backoff_max_ms = 80}};
  const char *err = NULL;
  c->kv = rkv_new(&c->loop, c->url, &o, &err);
  assert_non_null(c->kv);
  rkv_start(c->kv);
  if (with_redis) assert_true(rfx_run_until(&c->loop, connected, c, 2000));
}

static void finish(ctx *c) {
  rkv_close(c->kv, on_closed, c);
  assert_true(rfx_run_until(&c->loop, closed, c, 3000));
  assert_true(rfx_loop_close(&c->loop));
  rfx_kill(&c->redis);
}

static void put(ctx *c, int i) {
  char key[32], val[32];
  int kn = snprintf(key, sizeof(key), "rec:%d", i), vn = snprintf(val, sizeof(val), "{\"n\":%d}", i);
  assert_int_equal(rkv_put(c->kv, key, (size_t)kn, val, (size_t)vn, TTL_MS), 0);
}

static bool all_written(void *a) {
  rkv_stats s = stats(a);
  return s.written == s.queued;
}

static void on_answer(void *ud, rkv_result res, const char *v, size_t n, const char *why) {
  ctx *c = ud;
  c->answers++;
  c->res = res;
  c->why = why;
  snprintf(c->value, sizeof(c->value), "%.*s", (int)n, v ? v : "");
}

static void test_batch_on_timer_with_ttl(void **state) {
  ctx c;
  start(&c, true);
  for (int i = 0; i < 3; i++) put(&c, i);
  /* below the batch size nothing goes out before the timer */
  assert_int_equal(stats(&c).batches, 0);
  assert_int_equal(stats(&c).waiting, 3);
  assert_true(rfx_run_until(&c.loop, all_written, &c, 2000));
  rkv_stats s = stats(&c);
  assert_int_equal(s.batches, 1); /* one pipelined batch for the three */
  assert_int_equal(s.written, 3);
  assert_int_equal(s.waiting, 0);
  long long pttl = rfx_int_command(&c.redis, "PTTL rec:1");
  assert_true(pttl > TTL_MS - 5000 && pttl <= TTL_MS);
  redisContext *r = rfx_client(&c.redis);
  redisReply *rep = redisCommand(r, "GET rec:2");
  assert_string_equal(rep->str, "{\"n\":2}");
  freeReplyObject(rep);
  redisFree(r);
  finish(&c);
}

static void test_full_batch_goes_at_once(void **state) {
  ctx c;
  start(&c, true);
  /* the queue bound (QUEUE) is below BATCH here: raise neither, fill in steps */
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < QUEUE; i++) put(&c, round * QUEUE + i);
    assert_true(rfx_run_until(&c.loop, all_written, &c, 2000));
  }
  assert_int_equal(stats(&c).written, 2 * QUEUE);
  finish(&c);

  /* with a queue larger than the batch, the BATCH-th put sends at once */
  memset(&c, 0, sizeof(c));
  assert_int_equal(uv_loop_init(&c.loop), 0);
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  rfx_url(&c.redis, c.url, sizeof(c.url), NULL, 0);
  rkv_options o = {.flush_ms = 60000, .batch_max = BATCH, .queue_max = 4 * BATCH};
  c.kv = rkv_new(&c.loop, c.url, &o, NULL);
  rkv_start(c.kv);
  assert_true(rfx_run_until(&c.loop, connected, &c, 2000));
  for (int i = 0; i < BATCH - 1; i++) put(&c, i);
  assert_int_equal(stats(&c).batches, 0);
  put(&c, BATCH - 1);
  assert_int_equal(stats(&c).batches, 1); /* no wait for the (one minute) timer */
  assert_int_equal(stats(&c).waiting, 0);
  assert_true(rfx_run_until(&c.loop, all_written, &c, 2000));
  assert_int_equal(stats(&c).written, BATCH);
  finish(&c);
}

static bool written_two(void *a) { return stats(a).written == QUEUE; }

static void test_redis_away_drops_past_the_bound(void **state) {
  ctx c;
  start(&c, false);
  rfx_run_for(&c.loop, 3 * FLUSH_MS); /* connection attempts fail meanwhile */
  for (int i = 0; i < QUEUE + 3; i++) {
    char key[16];
    int kn = snprintf(key, sizeof(key), "rec:%d", i);
    int rc = rkv_put(c.kv, key, (size_t)kn, "v", 1, TTL_MS);
    assert_int_equal(rc, i < QUEUE ? 0 : UV_ENOBUFS);
  }
  rkv_stats s = stats(&c);
  assert_int_equal(s.dropped, 3);
  assert_int_equal(s.waiting, QUEUE);
  assert_false(s.connected);
  /* a lookup cannot be sent: answered at once, no callback */
  const char *why = NULL;
  assert_null(rkv_get_start(c.kv, "rec:0", 5, on_answer, &c, &why));
  assert_string_equal(why, "not connected");
  /* Redis comes: what waited is written */
  assert_int_equal(rfx_spawn(&c.redis, NULL), 0);
  assert_true(rfx_run_until(&c.loop, written_two, &c, 3000));
  assert_int_equal(rfx_int_command(&c.redis, "EXISTS rec:0 rec:4 rec:5"), 2);
  assert_int_equal(stats(&c).dropped, 3);
  finish(&c);
}

static void test_lookups(void **state) {
  ctx c;
  start(&c, true);
  put(&c, 7);
  assert_true(rfx_run_until(&c.loop, all_written, &c, 2000));
  assert_non_null(rkv_get_start(c.kv, "rec:7", 5, on_answer, &c, NULL));
  assert_int_equal(c.answers, 0); /* never from inside the call */
  assert_true(rfx_run_until(&c.loop, answered, &c, 2000));
  assert_int_equal(c.res, RKV_FOUND);
  assert_string_equal(c.value, "{\"n\":7}");

  c.answers = 0;
  assert_non_null(rkv_get_start(c.kv, "rec:nope", 8, on_answer, &c, NULL));
  assert_true(rfx_run_until(&c.loop, answered, &c, 2000));
  assert_int_equal(c.res, RKV_MISSING);

  /* cancelled: its reply comes and is dropped, no callback */
  c.answers = 0;
  rkv_get *g = rkv_get_start(c.kv, "rec:7", 5, on_answer, &c, NULL);
  rkv_get_cancel(g);
  rfx_run_for(&c.loop, 100);
  assert_int_equal(c.answers, 0);
  rkv_stats s = stats(&c);
  assert_int_equal(s.cancelled, 1);
  assert_int_equal(s.gets_out, 0);

  /* a stalled server: answered unavailable at the timeout */
  rfx_signal(&c.redis, SIGSTOP);
  assert_non_null(rkv_get_start(c.kv, "rec:7", 5, on_answer, &c, NULL));
  assert_true(rfx_run_until(&c.loop, answered, &c, 5 * GET_TIMEOUT_MS));
  assert_int_equal(c.res, RKV_UNAVAILABLE);
  assert_string_equal(c.why, "no reply in time");
  assert_int_equal(stats(&c).timeouts, 1);
  rfx_signal(&c.redis, SIGCONT);
  rfx_run_for(&c.loop, 50);
  assert_int_equal(c.answers, 1); /* the late reply calls no one */
  finish(&c);
}

static void test_bad_records_refused(void **state) {
  ctx c;
  start(&c, true);
  static char big[RKV_VALUE_MAX + 1];
  assert_int_equal(rkv_put(c.kv, "k", 1, big, sizeof(big), TTL_MS), UV_ENOBUFS);
  assert_int_equal(rkv_put(c.kv, "", 0, "v", 1, TTL_MS), UV_ENOBUFS);
  assert_int_equal(stats(&c).dropped, 2);
  const char *why = NULL;
  assert_null(rkv_get_start(c.kv, "", 0, on_answer, &c, &why));
  assert_string_equal(why, "bad key");
  finish(&c);
}

int main(void) {
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batch_on_timer_with_ttl),
      cmocka_unit_test(test_full_batch_goes_at_once),
      cmocka_unit_test(test_redis_away_drops_past_the_bound),
      cmocka_unit_test(test_lookups),
      cmocka_unit_test(test_bad_records_refused),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  log_close();
  return rc;
}
