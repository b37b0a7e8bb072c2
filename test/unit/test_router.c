/* Route patterns: exact paths, {param} segments, {rest...}, and the table. */
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

static void table_is_well_formed(void **state) {
  int n;
  const td_route *table = app_routes(&n);
  assert_true(n >= 9);
  for (int i = 0; i < n; i++) {
    assert_non_null(table[i].handler);
    assert_true(table[i].pattern[0] == '/');
    assert_true(table[i].methods != 0);
    /* no two routes answer the same method on the same pattern */
    for (int j = i + 1; j < n; j++)
      assert_false(!strcmp(table[i].pattern, table[j].pattern) && (table[i].methods & table[j].methods));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(exact), cmocka_unit_test(params), cmocka_unit_test(rest), cmocka_unit_test(table_is_well_formed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
