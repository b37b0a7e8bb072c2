/* Tokens for tests, signed here with OpenSSL's HMAC, independently of the
 * code under test (which only verifies). */
#ifndef TD_JWT_FIXTURE_H
#define TD_JWT_FIXTURE_H

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline size_t b64url(const void *in, size_t n, char *out) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *p = in;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    out[o++] = a[v >> 18 & 63];
    out[o++] = a[v >> 12 & 63];
    if (i + 1 < n) out[o++] = a[v >> 6 & 63];
    if (i + 2 < n) out[o++] = a[v & 63];
  }
  out[o] = 0;
  return o;
}

/* header.payload.HMAC-SHA256(secret) */
static inline char *make_token(const char *header, const char *payload, const char *secret) {
  char *t = malloc(4 * (strlen(header) + strlen(payload)) + 128);
  size_t n = b64url(header, strlen(header), t);
  t[n++] = '.';
  n += b64url(payload, strlen(payload), t + n);
  unsigned char mac[32];
  unsigned int ml;
  HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)t, n, mac, &ml);
  t[n++] = '.';
  b64url(mac, ml, t + n);
  return t;
}

#endif
