/* The JSON writer: nesting, commas, escapes, and that jansson reads back
 * exactly what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "jsonw.h"

static void nested_document_round_trips(void **state) {
  jsonw w;
  jw_init(&w, 8); /* tiny: forces growth */
  jw_object(&w, NULL);
  jw_str(&w, "s", "quote \" back\\slash \n tab\t \x01");
  jw_u64(&w, "big", 9007199254740993ULL); /* above 2^53: no double rounding */
  jw_i64(&w, "neg", -42);
  jw_double(&w, "pi", 3.5);
  jw_bool(&w, "t", true);
  jw_null(&w, "n");
  jw_object(&w, "inner");
  jw_array(&w, "list");
  jw_u64(&w, NULL, 1);
  jw_str(&w, NULL, "two");
  jw_object(&w, NULL);
  jw_end(&w);
  jw_end(&w);
  jw_end(&w);
  jw_end(&w);
  assert_false(w.failed);
  json_error_t err;
  json_t *o = json_loadb(w.p, w.len, 0, &err);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "s")), "quote \" back\\slash \n tab\t \x01");
  assert_int_equal(json_integer_value(json_object_get(o, "neg")), -42);
  assert_true(json_real_value(json_object_get(o, "pi")) == 3.5);
  assert_true(json_is_true(json_object_get(o, "t")));
  assert_true(json_is_null(json_object_get(o, "n")));
  json_t *list = json_object_get(json_object_get(o, "inner"), "list");
  assert_int_equal(json_array_size(list), 3);
  assert_string_equal(json_string_value(json_array_get(list, 1)), "two");
  assert_int_equal(json_integer_value(json_object_get(o, "big")), 9007199254740993LL);
  json_decref(o);
  jw_free(&w);
}

static void unbalanced_end_fails(void **state) {
  jsonw w;
  jw_init(&w, 0);
  jw_end(&w);
  assert_true(w.failed);
  jw_free(&w);
}

static void too_deep_fails(void **state) {
  jsonw w;
  jw_init(&w, 0);
  for (int i = 0; i <= JW_MAX_DEPTH; i++) jw_array(&w, NULL);
  assert_true(w.failed);
  jw_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(nested_document_round_trips), cmocka_unit_test(unbalanced_end_fails),
    cmocka_unit_test(too_deep_fails),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
