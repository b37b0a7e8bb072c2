/* http1.c's response writer over a real connection: the head every response carries
 * (Content-Type, Content-Length, Date, X-Request-Id: the client's when
 * printable and short, else a generated one), JSON bodies and errors, and
 * the request accessors a handler uses (headers by any case, query
 * parameters percent-decoded). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>

#include "base/buf.h"
#include "base/jsonw.h"
#include "base/log.h"
#include "http_fixture.h"

static uv_loop_t loop;
static td_server *srv;

/* Answers with what the accessors found, as JSON. */
static void h_inspect(td_request *req) {
  char sym[32] = "", note[64] = "";
  bool has_sym = http_query_param(req, "sym", sym, sizeof(sym));
  bool has_note = http_query_param(req, "note", note, sizeof(note));
  bool has_missing = http_query_param(req, "missing", note + 40, 8);
  const td_header *agent = http_header(req, "USER-agent");
  jsonw w;
  jw_init(&w, 0);
  jw_object(&w, NULL);
  jw_str(&w, "sym", sym);
  jw_bool(&w, "has_sym", has_sym);
  jw_str(&w, "note", note);
  jw_bool(&w, "has_note", has_note);
  jw_bool(&w, "has_missing", has_missing);
  jw_strn(&w, "agent", agent ? agent->value : "", agent ? agent->value_len : 0);
  jw_bool(&w, "json_ct", http_header_is(req, "accept", "APPLICATION/JSON"));
  jw_str(&w, "method", http_method_name(req));
  jw_end(&w);
  http_respond(req, 200, "application/json", w.p, w.len, "X-Extra: 1\r\n");
  jw_free(&w);
}

static void h_fail(td_request *req) { http_error(req, 429, "slow_down", NULL, "Retry-After: 2\r\n"); }

static const td_route routes[] = {
    {ROUTE_GET | ROUTE_POST, "/inspect", h_inspect, "inspect"},
    {ROUTE_GET, "/fail", h_fail, "fail"},
};

static int setup(void **state) {
  uv_loop_init(&loop);
  td_server_opts o = hfx_opts(routes, 2, NULL);
  return server_start(&srv, &loop, &o);
}

static int teardown(void **state) {
  bool ok = hfx_stop(&loop, srv, 1000) && rfx_loop_close(&loop) && buf_live_count() == 0;
  return ok ? 0 : -1;
}

static void head_and_json_body(void **state) {
  hcli c;
  hresp r[HCLI_MAX_RESPONSES];
  assert_int_equal(hcli_open(&c, server_port(srv)), 0);
  hcli_send(&c, "GET /inspect?sym=BRK.B&note=a%20b+c%2F%zz HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/1\r\n"
                "Accept: application/json\r\nX-Request-Id: req-42\r\n\r\n");
  assert_true(hcli_wait(&loop, &c, 1, r));
  assert_int_equal(r[0].status, 200);
  assert_true(hresp_has(&r[0], "\r\nContent-Type: application/json\r\n"));
  assert_true(hresp_has(&r[0], "\r\nX-Request-Id: req-42\r\n"));
  assert_true(hresp_has(&r[0], "\r\nX-Extra: 1\r\n"));
  assert_true(hresp_has(&r[0], " GMT\r\n"));
  assert_true(hresp_has(&r[0], "\r\nDate: "));
  json_error_t err;
  json_t *o = json_loadb(r[0].body, r[0].body_len, 0, &err);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "sym")), "BRK.B");
  assert_string_equal(json_string_value(json_object_get(o, "note")), "a b c/%zz");
  assert_true(json_is_true(json_object_get(o, "has_note")));
  assert_true(json_is_false(json_object_get(o, "has_missing")));
  assert_string_equal(json_string_value(json_object_get(o, "agent")), "probe/1");
  assert_true(json_is_true(json_object_get(o, "json_ct")));
  assert_string_equal(json_string_value(json_object_get(o, "method")), "GET");
  json_decref(o);
  hcli_close(&c);
}

/* A request id that is too long or holds a space is replaced by ours:
 * 16 hex digits, different for each request. */
static void generated_request_id(void **state) {
  hcli c;
  hresp r[HCLI_MAX_RESPONSES];
  char longid[TD_REQUEST_ID_MAX + 2];
  memset(longid, 'a', sizeof(longid) - 1);
  longid[sizeof(longid) - 1] = '\0';
  char req[512];
  snprintf(req, sizeof(req), "GET /inspect HTTP/1.1\r\nHost: t\r\nX-Request-Id: %s\r\n\r\n"
                             "GET /inspect HTTP/1.1\r\nHost: t\r\nX-Request-Id: a b\r\n\r\n", longid);
  assert_int_equal(hcli_open(&c, server_port(srv)), 0);
  hcli_send(&c, req);
  assert_true(hcli_wait(&loop, &c, 2, r));
  char ids[2][17];
  for (int i = 0; i < 2; i++) {
    assert_int_equal(r[i].status, 200);
    const char *h = hfx_memmem(r[i].head, r[i].head_len, "\r\nX-Request-Id: ");
    assert_non_null(h);
    h += 16;
    size_t len = strcspn(h, "\r");
    assert_int_equal(len, 16);
    assert_int_equal(strspn(h, "0123456789abcdef"), 16);
    memcpy(ids[i], h, 16);
    ids[i][16] = '\0';
  }
  assert_string_not_equal(ids[0], ids[1]);
  hcli_close(&c);
}

static void error_shape(void **state) {
  hcli c;
  hresp r[HCLI_MAX_RESPONSES];
  assert_int_equal(hcli_open(&c, server_port(srv)), 0);
  hcli_send(&c, GET("/fail"));
  assert_true(hcli_wait(&loop, &c, 1, r));
  assert_int_equal(r[0].status, 429);
  assert_int_equal(strncmp(r[0].head, "HTTP/1.1 429 Too Many Requests\r\n", 32), 0);
  assert_true(hresp_has(&r[0], "\r\nRetry-After: 2\r\n"));
  assert_true(hresp_body_is(&r[0], "{\"error\":\"slow_down\",\"message\":\"Too Many Requests\",\"status\":429}"));
  hcli_close(&c);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  log_set_stdout(getenv("TD_TEST_LOG") != NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(head_and_json_body),
      cmocka_unit_test(generated_request_id),
      cmocka_unit_test(error_shape),
  };
  int rc = cmocka_run_group_tests(tests, setup, teardown);
  buf_pool_release();
  log_close();
  return rc;
}
