/* http1.c over real sockets: a server on 127.0.0.1 (port 0) with a table
 * of test handlers, driven by plain clients while the loop runs in steps.
 * Pipelined responses leave in request order (a deferred one included),
 * keep-alive and close for HTTP/1.1 and 1.0, the body limit (413), the
 * header and idle timeouts, a connection taken over by a td_stream_ops
 * owner, and conflation of queued messages by tag. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/log.h"
#include "http_fixture.h"

typedef struct {
  td_conn *conn;
  char data[256];
  size_t len;
  int closes;
  char reason[64];
} owner_t;

static struct {
  uv_loop_t loop;
  td_server *s;
  owner_t owner;
  size_t conflated;
} T;

/* ---- handlers ------------------------------------------------------------ */

static void h_echo(td_request *req) { http_respond(req, 200, "text/plain", req->body, req->body_len, NULL); }

static void own_data(void *o, const char *d, size_t n) {
  owner_t *w = o;
  if (w->len + n > sizeof(w->data)) n = sizeof(w->data) - w->len;
  memcpy(w->data + w->len, d, n);
  w->len += n;
  /* answer on the taken-over connection: the owner writes through it too */
  if (w->conn) conn_send_copy(w->conn, "ack;", 4);
}

static void own_close(void *o, const char *reason) {
  owner_t *w = o;
  w->closes++;
  snprintf(w->reason, sizeof(w->reason), "%s", reason);
  w->conn = NULL;
}

static const td_stream_ops own_ops = {own_data, NULL, own_close};

/* What a WebSocket session does: the 101 head, then the connection is its. */
static void h_upgrade(td_request *req) {
  T.owner.conn = req->conn;
  http_respond_stream(req, 101, NULL, "Upgrade: test\r\nConnection: Upgrade\r\n", &own_ops, &T.owner);
}

/* The same by hand, as the header of conn_take_over describes: the caller
 * writes its own head, then takes the connection. */
static void h_raw(td_request *req) {
  static const char head[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n";
  T.owner.conn = req->conn;
  assert_int_equal(conn_send_copy(req->conn, head, sizeof(head) - 1), 0);
  conn_take_over(req->conn, &own_ops, &T.owner);
}

static void send_tagged(td_conn *c, const char *text, uint32_t tag) {
  td_buf *b = buf_from(text, strlen(text));
  assert_int_equal(conn_send(c, b, tag), 0);
  buf_unref(b);
}

/* An event stream whose queue is conflated before the loop writes it:
 * streams are written once per loop iteration, so all of this is queued. */
static void h_stream(td_request *req) {
  T.owner.conn = req->conn;
  http_respond_stream(req, 200, "text/event-stream", NULL, &own_ops, &T.owner);
  send_tagged(req->conn, "A1 ", 1);
  send_tagged(req->conn, "B1 ", 2);
  send_tagged(req->conn, "A2 ", 1);
  send_tagged(req->conn, "C ", 0);
  send_tagged(req->conn, "D1 ", 3);
  send_tagged(req->conn, "A3 ", 1);
  send_tagged(req->conn, "D2 ", 3);
  send_tagged(req->conn, "B2 ", 2);
  T.conflated = conn_conflate(req->conn, 2); /* tag 3 is past max_tag: left alone */
}

static const td_route routes[] = {
    {ROUTE_GET, "/hello", hfx_h_hello, "hello"},
    {ROUTE_POST, "/echo", h_echo, "echo"},
    {ROUTE_GET, "/defer", hfx_h_defer, "defer"},
    {ROUTE_GET, "/upgrade", h_upgrade, "upgrade"},
    {ROUTE_GET, "/raw", h_raw, "raw"},
    {ROUTE_GET, "/stream", h_stream, "stream"},
};

/* ---- set-up -------------------------------------------------------------- */

static void start(uint64_t header_timeout_ms, uint64_t idle_timeout_ms) {
  memset(&T, 0, sizeof(T));
  uv_loop_init(&T.loop);
  hfx_defer_init(&T.loop);
  td_server_opts o = hfx_opts(routes, (int)(sizeof(routes) / sizeof(routes[0])), &T);
  o.header_timeout_ms = header_timeout_ms;
  o.idle_timeout_ms = idle_timeout_ms;
  assert_int_equal(server_start(&T.s, &T.loop, &o), 0);
  assert_true(server_port(T.s) > 0);
  memset(&http_stats, 0, sizeof(http_stats));
}

static void stop(void) {
  assert_true(hfx_stop(&T.loop, T.s, 1000));
  hfx_defer_close();
  assert_true(rfx_loop_close(&T.loop));
  assert_int_equal(buf_live_count(), 0);
}



/* ---- tests --------------------------------------------------------------- */

/* A deferred request holds the ones pipelined behind it: the answers leave
 * in request order, on one connection that stays open. */
static void pipelined_in_order(void **state) {
  start(5000, 5000);
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, GET("/defer") GET("/hello") "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nabcd" GET("/hello"));
  hresp r[HCLI_MAX_RESPONSES];
  assert_true(hcli_wait(&T.loop, &c, 4, r));
  assert_true(hresp_body_is(&r[0], "deferred"));
  assert_true(hresp_body_is(&r[1], "hello"));
  assert_true(hresp_body_is(&r[2], "abcd"));
  assert_true(hresp_body_is(&r[3], "hello"));
  for (int i = 0; i < 4; i++) {
    assert_int_equal(r[i].status, 200);
    assert_false(hresp_has(&r[i], "Connection: close"));
  }
  assert_int_equal(http_stats.requests, 4);
  assert_true(hcli_quiet(&T.loop, &c, 20));
  hcli_close(&c);
  stop();
}

static void keep_alive_and_close(void **state) {
  start(5000, 5000);
  hresp r[HCLI_MAX_RESPONSES];
  hcli c;
  /* HTTP/1.1: persistent unless asked otherwise */
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, GET("/hello"));
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  hcli_send(&c, "GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
  assert_true(hcli_wait(&T.loop, &c, 2, r));
  assert_false(hresp_has(&r[0], "Connection:"));
  assert_true(hresp_has(&r[1], "\r\nConnection: close\r\n"));
  assert_true(hcli_wait_eof(&T.loop, &c));
  hcli_close(&c);
  /* HTTP/1.0: closed unless keep-alive is asked for */
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_true(hresp_has(&r[0], "\r\nConnection: keep-alive\r\n"));
  assert_true(hcli_quiet(&T.loop, &c, 20));
  hcli_send(&c, "GET /hello HTTP/1.0\r\n\r\n");
  assert_true(hcli_wait(&T.loop, &c, 2, r));
  assert_true(hresp_has(&r[1], "\r\nConnection: close\r\n"));
  assert_true(hcli_wait_eof(&T.loop, &c));
  hcli_close(&c);
  assert_true(hfx_wait_open(&T.loop, 0));
  stop();
}

/* Declared too large (Content-Length) or found too large (chunked): 413
 * and the connection ends. A body at the limit passes. */
static void body_limit(void **state) {
  start(5000, 5000);
  hresp r[HCLI_MAX_RESPONSES];
  char body[1025];
  memset(body, 'x', sizeof(body));
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  char req[2048];
  snprintf(req, sizeof(req), "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n%.1024s", body);
  hcli_send(&c, req);
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(r[0].status, 200);
  assert_int_equal(r[0].body_len, 1024);
  hcli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1025\r\n\r\n");
  assert_true(hcli_wait(&T.loop, &c, 2, r));
  assert_int_equal(r[1].status, 413);
  assert_non_null(hfx_memmem(r[1].body, r[1].body_len, "\"error\":\"body_too_large\""));
  assert_true(hcli_wait_eof(&T.loop, &c));
  hcli_close(&c);

  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
  for (int i = 0; i < 3; i++) { /* 1536 bytes in chunks of 512 */
    hcli_send(&c, "200\r\n");
    hcli_sendn(&c, body, 512);
    hcli_send(&c, "\r\n");
  }
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  assert_int_equal(r[0].status, 413);
  assert_true(hcli_wait_eof(&T.loop, &c));
  hcli_close(&c);
  assert_int_equal(http_stats.too_large, 2);
  assert_int_equal(http_stats.requests, 1);
  stop();
}

/* A head that stops arriving is cut at the header timeout; a connection
 * with nothing under way at the idle timeout; each counted as such. */
static void header_and_idle_timeouts(void **state) {
  start(60, 120);
  hcli slow, idle;
  assert_int_equal(hcli_open(&slow, server_port(T.s)), 0);
  assert_int_equal(hcli_open(&idle, server_port(T.s)), 0);
  hcli_send(&slow, "GET /hello HTTP/1.1\r\nHo");
  hcli_send(&idle, GET("/hello"));
  assert_true(hcli_wait_eof(&T.loop, &slow));
  assert_int_equal(slow.len, 0); /* nothing is answered to a half request */
  assert_int_equal(http_stats.header_timeouts, 1);
  assert_true(hcli_wait_eof(&T.loop, &idle));
  assert_non_null(strstr(idle.buf, "hello"));
  assert_int_equal(http_stats.idle_timeouts, 1);
  assert_int_equal(http_stats.header_timeouts, 1);
  hcli_close(&slow);
  hcli_close(&idle);
  assert_true(hfx_wait_open(&T.loop, 0));
  stop();
}

typedef struct {
  owner_t *o;
  size_t len;
} owner_want;

static bool owner_has(void *a) {
  owner_want *w = a;
  return w->o->len >= w->len;
}
static bool owner_closed(void *a) { return ((owner_t *)a)->closes > 0; }

/* After the 101 the connection's bytes go to the owner: those that came in
 * the same packet as the request first, then later ones; what the owner
 * sends goes out; the peer's close reaches the owner once. */
static void take_over_by(const char *request) {
  start(5000, 5000);
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  char first[128];
  snprintf(first, sizeof(first), "%searly;", request);
  hcli_send(&c, first);
  owner_want w = {&T.owner, 6};
  assert_true(rfx_run_until(&T.loop, owner_has, &w, HFX_WAIT_MS));
  assert_true(hcli_wait_bytes(&T.loop, &c, "ack;"));
  assert_int_equal(strncmp(c.buf, "HTTP/1.1 101 Switching Protocols\r\n", 34), 0);
  assert_non_null(strstr(c.buf, "\r\nUpgrade: test\r\n"));
  assert_null(strstr(c.buf, "Content-Length"));
  hcli_send(&c, "late");
  w.len = 10;
  assert_true(rfx_run_until(&T.loop, owner_has, &w, HFX_WAIT_MS));
  assert_memory_equal(T.owner.data, "early;late", 10);
  assert_int_equal(http_stats.taken_over, 1);
  hcli_close(&c);
  assert_true(rfx_run_until(&T.loop, owner_closed, &T.owner, HFX_WAIT_MS));
  assert_int_equal(T.owner.closes, 1);
  assert_string_equal(T.owner.reason, "peer closed");
  assert_null(T.owner.conn);
  stop();
}

static void take_over(void **state) {
  take_over_by(GET("/upgrade")); /* http_respond_stream */
  take_over_by(GET("/raw"));     /* conn_send + conn_take_over */
}

/* Among queued messages, a later one with the same tag replaces an earlier
 * one; untagged messages, tags past max_tag and the order of the survivors
 * stay. */
static void conflate_by_tag(void **state) {
  start(5000, 5000);
  hcli c;
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, GET("/stream"));
  assert_true(hcli_wait_bytes(&T.loop, &c, "B2 "));
  assert_int_equal(T.conflated, 3); /* A1, A2, B1 */
  const char *body = strstr(c.buf, "\r\n\r\n");
  assert_non_null(body);
  assert_string_equal(body + 4, "C D1 A3 D2 B2 ");
  assert_true(strncmp(c.buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n", 50) == 0);
  hcli_close(&c);
  assert_true(rfx_run_until(&T.loop, owner_closed, &T.owner, HFX_WAIT_MS));
  stop();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pipelined_in_order),     cmocka_unit_test(keep_alive_and_close),
      cmocka_unit_test(body_limit),             cmocka_unit_test(header_and_idle_timeouts),
      cmocka_unit_test(take_over),              cmocka_unit_test(conflate_by_tag),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
