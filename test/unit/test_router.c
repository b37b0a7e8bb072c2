/* Route patterns (exact paths, {param} segments, {rest...}) and which route
 * of the table answers a method and path, or what the path allows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "http/router.c"
#include "app/routes.h"

static bool match(const char *pattern, const char *path, td_request *req) {
  memset(req, 0, sizeof(*req));
  return route_match(pattern, path, strlen(path), req);
}

static void exact(void **state) {
  td_request r;
  assert_true(match("/", "/", &r));
  assert_true(match("/hello", "/hello", &r));
  assert_false(match("/hello", "/hello/", &r));
  assert_false(match("/hello", "/hell", &r));
  assert_false(match("/", "/hello", &r));
}

static void params(void **state) {
  td_request r;
  assert_true(match("/tasks/{id}", "/tasks/abc", &r));
  assert_int_equal(r.param_lens[0], 3);
  assert_memory_equal(r.params[0], "abc", 3);
  assert_false(match("/tasks/{id}", "/tasks/", &r));
  assert_false(match("/tasks/{id}", "/tasks/a/b", &r));
  assert_true(match("/quotes/{symbol}/history", "/quotes/BRK.B/history", &r));
  assert_memory_equal(r.params[0], "BRK.B", 5);
  assert_false(match("/quotes/{symbol}", "/quotes/AAPL/history", &r));
}

static void rest(void **state) {
  td_request r;
  assert_true(match("/dashboard/{file...}", "/dashboard/vendor/uPlot.min.js", &r));
  assert_int_equal(r.param_lens[0], strlen("vendor/uPlot.min.js"));
  assert_true(match("/dashboard/{file...}", "/dashboard/", &r));
  assert_int_equal(r.param_lens[0], 0);
}

/* The name of the route that answers `method path`, or NULL; *allowed is
 * what the path accepts when no route answers. */
static const char *find(uint8_t method, const char *path, td_request *req, unsigned *allowed) {
  memset(req, 0, sizeof(*req));
  req->method = method;
  req->path = path;
  req->path_len = strlen(path);
  int n;
  const td_route *routes = app_routes(&n);
  int i = route_find(routes, n, req, allowed);
  return i < 0 ? NULL : routes[i].name;
}

static void dispatch_picks_the_route(void **state) {
  td_request r;
  unsigned allowed;
  assert_string_equal(find(HTTP_GET, "/", &r, &allowed), "root");
  assert_string_equal(find(HTTP_GET, "/hello", &r, &allowed), "hello");
  assert_string_equal(find(HTTP_HEAD, "/status", &r, &allowed), "status");
  assert_string_equal(find(HTTP_GET, "/metrics", &r, &allowed), "metrics");
  assert_string_equal(find(HTTP_GET, "/ws", &r, &allowed), "ws");
  assert_string_equal(find(HTTP_GET, "/stream", &r, &allowed), "stream");
  /* one path, two methods: two routes */
  assert_string_equal(find(HTTP_GET, "/quotes", &r, &allowed), "quotes");
  assert_string_equal(find(HTTP_POST, "/quotes", &r, &allowed), "quotes_ingest");
  /* the more specific pattern is not shadowed by {symbol} */
  assert_string_equal(find(HTTP_GET, "/quotes/AAPL/history", &r, &allowed), "quote_history");
  assert_memory_equal(r.params[0], "AAPL", 4);
  assert_string_equal(find(HTTP_GET, "/quotes/AAPL", &r, &allowed), "quote");
  assert_int_equal(r.param_lens[0], 4);
  assert_string_equal(find(HTTP_GET, "/tasks/abc", &r, &allowed), "task");
  assert_memory_equal(r.params[0], "abc", 3);
  assert_string_equal(find(HTTP_GET, "/dashboard", &r, &allowed), "dashboard");
  assert_string_equal(find(HTTP_GET, "/dashboard/vendor/a.js", &r, &allowed), "dashboard_asset");
}

static void dispatch_refuses(void **state) {
  td_request r;
  unsigned allowed;
  /* a known path and another method: no route, and what it allows (405) */
  assert_null(find(HTTP_POST, "/hello", &r, &allowed));
  assert_int_equal(allowed, ROUTE_GET);
  assert_null(find(HTTP_DELETE, "/quotes", &r, &allowed));
  assert_int_equal(allowed, ROUTE_GET | ROUTE_POST);
  assert_null(find(HTTP_PUT, "/ws", &r, &allowed));
  assert_int_equal(allowed, ROUTE_GET);
  /* unknown paths: nothing allowed (404) */
  assert_null(find(HTTP_GET, "/nope", &r, &allowed));
  assert_int_equal(allowed, 0);
  assert_null(find(HTTP_GET, "/hello/", &r, &allowed));
  assert_int_equal(allowed, 0);
  assert_null(find(HTTP_GET, "/tasks/", &r, &allowed));
  assert_int_equal(allowed, 0);
  assert_null(find(HTTP_GET, "", &r, &allowed));
  assert_int_equal(allowed, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(exact), cmocka_unit_test(params), cmocka_unit_test(rest), cmocka_unit_test(dispatch_picks_the_route),
    cmocka_unit_test(dispatch_refuses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
