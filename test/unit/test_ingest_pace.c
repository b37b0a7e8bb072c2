/* ingest_pace with a real pipeline, real publishers and a real
 * redis-server: a POST's 202 waits while Redis has more than max_backlog
 * PUBLISH commands unanswered (here: Redis is stopped with SIGSTOP after a
 * burst), goes out once it has caught up, or after INGEST_PACE_MAX_WAIT_MS
 * when it does not; no wait with max_backlog 0, while shutting down, or
 * when Redis is not connected at all; pace_release_all answers at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "app/app.h"
#include "app/ingest_pace.h"
#include "base/buf.h"
#include "base/log.h"
#include "http_fixture.h"
#include "market/pipeline.h"
#include "market/publisher.h"
#include "market/quote_store.h"

/* Quotes in the burst, and the backlog over which answers wait. */
#define BURST 400
#define MAX_BACKLOG 100

static struct {
  uv_loop_t loop;
  rfx redis;
  td_config cfg;
  td_app app;
  td_server *s;
  int closed;
} T;

/* The publishers must not give up on a stopped Redis during a test. */
static const pub_options patient = {.conn = {.connect_timeout_ms = 1000, .command_timeout_ms = 10000,
                                             .backoff_min_ms = 20, .backoff_max_ms = 80}};

static void h_quotes(td_request *req) { pace_respond(req_app(req)->pace, req, "{\"accepted\":1}", 14); }

static const td_route routes[] = {{ROUTE_POST, "/quotes", h_quotes, "quotes"}};

static bool all_ready(void *a) {
  struct pub_stats st;
  return pipeline_publisher_stats(T.app.pipeline, &st);
}
static void on_closed(void *a) { T.closed++; }
static bool all_closed(void *a) { return T.closed == TD_REDIS_PUBLISH_CONNS; }

static void start(uint32_t max_backlog, bool redis_up) {
  memset(&T, 0, sizeof(T));
  uv_loop_init(&T.loop);
  T.app.loop = &T.loop;
  T.app.cfg = &T.cfg;
  char url[128];
  if (redis_up) assert_int_equal(rfx_spawn(&T.redis, NULL), 0);
  else T.redis.port = rfx_free_port(); /* nobody listens there */
  rfx_url(&T.redis, url, sizeof(url), NULL, 0);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) T.app.pub[i] = pub_new(&T.loop, url, &patient);
  T.app.store = qstore_new(16, 300000, TD_MAX_SYMBOLS);
  T.app.pipeline = pipeline_new(&T.loop, T.app.pub, "quotes", T.app.store);
  T.app.pace = pace_new(&T.app, max_backlog);
  if (redis_up) assert_true(rfx_run_until(&T.loop, all_ready, NULL, 3000));
  td_server_opts o = hfx_opts(routes, 1, &T.app);
  assert_int_equal(server_start(&T.s, &T.loop, &o), 0);
}

static void stop(void) {
  rfx_signal(&T.redis, SIGCONT);
  assert_true(hfx_stop(&T.loop, T.s, 1000));
  pace_close(T.app.pace);
  pipeline_free(T.app.pipeline);
  for (int i = 0; i < TD_REDIS_PUBLISH_CONNS; i++) pub_close(T.app.pub[i], on_closed, NULL);
  assert_true(rfx_run_until(&T.loop, all_closed, NULL, 3000));
  pace_free(T.app.pace);
  qstore_free(T.app.store);
  assert_true(rfx_loop_close(&T.loop));
  rfx_kill(&T.redis);
  assert_int_equal(buf_live_count(), 0);
}

/* BURST quotes into the pipeline while Redis cannot answer. */
static void burst(void) {
  size_t cap = BURST * 160 + 2;
  char *json = malloc(cap);
  size_t n = 0;
  json[n++] = '[';
  for (int i = 0; i < BURST; i++)
    n += (size_t)snprintf(json + n, cap - n,
                          "%s{\"T\":\"q\",\"S\":\"S%d\",\"bx\":\"V\",\"bp\":1,\"bs\":1,\"ax\":\"V\",\"ap\":1,\"as\":1,"
                          "\"t\":\"2026-11-21T20:00:00Z\"}",
                          i ? "," : "", i);
  json[n++] = ']';
  assert_int_equal(pipeline_feed(T.app.pipeline, json, n), BURST);
  free(json);
}

static void post(hcli *c) {
  assert_int_equal(hcli_open(c, server_port(T.s)), 0);
  hcli_send(c, "POST /quotes HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
}

static ingest_pace_stats stats(void) {
  ingest_pace_stats st;
  pace_get_stats(T.app.pace, &st);
  return st;
}

/* Held while Redis is behind, answered once it caught up. */
static void waits_for_redis(void **state) {
  start(MAX_BACKLOG, true);
  rfx_signal(&T.redis, SIGSTOP);
  burst();
  hcli c;
  post(&c);
  assert_true(hcli_quiet(&T.loop, &c, 100));
  assert_int_equal(c.len, 0);
  assert_int_equal(stats().waiting, 1);
  rfx_signal(&T.redis, SIGCONT);
  hresp r[HCLI_MAX_RESPONSES];
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(r[0].status, 202);
  assert_true(hresp_body_is(&r[0], "{\"accepted\":1}"));
  struct pub_stats ps;
  pipeline_publisher_stats(T.app.pipeline, &ps);
  assert_true(ps.inflight + ps.outbox <= MAX_BACKLOG / 2);
  assert_int_equal(stats().paced, 1);
  assert_int_equal(stats().expired, 0);
  assert_int_equal(stats().waiting, 0);
  hcli_close(&c);
  stop();
}

/* A Redis that stays stalled is waited for INGEST_PACE_MAX_WAIT_MS only. */
static void gives_up_on_a_stalled_redis(void **state) {
  start(MAX_BACKLOG, true);
  rfx_signal(&T.redis, SIGSTOP);
  burst();
  hcli c;
  post(&c);
  hresp r[HCLI_MAX_RESPONSES];
  hfx_want w = {&c, 1, NULL};
  assert_true(rfx_run_until(&T.loop, hfx_has_responses, &w, INGEST_PACE_MAX_WAIT_MS + 2000));
  assert_int_equal(hcli_parse(&c, r, 1), 1);
  assert_int_equal(r[0].status, 202);
  assert_int_equal(stats().paced, 1);
  assert_int_equal(stats().expired, 1);
  hcli_close(&c);
  stop();
}

/* No wait: max_backlog 0, shutting down, or pace_release_all. */
static void no_wait(void **state) {
  hresp r[HCLI_MAX_RESPONSES];
  hcli c;
  start(0, true);
  rfx_signal(&T.redis, SIGSTOP);
  burst();
  post(&c);
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(stats().paced, 0);
  hcli_close(&c);
  stop();

  start(MAX_BACKLOG, true);
  rfx_signal(&T.redis, SIGSTOP);
  burst();
  T.app.shutting_down = true;
  post(&c);
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(stats().paced, 0);
  hcli_close(&c);
  T.app.shutting_down = false;
  post(&c);
  assert_true(hcli_quiet(&T.loop, &c, 50));
  assert_int_equal(stats().waiting, 1);
  pace_release_all(T.app.pace);
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(r[0].status, 202);
  assert_int_equal(stats().expired, 0);
  hcli_close(&c);
  stop();
}

/* Redis not there at all: the outbox conflates, nobody waits for it. */
static void redis_down(void **state) {
  start(MAX_BACKLOG, false);
  burst();
  struct pub_stats ps;
  assert_false(pipeline_publisher_stats(T.app.pipeline, &ps));
  assert_true(ps.outbox > MAX_BACKLOG);
  hcli c;
  hresp r[HCLI_MAX_RESPONSES];
  post(&c);
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(r[0].status, 202);
  assert_int_equal(stats().paced, 0);
  hcli_close(&c);
  stop();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(waits_for_redis),
      cmocka_unit_test(gives_up_on_a_stalled_redis),
      cmocka_unit_test(no_wait),
      cmocka_unit_test(redis_down),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
