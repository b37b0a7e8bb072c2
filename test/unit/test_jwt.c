/* jwt: tokens are built here with OpenSSL's HMAC, independently of the code
 * under test's signing path (it has none), then verified. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/jwt.h"
#include "jwt_fixture.h"

#define SECRET "s3cret-for-tests"
#define NOW 1800000000

static const char *verify(const char *tok, jwt_claims *c) {
  const char *err = NULL;
  int rc = jwt_verify(tok, strlen(tok), SECRET, strlen(SECRET), NOW, c, &err);
  assert_true((rc == 0) == (err == NULL));
  return err;
}

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void test_valid_and_symbols(void **state) {
  char *t = make_token(HS256, "{\"sub\":\"u1\",\"exp\":1800000060,\"nbf\":1799999999,"
                              "\"symbols\":[\"AAPL\",\"BRK.*\",\"M*\"]}", SECRET);
  jwt_claims c;
  assert_null(verify(t, &c));
  assert_true(c.has_exp);
  assert_true(c.exp == 1800000060.0);
  assert_false(c.all_symbols);
  assert_int_equal(c.nsymbols, 3);
  assert_true(jwt_allows_symbol(&c, "AAPL"));
  assert_false(jwt_allows_symbol(&c, "AAP"));
  assert_false(jwt_allows_symbol(&c, "AAPLX"));
  assert_true(jwt_allows_symbol(&c, "BRK.A"));
  assert_false(jwt_allows_symbol(&c, "BRK"));
  assert_true(jwt_allows_symbol(&c, "MSFT"));
  assert_true(jwt_allows_symbol(&c, "M"));
  assert_false(jwt_allows_symbol(&c, "GOOG"));
  jwt_claims_free(&c);
  free(t);

  t = make_token(HS256, "{\"symbols\":[\"GOOG\",\"*\"]}", SECRET);
  assert_null(verify(t, &c));
  assert_true(jwt_allows_symbol(&c, "ANY"));
  assert_false(c.has_exp);   /* no exp: does not expire */
  jwt_claims_free(&c);
  free(t);

  t = make_token(HS256, "{}", SECRET);   /* no symbols claim: all allowed */
  assert_null(verify(t, &c));
  assert_true(jwt_allows_symbol(&c, "TSLA"));
  jwt_claims_free(&c);
  free(t);

  t = make_token(HS256, "{\"symbols\":[]}", SECRET);   /* an empty list: none */
  assert_null(verify(t, &c));
  assert_false(jwt_allows_symbol(&c, "TSLA"));
  jwt_claims_free(&c);
  free(t);
}

static void test_time_claims(void **state) {
  jwt_claims c;
  char *t = make_token(HS256, "{\"exp\":1800000000}", SECRET);   /* now == exp */
  assert_string_equal(verify(t, &c), "expired");
  free(t);
  t = make_token(HS256, "{\"exp\":1700000000.5}", SECRET);
  assert_string_equal(verify(t, &c), "expired");
  free(t);
  t = make_token(HS256, "{\"exp\":1800000001}", SECRET);
  assert_null(verify(t, &c));
  jwt_claims_free(&c);
  free(t);
  t = make_token(HS256, "{\"nbf\":1800000001}", SECRET);
  assert_string_equal(verify(t, &c), "not yet valid");
  free(t);
  t = make_token(HS256, "{\"nbf\":1800000000}", SECRET);
  assert_null(verify(t, &c));
  jwt_claims_free(&c);
  free(t);
  t = make_token(HS256, "{\"exp\":\"tomorrow\"}", SECRET);
  assert_string_equal(verify(t, &c), "malformed");
  free(t);
}

static void test_signature(void **state) {
  jwt_claims c;
  char *t = make_token(HS256, "{\"symbols\":[\"*\"]}", "another-secret");
  assert_string_equal(verify(t, &c), "bad signature");
  free(t);
  /* Payload swapped under a valid signature: forged. */
  char *a = make_token(HS256, "{\"symbols\":[\"AAPL\"]}", SECRET);
  char *b = make_token(HS256, "{\"symbols\":[\"*\"]}", SECRET);
  char forged[512];
  const char *a_sig = strrchr(a, '.');
  size_t b_head = (size_t)(strrchr(b, '.') - b);
  snprintf(forged, sizeof(forged), "%.*s%s", (int)b_head, b, a_sig);
  assert_string_equal(verify(forged, &c), "bad signature");
  /* One flipped signature character. */
  strcpy(forged, a);
  char *last = forged + strlen(forged) - 2;
  *last = *last == 'A' ? 'B' : 'A';
  assert_string_equal(verify(forged, &c), "bad signature");
  /* Truncated signature. */
  strcpy(forged, a);
  forged[strlen(forged) - 1] = 0;
  assert_string_equal(verify(forged, &c), "bad signature");
  /* No secret configured: nothing verifies. */
  const char *err;
  assert_int_equal(jwt_verify(a, strlen(a), "", 0, NOW, &c, &err), -1);
  assert_string_equal(err, "no secret");
  free(a);
  free(b);
}

static void test_alg(void **state) {
  jwt_claims c;
  char tok[512], h[128], p[128];
  /* alg none with an empty signature, the classic downgrade. */
  const char *hj = "{\"alg\":\"none\",\"typ\":\"JWT\"}", *pj = "{\"symbols\":[\"*\"]}";
  b64url(hj, strlen(hj), h);
  b64url(pj, strlen(pj), p);
  snprintf(tok, sizeof(tok), "%s.%s.", h, p);
  assert_string_equal(verify(tok, &c), "unsupported alg");
  /* alg none even with a valid HMAC appended. */
  char *t = make_token("{\"alg\":\"none\"}", "{}", SECRET);
  assert_string_equal(verify(t, &c), "unsupported alg");
  free(t);
  const char *algs[] = {"{\"alg\":\"HS512\"}", "{\"alg\":\"RS256\"}", "{\"alg\":\"hs256\"}",
                        "{\"alg\":\"HS256 \"}"};
  for (size_t i = 0; i < 4; i++) {
    t = make_token(algs[i], "{}", SECRET);
    assert_string_equal(verify(t, &c), "unsupported alg");
    free(t);
  }
  t = make_token("{\"typ\":\"JWT\"}", "{}", SECRET);
  assert_string_equal(verify(t, &c), "malformed");
  free(t);
  t = make_token("{\"alg\":\"HS256\",\"crit\":[\"exp\"]}", "{}", SECRET);
  assert_string_equal(verify(t, &c), "malformed");
  free(t);
}

static void test_malformed(void **state) {
  jwt_claims c;
  const char *bad[] = {"", "abc", "a.b", "a.b.c.d", ".b.c", "a..c",
                       "eyJhbGciOiJIUzI1NiJ9=.e30.x",    /* padding */
                       "eyJhbGciOiJIUzI1NiJ9.e3+.x",      /* '+' is not base64url */
                       "eyJhbGciOiJIUzI1NiJ9.e30.x y",
                       "e.e30.xxxx"};                     /* impossible length */
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    const char *err = verify(bad[i], &c);
    assert_non_null(err);
    if (strcmp(err, "malformed") && strcmp(err, "bad signature"))
      fail_msg("%s: %s", bad[i], err);
  }
  assert_string_equal(verify("abc", &c), "malformed");
  assert_string_equal(verify("a.b.c.d", &c), "malformed");
  /* Signed garbage: the signature is fine, the claims are not. */
  const char *payloads[] = {"[]", "not json", "{\"symbols\":\"AAPL\"}", "{\"symbols\":[1]}",
                            "{\"symbols\":[\"aapl\"]}", "{\"symbols\":[\"*A\"]}",
                            "{\"symbols\":[\"A*B\"]}", "{\"a\":1,\"a\":2}"};
  for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
    char *t = make_token(HS256, payloads[i], SECRET);
    const char *err = verify(t, &c);
    if (!err || strcmp(err, "malformed")) fail_msg("%s: %s", payloads[i], err ? err : "accepted");
    free(t);
  }
  /* Too long before any work. */
  size_t n = JWT_MAX_TOKEN + 1;
  char *big = malloc(n + 1);
  memset(big, 'a', n);
  big[10] = '.';
  big[20] = '.';
  big[n] = 0;
  assert_string_equal(verify(big, &c), "malformed");
  free(big);
}

static void test_b64url(void **state) {
  unsigned char out[16];
  assert_int_equal(jwt_b64url_decode("", 0, out), 0);
  assert_int_equal(jwt_b64url_decode("YQ", 2, out), 1);
  assert_int_equal(out[0], 'a');
  assert_int_equal(jwt_b64url_decode("YR", 2, out), -1);   /* unused bits set */
  assert_int_equal(jwt_b64url_decode("YWJj", 4, out), 3);
  assert_memory_equal(out, "abc", 3);
  assert_int_equal(jwt_b64url_decode("_-8", 3, out), 2);
  assert_int_equal(out[0], 0xff);
  assert_int_equal(out[1], 0xef);
  assert_int_equal(jwt_b64url_decode("YWJjZ", 5, out), -1);
  assert_int_equal(jwt_b64url_decode("YQ==", 4, out), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_valid_and_symbols), cmocka_unit_test(test_time_claims),
    cmocka_unit_test(test_signature),         cmocka_unit_test(test_alg),
    cmocka_unit_test(test_malformed),         cmocka_unit_test(test_b64url),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
