/* redis_tls: rconn over rediss:// against a real redis-server with a TLS
 * port (certificates from test/support/testca.sh), large values through the
 * relay both ways (its backpressure), refusals, and relays released or
 * closed at every stage with nothing left behind (handles, socket files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>

#include "base/log.h"
#include "fake_alpaca.h"
#include "redis/redis_conn.h"
#include "redis/redis_tls.h"
#include "redis_fixture.h"

/* Past REDIS_TLS_HIGH_WATER many times over: the relay must pause and resume. */
#define BIG_VALUE (4 * 1024 * 1024)
/* SETs of it sent while Redis is stopped: more than loopback's socket buffers hold. */
#define BIG_SETS 8

typedef struct {
  uv_loop_t loop;
  td_rconn conn;
  int ready, lost, closed, replies;
  const char *lost_reason;
  size_t last_len;
  bool last_ok;
  char *expect; /* the value a GET must return */
} harness;

static void h_ready(td_rconn *c, void *ud) { ((harness *)ud)->ready++; }
static void h_lost(td_rconn *c, void *ud, const char *reason, bool was_ready) {
  harness *h = ud;
  h->lost++;
  h->lost_reason = reason;
}
static void h_reply(td_rconn *c, void *ud, redisReply *r, uintptr_t tag) {
  harness *h = ud;
  h->replies++;
  h->last_len = r && r->type == REDIS_REPLY_STRING ? r->len : 0;
  h->last_ok = r && (r->type != REDIS_REPLY_STRING || (h->expect && r->len == BIG_VALUE &&
                                                       memcmp(r->str, h->expect, BIG_VALUE) == 0));
}
static void h_closed(td_rconn *c, void *ud) { ((harness *)ud)->closed++; }
static const rconn_callbacks h_cb = {h_ready, h_lost, h_reply, h_closed};

static bool is_ready(void *a) { return ((harness *)a)->ready > 0; }
static bool is_ready2(void *a) { return ((harness *)a)->ready > 1; }
static bool is_lost(void *a) { return ((harness *)a)->lost > 0; }
static bool is_closed(void *a) { return ((harness *)a)->closed > 0; }
static int want_replies;
static bool has_replies(void *a) { return ((harness *)a)->replies >= want_replies; }

/* A redis-server with a TLS port beside its plain one (the fixture pings
 * the plain one); `cert` is "server" (127.0.0.1) or "wrong" (wrong.example). */
static int tls_port;
static void start_tls_redis(rfx *r, const char *cert) {
  static char port[16], certp[400], keyp[400], ca[400];
  tls_port = rfx_free_port();
  snprintf(port, sizeof(port), "%d", tls_port);
  snprintf(certp, sizeof(certp), "%s", fake_path(cert[0] == 's' ? "server.pem" : "wrong.pem"));
  snprintf(keyp, sizeof(keyp), "%s", fake_path(cert[0] == 's' ? "server.key" : "wrong.key"));
  snprintf(ca, sizeof(ca), "%s", fake_path("ca.pem"));
  memset(r, 0, sizeof(*r));
  rfx_arg(r, "--tls-port", port);
  rfx_arg(r, "--tls-cert-file", certp);
  rfx_arg(r, "--tls-key-file", keyp);
  rfx_arg(r, "--tls-ca-cert-file", ca);
  rfx_arg(r, "--tls-auth-clients", "no");
  assert_int_equal(rfx_spawn(r, NULL), 0);
}

static char relay_dir[64];

/* The relays' socket directories go here: it must be empty between connects. */
static int setup(void **state) {
  snprintf(relay_dir, sizeof(relay_dir), "/tmp/td-relay-test-XXXXXX");
  assert_non_null(mkdtemp(relay_dir));
  setenv("TMPDIR", relay_dir, 1);
  const char *err = NULL;
  assert_int_equal(redis_tls_configure(&(redis_tls_opts){.ca_file = fake_path("ca.pem")}, &err), 0);
  return 0;
}

static int teardown(void **state) {
  redis_tls_shutdown();
  rmdir(relay_dir);
  unsetenv("TMPDIR");
  return 0;
}

static int entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

static void harness_start(harness *h, int port) {
  memset(h, 0, sizeof(*h));
  uv_loop_init(&h->loop);
  char url[128];
  snprintf(url, sizeof(url), "rediss://127.0.0.1:%d", port);
  rconn_options o = {.name = "tls-test", .connect_timeout_ms = 3000, .command_timeout_ms = 5000,
                     .backoff_min_ms = 20, .backoff_max_ms = 50};
  const char *err = NULL;
  assert_int_equal(rconn_init(&h->conn, &h->loop, url, &h_cb, h, &o, &err), 0);
  assert_true(h->conn.url.tls);
  rconn_start(&h->conn);
}

static void harness_end(harness *h) {
  rconn_close(&h->conn);
  assert_true(rfx_run_until(&h->loop, is_closed, h, 3000));
  assert_true(rfx_drain(&h->loop));
  assert_int_equal(uv_loop_close(&h->loop), 0);
  assert_int_equal(entries(relay_dir), 0);
}

static void test_big_values_both_ways(void **state) {
  rfx r;
  start_tls_redis(&r, "server");
  harness h;
  harness_start(&h, tls_port);
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 5000));
  assert_int_equal(entries(relay_dir), 0); /* the socket file went when hiredis spoke */
  h.expect = malloc(BIG_VALUE);
  for (size_t i = 0; i < BIG_VALUE; i++) h.expect[i] = (char)('a' + i % 26);
  const char *set[] = {"SET", "big", h.expect};
  size_t setl[] = {3, 3, BIG_VALUE};
  const char *get[] = {"GET", "big"};
  /* Redis stopped while the SETs go out: the sockets fill, the relay stops
   * reading hiredis at its high water and resumes when Redis drains it. */
  rfx_signal(&r, SIGSTOP);
  for (int i = 0; i < BIG_SETS; i++) assert_int_equal(rconn_command_argv(&h.conn, 1, 3, set, setl), 0);
  rfx_run_for(&h.loop, 300);
  assert_int_equal(h.replies, 0);
  rfx_signal(&r, SIGCONT);
  assert_int_equal(rconn_command_argv(&h.conn, 2, 2, get, NULL), 0);
  want_replies = BIG_SETS + 1;
  assert_true(rfx_run_until(&h.loop, has_replies, &h, 10000));
  assert_true(h.last_ok);
  assert_int_equal(h.last_len, BIG_VALUE);
  assert_int_equal(h.lost, 0);
  free(h.expect);
  harness_end(&h);
  rfx_kill(&r);
}

static void test_server_killed_then_back(void **state) {
  rfx r;
  start_tls_redis(&r, "server");
  harness h;
  harness_start(&h, tls_port);
  assert_true(rfx_run_until(&h.loop, is_ready, &h, 5000));
  rfx_kill(&r);
  assert_true(rfx_run_until(&h.loop, is_lost, &h, 5000));
  rfx_run_for(&h.loop, 200); /* attempts fail meanwhile, each relay freed */
  assert_int_equal(entries(relay_dir), 0);
  assert_int_equal(rfx_spawn(&r, NULL), 0); /* the same ports again */
  assert_true(rfx_run_until(&h.loop, is_ready2, &h, 5000));
  assert_int_equal(entries(relay_dir), 0);
  harness_end(&h);
  rfx_kill(&r);
}

static void test_wrong_host_refused(void **state) {
  rfx r;
  start_tls_redis(&r, "wrong");
  harness h;
  harness_start(&h, tls_port);
  assert_true(rfx_run_until(&h.loop, is_lost, &h, 5000));
  assert_string_equal(h.lost_reason, "TLS certificate refused");
  assert_int_equal(h.ready, 0);
  harness_end(&h);
  rfx_kill(&r);
}

static void test_refused_port(void **state) {
  harness h;
  harness_start(&h, rfx_free_port());
  assert_true(rfx_run_until(&h.loop, is_lost, &h, 5000));
  assert_string_equal(h.lost_reason, "connect failed");
  harness_end(&h);
}

/* Closed while the relay resolves, connects or handshakes: on_closed still
 * comes once and every handle closes. */
static void test_close_during_handshake(void **state) {
  rfx r;
  start_tls_redis(&r, "server");
  for (int delay_ms = 0; delay_ms <= 4; delay_ms += 2) {
    harness h;
    harness_start(&h, tls_port);
    if (delay_ms) rfx_run_for(&h.loop, delay_ms);
    harness_end(&h);
    assert_int_equal(h.closed, 1);
  }
  rfx_kill(&r);
}

typedef struct {
  int ready, failed;
} relay_probe;
static void rp_ready(void *ud, const char *path) { ((relay_probe *)ud)->ready++; }
static void rp_fail(void *ud, const char *reason, const char *detail) { ((relay_probe *)ud)->failed++; }
static const redis_tls_relay_cb rp_cb = {rp_ready, rp_fail};
static bool rp_ready_now(void *a) { return ((relay_probe *)a)->ready > 0; }

/* Released before and after its socket appeared: no callback, no file left. */
static void test_release_at_every_stage(void **state) {
  rfx r;
  start_tls_redis(&r, "server");
  for (int stage = 0; stage < 2; stage++) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    relay_probe p = {0};
    redis_tls_relay *relay = NULL;
    const char *err = NULL;
    assert_int_equal(redis_tls_relay_start(&loop, "127.0.0.1", tls_port, &rp_cb, &p, &relay, &err), 0);
    if (stage == 1) {
      assert_true(rfx_run_until(&loop, rp_ready_now, &p, 5000));
      assert_int_equal(entries(relay_dir), 1); /* listening, nobody came */
    }
    redis_tls_relay_release(relay);
    int ready = p.ready;
    assert_true(rfx_drain(&loop));
    assert_int_equal(p.ready, ready);
    assert_int_equal(p.failed, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(entries(relay_dir), 0);
  }
  rfx_kill(&r);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_open("", "error");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_big_values_both_ways),
      cmocka_unit_test(test_server_killed_then_back),
      cmocka_unit_test(test_wrong_host_refused),
      cmocka_unit_test(test_refused_port),
      cmocka_unit_test(test_close_during_handshake),
      cmocka_unit_test(test_release_at_every_stage),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
