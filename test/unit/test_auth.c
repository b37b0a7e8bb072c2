/* auth over real requests, through the stream layer's view of it
 * (auth_stream_access): a route asks admit() as ws_session and sse do, then
 * allows() for a symbol. Tokens are signed at test time: missing, signed
 * with another secret, expired, in the header or the query, with a symbols
 * claim; the Origin of WebSocket handshakes against the Host and against
 * --allowed-origins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <time.h>

#include "app/app.h"
#include "app/auth.h"
#include "base/buf.h"
#include "base/log.h"
#include "http_fixture.h"
#include "jwt_fixture.h"

#define SECRET "unit-test-secret"
#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static struct {
  uv_loop_t loop;
  td_config cfg;
  td_app app;
  td_server *s;
} T;

/* GET /ws or /stream [?sym=X]: "allowed" or "forbidden" once admitted. */
static void h_check(td_request *req) {
  bool websocket = req->path_len == 3 && !memcmp(req->path, "/ws", 3);
  void *grant = NULL;
  if (!auth_stream_access.admit(req, websocket, &grant)) return;
  char sym[32];
  bool allowed = !http_query_param(req, "sym", sym, sizeof(sym)) || auth_stream_access.allows(grant, sym);
  auth_stream_access.release(grant);
  const char *body = allowed ? "allowed" : "forbidden";
  http_respond(req, 200, "text/plain", body, strlen(body), NULL);
}

static const td_route routes[] = {{ROUTE_GET, "/ws", h_check, "ws"}, {ROUTE_GET, "/stream", h_check, "stream"}};

static void start(bool auth, const char *allowed_origins) {
  memset(&T, 0, sizeof(T));
  memset(&auth_counters, 0, sizeof(auth_counters));
  uv_loop_init(&T.loop);
  T.cfg.auth = auth;
  T.cfg.jwt_secret = SECRET;
  T.cfg.allowed_origins = (char *)allowed_origins;
  T.app.loop = &T.loop;
  T.app.cfg = &T.cfg;
  td_server_opts o = hfx_opts(routes, 2, &T.app);
  assert_int_equal(server_start(&T.s, &T.loop, &o), 0);
}

static void stop(void) {
  assert_true(hfx_stop(&T.loop, T.s, 1000));
  assert_true(rfx_loop_close(&T.loop));
  assert_int_equal(buf_live_count(), 0);
}

/* One request; returns its status and copies the body (or the error code). */
static int ask(const char *target, const char *headers, char *body, size_t n) {
  hcli c;
  hresp r[HCLI_MAX_RESPONSES];
  char req[2048];
  snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", target, headers ? headers : "");
  assert_int_equal(hcli_open(&c, server_port(T.s)), 0);
  hcli_send(&c, req);
  assert_true(hcli_wait(&T.loop, &c, 1, r));
  snprintf(body, n, "%.*s", (int)r[0].body_len, r[0].body);
  if (r[0].status == 401) assert_true(hresp_has(&r[0], "\r\nWWW-Authenticate: Bearer realm=\"tickerd\"\r\n"));
  hcli_close(&c);
  return r[0].status;
}

/* An error answer's "error" field. */
static bool error_is(const char *body, const char *code) {
  char want[64];
  snprintf(want, sizeof(want), "\"error\":\"%s\"", code);
  return strstr(body, want) != NULL;
}

static char *token(const char *claims, const char *secret) { return make_token(HS256, claims, secret); }

static char *claims_exp(long offset_s, const char *symbols) {
  static char c[256];
  snprintf(c, sizeof(c), "{\"sub\":\"u\",\"exp\":%lld%s%s}", (long long)time(NULL) + offset_s, symbols ? "," : "",
           symbols ? symbols : "");
  return c;
}

static void tokens(void **state) {
  start(true, NULL);
  char body[512], hdr[1024];
  assert_int_equal(ask("/stream", NULL, body, sizeof(body)), 401);
  assert_true(error_is(body, "missing_token"));

  char *other = token(claims_exp(3600, NULL), "another-secret");
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", other);
  assert_int_equal(ask("/stream", hdr, body, sizeof(body)), 401);
  assert_true(error_is(body, "invalid_token"));
  assert_non_null(strstr(body, "bad signature"));
  free(other);

  char *old = token(claims_exp(-60, NULL), SECRET);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", old);
  assert_int_equal(ask("/stream", hdr, body, sizeof(body)), 401);
  assert_true(error_is(body, "token_expired"));
  free(old);

  char *good = token(claims_exp(3600, NULL), SECRET);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", good);
  assert_int_equal(ask("/stream?sym=MSFT", hdr, body, sizeof(body)), 200);
  assert_string_equal(body, "allowed");
  char target[1024];
  snprintf(target, sizeof(target), "/stream?token=%s&sym=AAPL", good);
  assert_int_equal(ask(target, NULL, body, sizeof(body)), 200);
  free(good);

  assert_int_equal(auth_counters.missing, 1);
  assert_int_equal(auth_counters.invalid, 1);
  assert_int_equal(auth_counters.expired, 1);
  assert_int_equal(auth_counters.ok, 2);
  stop();
}

/* A "symbols" claim: exact names and prefix patterns; the rest refused. */
static void symbols_claim(void **state) {
  start(true, NULL);
  char *t = token(claims_exp(3600, "\"symbols\":[\"AAPL\",\"BRK.*\"]"), SECRET);
  char hdr[1024], body[512];
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", t);
  free(t);
  static const struct {
    const char *target, *want;
  } cases[] = {{"/stream?sym=AAPL", "allowed"},
               {"/stream?sym=BRK.B", "allowed"},
               {"/stream?sym=MSFT", "forbidden"},
               {"/stream?sym=AAPLX", "forbidden"}};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(ask(cases[i].target, hdr, body, sizeof(body)), 200);
    assert_string_equal(body, cases[i].want);
  }
  assert_int_equal(auth_counters.forbidden_symbol, 2);
  stop();
}

/* Without --auth every request and symbol passes, and a WebSocket's Origin
 * is only checked against --allowed-origins when that is set. */
static void auth_off(void **state) {
  start(false, NULL);
  char body[512];
  assert_int_equal(ask("/ws?sym=ANY", "Origin: https://elsewhere.example\r\n", body, sizeof(body)), 200);
  assert_string_equal(body, "allowed");
  assert_int_equal(ask("/stream", NULL, body, sizeof(body)), 200);
  stop();

  start(false, "https://a.example, https://b.example");
  assert_int_equal(ask("/ws", "Origin: https://b.example\r\n", body, sizeof(body)), 200);
  assert_int_equal(ask("/ws", "Origin: https://elsewhere.example\r\n", body, sizeof(body)), 403);
  assert_true(error_is(body, "forbidden_origin"));
  assert_int_equal(ask("/stream", "Origin: https://elsewhere.example\r\n", body, sizeof(body)), 200);
  assert_int_equal(auth_counters.forbidden_origin, 1);
  stop();
}

/* With --auth and no list, a browser's WebSocket must come from the same
 * host (cross-site WebSocket hijacking); the Origin is checked before the
 * token. Clients that send no Origin are not browsers. */
static void origin_same_host(void **state) {
  start(true, NULL);
  char *t = token(claims_exp(3600, NULL), SECRET);
  char hdr[1024], body[512];
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\nOrigin: http://t\r\n", t);
  assert_int_equal(ask("/ws", hdr, body, sizeof(body)), 200);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\nOrigin: http://evil.example\r\n", t);
  assert_int_equal(ask("/ws", hdr, body, sizeof(body)), 403);
  assert_true(error_is(body, "forbidden_origin"));
  assert_int_equal(ask("/ws", "Origin: http://evil.example\r\n", body, sizeof(body)), 403);
  snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", t);
  assert_int_equal(ask("/ws", hdr, body, sizeof(body)), 200);
  free(t);
  assert_int_equal(auth_counters.forbidden_origin, 2);
  assert_int_equal(auth_counters.missing, 0);
  stop();
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(tokens),
      cmocka_unit_test(symbols_claim),
      cmocka_unit_test(auth_off),
      cmocka_unit_test(origin_same_host),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  buf_pool_release();
  log_close();
  return rc;
}
