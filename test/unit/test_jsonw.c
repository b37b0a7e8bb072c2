/* The JSON writer: nesting, commas, escapes, and that jansson reads back
 * exactly what was written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "base/jsonw.h"

static void nested_document_round_trips(void **state) {
  jsonw w;
  jw_init(&w, 8); /* tiny: forces growth */
  jw_object(&w, NULL);
  jw_str(&w, "s", "quote \" back\\slash \n tab\t \x01");
  jw_u64(&w, "big", 9007199254740993ULL); /* above 2^53: no double rounding */
  jw_i64(&w, "neg", -42);
  jw_u64(&w, "k\"ey\n", 5); /* a key that needs escaping */
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
  assert_int_equal(json_integer_value(json_object_get(o, "k\"ey\n")), 5);
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

/* The literal-key macros write exactly what the general functions write,
 * across buffer growth and at every width of a number. */
static void literal_keys_match_general_writer(void **state) {
  static const uint64_t values[] = {0, 9, 10, 99, 12345, UINT64_MAX};
  jsonw lit, gen;
  jw_init(&lit, 1); /* grows on nearly every write */
  jw_init(&gen, 0);
  jw_object(&lit, NULL);
  jw_object(&gen, NULL);
  JW_OBJECT(&lit, "first");
  jw_object(&gen, "first");
  jw_end(&lit);
  jw_end(&gen);
  JW_OBJECT(&lit, "counts");
  jw_object(&gen, "counts");
  for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
    JW_U64(&lit, "n", values[i]);
    jw_u64(&gen, "n", values[i]);
  }
  jw_end(&lit);
  jw_end(&gen);
  JW_U64(&lit, "last", 7);
  jw_u64(&gen, "last", 7);
  JW_I64(&lit, "neg", INT64_MIN);
  jw_i64(&gen, "neg", INT64_MIN);
  JW_STR(&lit, "plain", "ready");
  jw_str(&gen, "plain", "ready");
  JW_STR(&lit, "escaped", "a\"b");
  jw_str(&gen, "escaped", "a\"b");
  jw_end(&lit);
  jw_end(&gen);
  assert_false(lit.failed);
  assert_string_equal(lit.p, gen.p);
  assert_string_equal(lit.p, "{\"first\":{},\"counts\":{\"n\":0,\"n\":9,\"n\":10,\"n\":99,"
                             "\"n\":12345,\"n\":18446744073709551615},\"last\":7,"
                             "\"neg\":-9223372036854775808,\"plain\":\"ready\",\"escaped\":\"a\\\"b\"}");
  assert_int_equal(lit.len, strlen(lit.p));
  jw_free(&lit);
  jw_free(&gen);
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

  jw_init(&w, 0);
  jw_object(&w, NULL);
  for (int i = 1; i < JW_MAX_DEPTH; i++) JW_OBJECT(&w, "k");
  assert_false(w.failed);
  JW_OBJECT(&w, "k");
  assert_true(w.failed);
  jw_free(&w);
}

/* jw_strn writes exactly n bytes, a NUL among them, escaped like jw_str. */
static void counted_strings(void **state) {
  jsonw w;
  jw_init(&w, 0);
  jw_array(&w, NULL);
  jw_strn(&w, NULL, "a\0b\"c", 5);
  jw_strn(&w, NULL, "xyz", 2);
  jw_end(&w);
  assert_false(w.failed);
  assert_string_equal(w.p, "[\"a\\u0000b\\\"c\",\"xy\"]");
  jw_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(nested_document_round_trips), cmocka_unit_test(literal_keys_match_general_writer),
    cmocka_unit_test(unbalanced_end_fails),
    cmocka_unit_test(too_deep_fails), cmocka_unit_test(counted_strings),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
