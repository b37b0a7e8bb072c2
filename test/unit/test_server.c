/* server (with router and http_stats) over real sockets: 404 and 405 with
 * Allow from the caller's route table, the per-route and latency counters,
 * the connection limit (503), and server_shutdown: idle and streaming
 * connections close at once, a request under way finishes as the
 * connection's last, new connections are refused, and past the grace
 * period whatever is left is closed (a deferred request aborted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "http_fixture.h"

static struct {
  uv_loop_t loop;
  td_server *s;
  int stream_closes;
  char stream_reason[64];
} T;

static void own_close(void *o, const char *reason) {
  T.stream_closes++;
  snprintf(T.stream_reason, sizeof(T.stream_reason), "%s", reason);
}
static const td_stream_ops own_ops = {NULL, NULL, own_close};

static void h_stream(td_request *req) { http_respond_stream(req, 200, "text/event-stream", NULL, &own_ops, &T); }
static void h_post(td_request *req) { http_respond(req, 201, "text/plain", "made", 4, NULL); }
static void h_hold(td_request *req) { hfx_defer_request(req, true); }

enum { R_HELLO, R_POST, R_DEFER, R_STREAM, R_HOLD };
static const td_route routes[] = {
    [R_HELLO] = {ROUTE_GET, "/hello", hfx_h_hello, "hello"},
    [R_POST] = {ROUTE_POST, "/items/{id}", h_post, "post"},
    [R_DEFER] = {ROUTE_GET, "/defer", hfx_h_defer, "defer"},
    [R_STREAM] = {ROUTE_GET, "/stream", h_stream, "stream"},
    [R_HOLD] = {ROUTE_GET, "/hold", h_hold, "hold"},
};

static void start(int max_connections) {
  memset(&T, 0, sizeof(T));
  memset(&http_stats, 0, sizeof(http_stats));
  memset(&http_route_stats, 0, sizeof(http_route_stats));
  uv_loop_init(&T.loop);
  hfx_defer_init(&T.loop);
  td_server_opts o = hfx_opts(routes, (int)(sizeof(routes) / sizeof(routes[0])), &T);
  o.max_connections = max_connections;
  assert_int_equal(server_start(&T.s, &T.loop, &o), 0);
}

static void finish(void) {
  hfx_defer_close();
  assert_true(rfx_loop_close(&T.loop));
  assert_int_equal(buf_live_count(), 0);
}

static void stop(void) {
  assert_true(hfx_stop(&T.loop, T.s, 1000));
  finish();
}

/* The router's answers for paths and methods the table does not serve. */
static void not_found_and_method_not_allowed(void **state) {
  start(64);
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, GET("/nope") "POST /hello HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n" GET("/items/7")
                    "POST /items/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  hresp r[HCLI_MAX_RESPONSES];
  assert_true(hcli_wait(&T.loop, &c, 4, r));
  assert_int_equal(r[0].status, 404);
  assert_non_null(hfx_memmem(r[0].body, r[0].body_len, "\"error\":\"not_found\""));
  assert_int_equal(r[1].status, 405);
  assert_true(hresp_has(&r[1], "\r\nAllow: GET, HEAD\r\n"));
  assert_int_equal(r[2].status, 405);
  assert_true(hresp_has(&r[2], "\r\nAllow: POST\r\n"));
  assert_int_equal(r[3].status, 201);
  assert_true(hresp_body_is(&r[3], "made"));
  /* HEAD: GET's headers, no body */
  hcli_clear(&c);
  hcli_send(&c, "HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
  assert_true(hcli_wait_bytes(&T.loop, &c, "\r\n\r\n"));
  assert_true(hcli_quiet(&T.loop, &c, 20));
  assert_int_equal(strncmp(c.buf, "HTTP/1.1 200 OK\r\n", 17), 0);
  assert_non_null(strstr(c.buf, "\r\nContent-Length: 5\r\n"));
  assert_int_equal(strstr(c.buf, "\r\n\r\n") + 4, c.buf + c.len);
  hcli_close(&c);
  stop();
}

/* Each response is counted under its route and status class (the "none"
 * row for the router's own 404), and once in the latency histogram. */
static void route_and_latency_counters(void **state) {
  start(64);
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, GET("/hello") GET("/hello") GET("/nope") "POST /items/1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
                GET("/hold"));
  hresp r[HCLI_MAX_RESPONSES];
  assert_true(hcli_wait(&T.loop, &c, 4, r));
  for (int i = 0; i < 200 && !hfx_defer.req; i++) rfx_run_for(&T.loop, 2);
  assert_non_null(hfx_defer.req);
  /* answered no sooner than HFX_DEFER_MS after it was complete (a real
   * sleep: a loop timer may fire early against the wall clock) */
  rfx_sleep_ms(HFX_DEFER_MS);
  http_respond(hfx_defer.req, 200, "text/plain", "late", 4, NULL);
  hfx_defer.req = NULL;
  assert_true(hcli_wait(&T.loop, &c, 5, r));
  const td_http_route_stats *m = &http_route_stats;
  assert_int_equal(m->by_route_class[R_HELLO][2], 2);
  assert_int_equal(m->by_route_class[R_HOLD][2], 1);
  assert_int_equal(m->by_route_class[R_POST][2], 1);
  assert_int_equal(m->by_route_class[HTTP_STATS_MAX_ROUTES][4], 1);
  assert_int_equal(m->by_route_class[R_STREAM][2], 0);
  assert_int_equal(http_stats.responses[2], 4);
  assert_int_equal(http_stats.responses[4], 1);
  assert_int_equal(http_stats.requests, 5);
  assert_int_equal(m->latency_count, 5);
  uint64_t in_buckets = 0;
  for (int i = 0; i <= HTTP_LATENCY_BUCKETS; i++) in_buckets += m->buckets[i];
  assert_int_equal(in_buckets, 5);
  /* the held answer counts its wait */
  assert_true(m->latency_sum >= HFX_DEFER_MS / 1000.0);
  hcli_close(&c);
  stop();
}

/* Over max_connections a connection is answered 503 and closed; the ones
 * within the limit are served. */
static void connection_limit(void **state) {
  start(1);
  hcli a, b;
  hresp r[HCLI_MAX_RESPONSES];
  assert_int_equal(hcli_open(&a, server_port(T.s)), 0);
  assert_true(hfx_wait_open(&T.loop, 1));
  assert_int_equal(hcli_open(&b, server_port(T.s)), 0);
  assert_true(hcli_wait(&T.loop, &b, 1, r));
  assert_int_equal(r[0].status, 503);
  assert_true(hresp_has(&r[0], "\r\nRetry-After: 1\r\n"));
  assert_true(hcli_wait_eof(&T.loop, &b));
  assert_int_equal(http_stats.rejected_full, 1);
  hcli_send(&a, GET("/hello"));
  assert_true(hcli_wait(&T.loop, &a, 1, r));
  assert_int_equal(r[0].status, 200);
  hcli_close(&a);
  hcli_close(&b);
  stop();
}

/* Shutdown: the idle and the streaming connection close at once, the
 * listener stops accepting, the request under way gets its answer marked
 * Connection: close, and `done` runs after that last connection closed. */
static void shutdown_drains(void **state) {
  start(64);
  int port = server_port(T.s);
  hcli idle, streaming, busy;
  hresp r[HCLI_MAX_RESPONSES];
  assert_int_equal(hcli_open(&idle, port), 0);
  assert_int_equal(hcli_open(&streaming, port), 0);
  assert_int_equal(hcli_open(&busy, port), 0);
  hcli_send(&idle, GET("/hello"));
  assert_true(hcli_wait(&T.loop, &idle, 1, r));
  hcli_send(&streaming, GET("/stream"));
  assert_true(hcli_wait_bytes(&T.loop, &streaming, "\r\n\r\n"));
  hcli_send(&busy, GET("/hold"));
  for (int i = 0; i < 200 && !hfx_defer.req; i++) rfx_run_for(&T.loop, 2);
  assert_non_null(hfx_defer.req);

  bool done = false;
  server_shutdown(T.s, 5000, hfx_set_flag, &done);
  assert_true(server_is_draining(T.s));
  assert_true(hcli_wait_eof(&T.loop, &idle));
  assert_true(hcli_wait_eof(&T.loop, &streaming));
  assert_int_equal(T.stream_closes, 1);
  assert_string_equal(T.stream_reason, "server shutting down");
  hcli late;
  assert_int_equal(hcli_open(&late, port), -ECONNREFUSED);
  hcli_close(&late);
  assert_true(hcli_quiet(&T.loop, &busy, 20));
  assert_false(done);

  http_respond(hfx_defer.req, 200, "text/plain", "last", 4, NULL);
  hfx_defer.req = NULL;
  assert_true(hcli_wait(&T.loop, &busy, 1, r));
  assert_true(hresp_body_is(&r[0], "last"));
  assert_true(hresp_has(&r[0], "\r\nConnection: close\r\n"));
  assert_true(hcli_wait_eof(&T.loop, &busy));
  assert_true(rfx_run_until(&T.loop, hfx_flag, &done, HFX_WAIT_MS));
  assert_int_equal(hfx_defer.aborts, 0);
  server_free(T.s);
  hcli_close(&idle);
  hcli_close(&streaming);
  hcli_close(&busy);
  finish();
}

/* Past the grace period a request that is still not answered is aborted
 * and its connection closed; then shutdown completes. */
static void shutdown_grace_expires(void **state) {
  start(64);
  hcli busy;
  assert_int_equal(hcli_open(&busy, server_port(T.s)), 0);
  hcli_send(&busy, GET("/hold"));
  for (int i = 0; i < 200 && !hfx_defer.req; i++) rfx_run_for(&T.loop, 2);
  assert_non_null(hfx_defer.req);
  bool done = false;
  server_shutdown(T.s, 50, hfx_set_flag, &done);
  assert_true(rfx_run_until(&T.loop, hfx_flag, &done, HFX_WAIT_MS));
  assert_int_equal(hfx_defer.aborts, 1);
  assert_null(hfx_defer.req);
  assert_true(hcli_wait_eof(&T.loop, &busy));
  assert_int_equal(busy.len, 0);
  server_free(T.s);
  hcli_close(&busy);
  finish();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(not_found_and_method_not_allowed),
      cmocka_unit_test(route_and_latency_counters),
      cmocka_unit_test(connection_limit),
      cmocka_unit_test(shutdown_drains),
      cmocka_unit_test(shutdown_grace_expires),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
