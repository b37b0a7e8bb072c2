/* libFuzzer: the JWT verifier of the streaming endpoints (jwt.c).
 *
 * Input: one mode byte, then
 *   even mode: a raw token, verified as it comes (the base64url, split and
 *              signature checks; a forged signature must never pass);
 *   odd mode:  header JSON, NUL, claims JSON: the harness encodes and signs
 *              them with the secret, so the header and claims parsers are
 *              reached with any bytes, not only ones a mutation kept valid.
 * Checked: a verified token's claims are consistent (symbols within their
 * limits, valid patterns), the clock is honoured (exp/nbf), and the
 * base64url decoder is canonical: what it decodes re-encodes to its input. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/jwt.h"

#define FUZZ_JWT_SECRET "fuzz-secret"
/* A fixed clock: 2026-01-01T00:00:00Z. */
#define FUZZ_NOW 1767225600

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64url_encode(const unsigned char *in, size_t n, char *out) {
  size_t w = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    size_t chars = n - i >= 3 ? 4 : n - i + 1;
    for (size_t k = 0; k < chars; k++) out[w++] = b64url[(v >> (18 - 6 * k)) & 63];
  }
  return w;
}

static void check_decoder(const char *s, size_t n) {
  unsigned char *dec = malloc(n * 3 / 4 + 1);
  char *again = malloc(n + 4);
  if (!dec || !again) abort();
  long m = jwt_b64url_decode(s, n, dec);
  if (m >= 0) {
    if ((size_t)m > n * 3 / 4) abort();
    if (b64url_encode(dec, (size_t)m, again) != n || memcmp(again, s, n)) abort();
  }
  free(dec);
  free(again);
}

static void check_claims(const jwt_claims *c) {
  if (c->nsymbols > JWT_MAX_SYMBOLS) abort();
  if (c->has_exp && !(c->exp > FUZZ_NOW)) abort();
  if (c->has_nbf && !(c->nbf <= FUZZ_NOW)) abort();
  for (size_t i = 0; i < c->nsymbols; i++) {
    size_t n = strnlen(c->symbols[i], TD_SYMBOL_MAX + 2);
    if (n == 0 || n > TD_SYMBOL_MAX + 1) abort();
    /* a pattern matches itself (a prefix pattern, its prefix) */
    char sym[TD_SYMBOL_MAX + 2];
    memcpy(sym, c->symbols[i], n + 1);
    if (sym[n - 1] == '*') sym[n - 1] = '\0';
    if (sym[0] && !jwt_allows_symbol(c, sym)) abort();
  }
}

static void verify(const char *token, size_t len) {
  jwt_claims c;
  const char *err = NULL;
  int rc = jwt_verify(token, len, FUZZ_JWT_SECRET, strlen(FUZZ_JWT_SECRET), FUZZ_NOW, &c, &err);
  if (rc == 0) {
    if (err) abort();
    check_claims(&c);
  } else if (!err || c.symbols) {
    abort();
  }
  jwt_claims_free(&c);
}

/* header.claims.signature, signed with the secret. */
static void verify_signed(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t hl = nul ? (size_t)(nul - data) : size;
  const uint8_t *claims = nul ? nul + 1 : data + size;
  size_t cl = (size_t)(data + size - claims);
  char *tok = malloc((hl + cl) * 4 / 3 + 128);
  if (!tok) abort();
  size_t n = b64url_encode(data, hl, tok);
  tok[n++] = '.';
  n += b64url_encode(claims, cl, tok + n);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int ml = 0;
  HMAC(EVP_sha256(), FUZZ_JWT_SECRET, (int)strlen(FUZZ_JWT_SECRET), (const unsigned char *)tok, n, mac, &ml);
  tok[n++] = '.';
  n += b64url_encode(mac, ml, tok + n);
  verify(tok, n);
  free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  data++;
  size--;
  if (mode & 1) {
    verify_signed(data, size);
  } else {
    char *s = malloc(size ? size : 1); /* exactly the input: reads past it are caught */
    if (!s) abort();
    memcpy(s, data, size);
    verify(s, size);
    check_decoder(s, size);
    free(s);
  }
  return 0;
}
