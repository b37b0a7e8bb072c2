/* utf8: every code point class at its edges, against an independent decoder,
 * the ASCII fast path with a bad byte at every offset, and byte-wise feeding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/utf8.h"

/* Encodes any value up to 0x1FFFFF the way UTF-8 would, surrogates included,
 * so that the validator must tell which of them are not characters. */
static size_t encode(uint32_t cp, uint8_t *out) {
  if (cp < 0x80) { out[0] = (uint8_t)cp; return 1; }
  if (cp < 0x800) { out[0] = (uint8_t)(0xC0 | cp >> 6); out[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | cp >> 12);
    out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | cp >> 18);
  out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

static void test_every_code_point(void **state) {
  uint8_t b[4];
  for (uint32_t cp = 0; cp < 0x140000; cp++) {
    size_t n = encode(cp, b);
    bool want = cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
    if (utf8_valid(b, n) != want) fail_msg("U+%04X: expected %d", (unsigned)cp, want);
    /* Any strict prefix is incomplete, never valid. */
    for (size_t k = 1; k < n; k++) assert_false(utf8_valid(b, k));
  }
}

static void test_overlongs(void **state) {
  /* The smallest code point of each length, encoded one byte longer. */
  static const char *const over[] = {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf",
                                     "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf"};
  for (size_t i = 0; i < sizeof(over) / sizeof(over[0]); i++) {
    utf8_state s;
    utf8_init(&s);
    /* Rejected at the second byte at the latest: no need to wait for the rest. */
    assert_int_equal(utf8_feed(&s, over[i], 2), -1);
    assert_int_equal(utf8_feed(&s, "a", 1), -1); /* sticky */
  }
}

static void test_fast_path_offsets(void **state) {
  char buf[64];
  for (size_t pos = 0; pos < 40; pos++) {
    memset(buf, 'a', sizeof(buf));
    buf[pos] = (char)0xff;
    assert_false(utf8_valid(buf, sizeof(buf)));
    memcpy(buf + pos, "\xe2\x82\xac", 3); /* € */
    assert_true(utf8_valid(buf, sizeof(buf)));
    buf[pos + 2] = 'a';
    assert_false(utf8_valid(buf, sizeof(buf)));
  }
  assert_true(utf8_valid("", 0));
}

static void test_bytewise(void **state) {
  static const char text[] = "price \xe2\x82\xac 189.5 \xf0\x9f\x93\x88 \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
  utf8_state s;
  utf8_init(&s);
  for (size_t i = 0; i + 1 < sizeof(text); i++) assert_int_equal(utf8_feed(&s, text + i, 1), 0);
  assert_true(utf8_complete(&s));
  utf8_init(&s);
  assert_int_equal(utf8_feed(&s, "\xf0\x9f", 2), 0);
  assert_false(utf8_complete(&s));
  assert_int_equal(utf8_feed(&s, "\x93\x88", 2), 0);
  assert_true(utf8_complete(&s));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_point),
      cmocka_unit_test(test_overlongs),
      cmocka_unit_test(test_fast_path_offsets),
      cmocka_unit_test(test_bytewise),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
