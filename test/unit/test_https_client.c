/* https_client: URL parsing, and real GETs against the fake server's REST
 * port: found, not found, slow (timeout), cancelled, body limit, plain
 * http, a certificate for the wrong host. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "fake_alpaca.h"
#include "upstream/https_client.h"

static void test_url_parse(void **state) {
  hcli_url u;
  assert_int_equal(hcli_url_parse("wss://stream.data.alpaca.markets/v2/iex", &u), 0);
  assert_true(u.tls && u.websocket);
  assert_string_equal(u.host, "stream.data.alpaca.markets");
  assert_int_equal(u.port, 443);
  assert_string_equal(u.path, "/v2/iex");
  assert_string_equal(u.authority, "stream.data.alpaca.markets");

  assert_int_equal(hcli_url_parse("http://127.0.0.1:8080", &u), 0);
  assert_false(u.tls || u.websocket);
  assert_int_equal(u.port, 8080);
  assert_string_equal(u.path, "/");
  assert_string_equal(u.authority, "127.0.0.1:8080");

  assert_int_equal(hcli_url_parse("HTTPS://[::1]:8443/a/b?x=1#frag", &u), 0);
  assert_string_equal(u.host, "::1");
  assert_int_equal(u.port, 8443);
  assert_string_equal(u.path, "/a/b?x=1");
  assert_string_equal(u.authority, "[::1]:8443");

  assert_int_equal(hcli_url_parse("ws://[fe80::1]/x", &u), 0);
  assert_string_equal(u.authority, "[fe80::1]");
  assert_int_equal(hcli_url_parse("http://h?q=1", &u), 0);
  assert_string_equal(u.path, "/?q=1");

  const char *bad[] = {"", "ftp://x/", "http://", "http:///x", "http://a:0/", "http://a:65536/",
                       "http://a:12x/", "http://[::1/", "http://[nothex]/", "http://[::1]x/",
                       "http://user@host/", "http://ho st/", "http://h/a b", "http://h/\r\nX: y",
                       "https://a:/"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (hcli_url_parse(bad[i], &u) != -EINVAL) fail_msg("accepted %s", bad[i]);
  }
  assert_int_equal(hcli_url_parse(NULL, &u), -EINVAL);
}

typedef struct {
  int calls;
  int status;
  char body[2048];
  size_t len;
  const char *err;
  bool done;
} result;

static void on_done(void *ud, int status, const char *body, size_t len, const char *err) {
  result *r = ud;
  r->calls++;
  r->status = status;
  r->err = err;
  if (body) {
    r->len = len;
    snprintf(r->body, sizeof(r->body), "%.*s", (int)len, body);
  }
  r->done = true;
}

#define AUTH "APCA-API-KEY-ID: testkey\r\nAPCA-API-SECRET-KEY: testsecret\r\n"

typedef struct {
  uv_loop_t loop;
  fake_server f;
  tls_ctx *ctx;
  char base[128];
} env;

static void env_start(env *e, const char *cert) {
  uv_loop_init(&e->loop);
  const char *args[] = {"--rest", "--rest-delay-ms", "2000", NULL};
  assert_int_equal(fake_start(&e->f, cert, args), 0);
  const char *err;
  assert_int_equal(tls_ctx_new(&e->ctx, fake_path("ca.pem"), &err), 0);
  snprintf(e->base, sizeof(e->base), "%s://127.0.0.1:%d", cert ? "https" : "http", e->f.rest_port);
}

static void env_stop(env *e) {
  run_to_end(&e->loop);
  fake_stop(&e->f);
  tls_ctx_free(e->ctx);
  assert_int_equal(uv_loop_close(&e->loop), 0);
}

static void get(env *e, const char *path, const char *headers, size_t max_body, int timeout_ms,
                result *res) {
  char url[256];
  snprintf(url, sizeof(url), "%s%s", e->base, path);
  memset(res, 0, sizeof(*res));
  hcli_req *r;
  assert_int_equal(hcli_get(&e->loop, e->ctx, url, headers, max_body, timeout_ms, on_done, res, &r), 0);
  assert_int_equal(res->calls, 0); /* never from inside hcli_get */
  assert_true(run_until(&e->loop, &res->done, 10000));
  assert_int_equal(res->calls, 1);
}

static void test_get_found(void **state) {
  env e;
  env_start(&e, "server");
  result res;
  get(&e, "/v2/stocks/AAPL/quotes/latest", AUTH, 0, 5000, &res);
  assert_int_equal(res.status, 200);
  assert_null(res.err);
  assert_non_null(strstr(res.body, "\"symbol\": \"AAPL\""));
  assert_int_equal(res.len, strlen(res.body));
  get(&e, "/v2/stocks/NOPE/quotes/latest", AUTH, 0, 5000, &res);
  assert_int_equal(res.status, 404);
  get(&e, "/v2/stocks/AAPL/quotes/latest", NULL, 0, 5000, &res);
  assert_int_equal(res.status, 403);
  get(&e, "/v2/stocks/FAIL/quotes/latest", AUTH, 0, 5000, &res);
  assert_int_equal(res.status, 500);
  env_stop(&e);
}

static void test_plain_http(void **state) {
  env e;
  env_start(&e, NULL);
  result res;
  get(&e, "/v2/stocks/MSFT/quotes/latest", AUTH, 0, 5000, &res);
  assert_int_equal(res.status, 200);
  assert_non_null(strstr(res.body, "MSFT"));
  env_stop(&e);
}

static void test_timeout_and_limit(void **state) {
  env e;
  env_start(&e, "server");
  result res;
  get(&e, "/v2/stocks/SLOW/quotes/latest", AUTH, 0, 300, &res);
  assert_int_equal(res.status, 0);
  assert_string_equal(res.err, "timeout");
  get(&e, "/v2/stocks/AAPL/quotes/latest", AUTH, 16, 5000, &res);
  assert_int_equal(res.status, 0);
  assert_string_equal(res.err, "response too large");
  env_stop(&e);
}

static void test_cancel(void **state) {
  env e;
  env_start(&e, "server");
  result res = {0};
  char url[256];
  snprintf(url, sizeof(url), "%s/v2/stocks/SLOW/quotes/latest", e.base);
  hcli_req *r;
  assert_int_equal(hcli_get(&e.loop, e.ctx, url, AUTH, 0, 5000, on_done, &res, &r), 0);
  bool never = false;
  run_until(&e.loop, &never, 100);
  hcli_cancel(r);
  run_to_end(&e.loop);
  assert_int_equal(res.calls, 0);
  /* Bad URLs fail at once, without a callback. */
  assert_int_equal(hcli_get(&e.loop, e.ctx, "wss://h/x", NULL, 0, 100, on_done, &res, &r), -EINVAL);
  assert_int_equal(hcli_get(&e.loop, NULL, "https://h/x", NULL, 0, 100, on_done, &res, &r), -EINVAL);
  env_stop(&e);
}

static void test_wrong_certificate(void **state) {
  env e;
  env_start(&e, "wrong");
  result res;
  get(&e, "/v2/stocks/AAPL/quotes/latest", AUTH, 0, 5000, &res);
  assert_int_equal(res.status, 0);
  assert_string_equal(res.err, "certificate verify failed");
  env_stop(&e);
}

int main(void) {
  fake_process_setup();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_url_parse),       cmocka_unit_test(test_get_found),
      cmocka_unit_test(test_plain_http),      cmocka_unit_test(test_timeout_and_limit),
      cmocka_unit_test(test_cancel),          cmocka_unit_test(test_wrong_certificate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
