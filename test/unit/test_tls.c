/* tls: real connections to the fake server's REST port (plain and TLS),
 * certificate checks, refused and silent peers, closing at every stage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_alpaca.h"
#include "net/tls.h"

typedef struct {
  tls_conn c;
  int connect_status;
  int connects;
  int closes;
  const char *close_reason;
  char resp[8192];
  size_t resp_len;
  const char *request;
  bool done;
} probe;

static void p_on_connect(tls_conn *c, int status) {
  probe *p = c->data;
  p->connects++;
  p->connect_status = status;
  if (status == 0 && p->request) assert_int_equal(tls_write(c, p->request, strlen(p->request)), 0);
}

static void p_on_read(tls_conn *c, const char *data, size_t len) {
  probe *p = c->data;
  size_t room = sizeof(p->resp) - 1 - p->resp_len;
  if (len > room) len = room;
  memcpy(p->resp + p->resp_len, data, len);
  p->resp_len += len;
  p->resp[p->resp_len] = 0;
}

static void p_on_close(tls_conn *c, const char *reason) {
  probe *p = c->data;
  p->closes++;
  p->close_reason = reason;
  p->done = true;
}

static const tls_callbacks p_cb = {p_on_connect, p_on_read, p_on_close, NULL, NULL};

static void probe_init(uv_loop_t *loop, probe *p, tls_ctx *ctx) {
  memset(p, 0, sizeof(*p));
  p->connect_status = 1;
  tls_init(loop, &p->c, ctx, &p_cb);
  p->c.data = p;
}

static const char *stats_request = "GET /_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

static void get_stats(bool use_tls, const char *cert) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_server f;
  const char *args[] = {"--rest", NULL};
  assert_int_equal(fake_start(&f, cert, args), 0);
  tls_ctx *ctx = NULL;
  const char *err = NULL;
  assert_int_equal(tls_ctx_new(&ctx, fake_path("ca.pem"), &err), 0);
  probe p;
  probe_init(&loop, &p, ctx);
  p.request = stats_request;
  assert_int_equal(tls_connect(&p.c, "127.0.0.1", f.rest_port, use_tls, 5000), 0);
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connect_status, 0);
  assert_int_equal(p.connects, 1);
  assert_int_equal(p.closes, 1);
  assert_string_equal(p.close_reason, "connection closed by peer");
  assert_true(strncmp(p.resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
  assert_non_null(strstr(p.resp, "\r\n\r\n{"));
  run_to_end(&loop);
  fake_stop(&f);
  tls_ctx_free(ctx);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_plain_tcp(void **state) { get_stats(false, NULL); }
static void test_tls_verified(void **state) { get_stats(true, "server"); }

/* Connects with TLS to a fake using `cert`, trusting `ca` (NULL: system). */
static void expect_refused(const char *cert, const char *ca, const char *host) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_server f;
  const char *args[] = {"--rest", NULL};
  assert_int_equal(fake_start(&f, cert, args), 0);
  tls_ctx *ctx = NULL;
  const char *err = NULL;
  assert_int_equal(tls_ctx_new(&ctx, ca, &err), 0);
  probe p;
  probe_init(&loop, &p, ctx);
  p.request = stats_request;
  assert_int_equal(tls_connect(&p.c, host, f.rest_port, true, 5000), 0);
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connects, 1);
  assert_int_equal(p.connect_status, TLS_ECERT);
  assert_non_null(tls_error(&p.c));
  assert_int_equal(p.resp_len, 0);
  run_to_end(&loop);
  fake_stop(&f);
  tls_ctx_free(ctx);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_wrong_host_refused(void **state) {
  expect_refused("wrong", fake_path("ca.pem"), "127.0.0.1");
}

static void test_untrusted_ca_refused(void **state) { expect_refused("server", NULL, "127.0.0.1"); }

static void test_host_name_checked(void **state) {
  /* "localhost" is in server.pem's SANs: accepted by name with SNI. */
  uv_loop_t loop;
  uv_loop_init(&loop);
  fake_server f;
  const char *args[] = {"--rest", NULL};
  assert_int_equal(fake_start(&f, "server", args), 0);
  tls_ctx *ctx = NULL;
  const char *err = NULL;
  assert_int_equal(tls_ctx_new(&ctx, fake_path("ca.pem"), &err), 0);
  probe p;
  probe_init(&loop, &p, ctx);
  p.request = stats_request;
  /* The fake listens on 127.0.0.1 only; when localhost resolves to ::1
   * first, that refusal is passed over for the next address. */
  assert_int_equal(tls_connect(&p.c, "localhost", f.rest_port, true, 5000), 0);
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connect_status, 0);
  assert_true(strncmp(p.resp, "HTTP/1.1 200", 12) == 0);
  run_to_end(&loop);
  fake_stop(&f);
  tls_ctx_free(ctx);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_refused(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  /* A port that was free a moment ago: bind, read the port, close. */
  uv_tcp_t t;
  uv_tcp_init(&loop, &t);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
  struct sockaddr_in got;
  int len = sizeof(got);
  uv_tcp_getsockname(&t, (struct sockaddr *)&got, &len);
  int port = ntohs(got.sin_port);
  uv_close((uv_handle_t *)&t, NULL);
  probe p;
  probe_init(&loop, &p, NULL);
  assert_int_equal(tls_connect(&p.c, "127.0.0.1", port, false, 5000), 0);
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connects, 1);
  assert_int_equal(p.connect_status, UV_ECONNREFUSED);
  assert_int_equal(p.closes, 1);
  run_to_end(&loop);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A listening socket on a free port whose connections are never accepted:
 * TCP connects (the kernel's backlog) and nothing ever answers. */
static int silent_listener(uv_loop_t *loop, uv_tcp_t *srv) {
  uv_tcp_init(loop, srv);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(srv, (struct sockaddr *)&a, 0), 0);
  int fd;
  uv_fileno((uv_handle_t *)srv, &fd);
  assert_int_equal(listen(fd, 8), 0);
  struct sockaddr_in got;
  int len = sizeof(got);
  uv_tcp_getsockname(srv, (struct sockaddr *)&got, &len);
  return ntohs(got.sin_port);
}

/* A listener that never accepts: TCP connects (the kernel's backlog), the TLS
 * handshake never gets an answer, the connect timeout ends it. */
static void test_handshake_timeout(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_tcp_t srv;
  int port = silent_listener(&loop, &srv);
  tls_ctx *ctx = NULL;
  const char *err = NULL;
  assert_int_equal(tls_ctx_new(&ctx, fake_path("ca.pem"), &err), 0);
  probe p;
  probe_init(&loop, &p, ctx);
  assert_int_equal(tls_connect(&p.c, "127.0.0.1", port, true, 200), 0);
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connect_status, UV_ETIMEDOUT);
  assert_int_equal(p.closes, 1);
  uv_close((uv_handle_t *)&srv, NULL);
  run_to_end(&loop);
  tls_ctx_free(ctx);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* A peer that never reads: once the kernel's buffers are full our queue
 * grows, and past TLS_MAX_WRITE_QUEUE the connection is closed. */
static void qp_on_connect(tls_conn *c, int status) {
  probe *p = c->data;
  p->connects++;
  p->connect_status = status;
  if (status < 0) return;
  static char chunk[1 << 20];
  for (int i = 0; i < 256; i++) {
    int r = tls_write(c, chunk, sizeof(chunk));
    if (r < 0) {
      p->resp_len = (size_t)i; /* chunks written before the refusal */
      assert_int_equal(r, UV_ENOBUFS);
      return;
    }
  }
  fail_msg("the write queue was never bounded");
}

static const tls_callbacks qp_cb = {qp_on_connect, p_on_read, p_on_close, NULL, NULL};

static void test_write_queue_bounded(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  uv_tcp_t srv;
  int port = silent_listener(&loop, &srv);
  probe p;
  probe_init(&loop, &p, NULL);
  tls_init(&loop, &p.c, NULL, &qp_cb);
  assert_int_equal(tls_connect(&p.c, "127.0.0.1", port, false, 5000), 0);
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connect_status, 0);
  assert_string_equal(p.close_reason, "write queue full");
  assert_true(p.resp_len > 0);
  uv_close((uv_handle_t *)&srv, NULL);
  run_to_end(&loop);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* Closing while the name is being resolved: on_close once, no on_connect,
 * and the struct can connect again afterwards. */
static void test_close_while_resolving(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  probe p;
  probe_init(&loop, &p, NULL);
  assert_int_equal(tls_connect(&p.c, "localhost", 9, false, 5000), 0);
  assert_int_equal(tls_connect(&p.c, "localhost", 9, false, 5000), UV_EBUSY);
  tls_close(&p.c, "stop");
  tls_close(&p.c, "again");
  assert_int_equal(p.closes, 0); /* never from inside tls_close */
  assert_true(run_until(&loop, &p.done, 10000));
  assert_int_equal(p.connects, 0);
  assert_int_equal(p.closes, 1);
  assert_string_equal(p.close_reason, "stop");
  run_to_end(&loop);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_write_when_closed(void **state) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  probe p;
  probe_init(&loop, &p, NULL);
  assert_int_equal(tls_write(&p.c, "x", 1), UV_ENOTCONN);
  assert_int_equal(tls_connect(&p.c, "", 1, false, 10), UV_EINVAL);
  assert_int_equal(tls_connect(&p.c, "127.0.0.1", 0, false, 10), UV_EINVAL);
  assert_int_equal(tls_connect(&p.c, "127.0.0.1", 1, true, 10), UV_EINVAL); /* TLS without ctx */
  run_to_end(&loop);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_bad_ca_file(void **state) {
  tls_ctx *ctx = (tls_ctx *)1;
  const char *err = NULL;
  assert_true(tls_ctx_new(&ctx, "/nonexistent/ca.pem", &err) < 0);
  assert_null(ctx);
  assert_non_null(strstr(err, "CA file"));
}

int main(void) {
  fake_process_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain_tcp),
      cmocka_unit_test(test_tls_verified),
      cmocka_unit_test(test_wrong_host_refused),
      cmocka_unit_test(test_untrusted_ca_refused),
      cmocka_unit_test(test_host_name_checked),
      cmocka_unit_test(test_refused),
      cmocka_unit_test(test_handshake_timeout),
      cmocka_unit_test(test_write_queue_bounded),
      cmocka_unit_test(test_close_while_resolving),
      cmocka_unit_test(test_write_when_closed),
      cmocka_unit_test(test_bad_ca_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
