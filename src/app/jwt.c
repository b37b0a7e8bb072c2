/* HS256 JWT verification. Order matters: split, decode and check the header
 * (alg), then the signature over the encoded header and payload, and only
 * then parse the payload, so that unauthenticated bytes meet as little code
 * as possible. */
#include "jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "market/stream_msg.h"
#include "base/base64.h"

#define JWT_SIG_LEN 32   /* SHA-256 */

static const char E_MALFORMED[] = "malformed";
static const char E_ALG[] = "unsupported alg";
static const char E_SIG[] = "bad signature";
static const char E_EXPIRED[] = "expired";
static const char E_NBF[] = "not yet valid";
static const char E_SECRET[] = "no secret";

static int b64val(unsigned char c) { return base64_value(c, true); }

long jwt_b64url_decode(const char *in, size_t n, unsigned char *out) {
  if (n % 4 == 1) return -1;
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    int v = b64val((unsigned char)in[i]);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (acc) return -1;   /* leftover bits must be zero */
  return (long)o;
}

/* Decodes one segment into a fresh NUL-terminated buffer. */
static unsigned char *segment(const char *p, size_t n, size_t *outlen) {
  unsigned char *b = malloc(n * 3 / 4 + 1);
  if (!b) return NULL;
  long m = jwt_b64url_decode(p, n, b);
  if (m < 0) {
    free(b);
    return NULL;
  }
  b[m] = 0;
  *outlen = (size_t)m;
  return b;
}

static json_t *segment_json(const char *p, size_t n) {
  size_t len;
  unsigned char *b = segment(p, n, &len);
  if (!b) return NULL;
  json_t *j = json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, NULL);
  free(b);
  if (j && !json_is_object(j)) {
    json_decref(j);
    return NULL;
  }
  return j;
}

static const char *check_header(const char *p, size_t n) {
  json_t *h = segment_json(p, n);
  if (!h) return E_MALFORMED;
  const json_t *alg = json_object_get(h, "alg");
  const char *err = NULL;
  if (!json_is_string(alg))
    err = E_MALFORMED;
  else if (strcmp(json_string_value(alg), "HS256") != 0 || json_string_length(alg) != 5)
    err = E_ALG;
  else if (json_object_get(h, "crit"))   /* extensions we cannot honour (RFC 7515 4.1.11) */
    err = E_MALFORMED;
  json_decref(h);
  return err;
}

static const char *check_signature(const char *token, size_t signed_len, const char *sig,
                                   size_t sig_len, const char *secret, size_t secret_len) {
  unsigned char want[EVP_MAX_MD_SIZE], got[JWT_SIG_LEN + 3];
  unsigned int want_len = 0;
  /* 32 bytes are 43 characters unpadded; anything else cannot match. */
  if (sig_len != 43 || jwt_b64url_decode(sig, sig_len, got) != JWT_SIG_LEN) return E_SIG;
  if (!HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)token, signed_len, want,
            &want_len) ||
      want_len != JWT_SIG_LEN)
    return E_SIG;
  return CRYPTO_memcmp(want, got, JWT_SIG_LEN) == 0 ? NULL : E_SIG;
}

/* An exact symbol, "PREFIX*" with a valid (possibly empty) prefix, or "*". */
static bool pattern_valid(const char *s, size_t n) {
  if (n && s[n - 1] == '*') return n == 1 || smsg_symbol_valid(s, n - 1);
  return smsg_symbol_valid(s, n);
}

static const char *read_symbols(const json_t *arr, jwt_claims *c) {
  if (!json_is_array(arr) || json_array_size(arr) > JWT_MAX_SYMBOLS) return E_MALFORMED;
  size_t n = json_array_size(arr);
  c->symbols = calloc(n ? n : 1, sizeof(*c->symbols));
  if (!c->symbols) return E_MALFORMED;
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(arr, i);
    if (!json_is_string(v)) return E_MALFORMED;
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (!pattern_valid(s, len)) return E_MALFORMED;
    if (len == 1 && s[0] == '*') c->all_symbols = true;
    memcpy(c->symbols[c->nsymbols++], s, len);
  }
  return NULL;
}

static const char *read_claims(const char *p, size_t n, int64_t now_s, jwt_claims *c) {
  json_t *j = segment_json(p, n);
  if (!j) return E_MALFORMED;
  const char *err = NULL;
  const json_t *exp = json_object_get(j, "exp"), *nbf = json_object_get(j, "nbf");
  const json_t *syms = json_object_get(j, "symbols");
  if ((exp && !json_is_number(exp)) || (nbf && !json_is_number(nbf))) {
    err = E_MALFORMED;
    goto out;
  }
  c->has_exp = exp != NULL;
  c->exp = exp ? json_number_value(exp) : 0;
  c->has_nbf = nbf != NULL;
  c->nbf = nbf ? json_number_value(nbf) : 0;
  if (c->has_exp && (double)now_s >= c->exp) {
    err = E_EXPIRED;
    goto out;
  }
  if (c->has_nbf && (double)now_s < c->nbf) {
    err = E_NBF;
    goto out;
  }
  if (syms)
    err = read_symbols(syms, c);
  else
    c->all_symbols = true;
out:
  json_decref(j);
  return err;
}

int jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
               int64_t now_s, jwt_claims *out, const char **err) {
  memset(out, 0, sizeof(*out));
  *err = NULL;
  if (!secret || !secret_len) {
    *err = E_SECRET;
    return -1;
  }
  const char *d1 = len <= JWT_MAX_TOKEN ? memchr(token, '.', len) : NULL;
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
  const char *end = token + len;
  if (!d2 || memchr(d2 + 1, '.', (size_t)(end - d2 - 1)) || d1 == token || d2 == d1 + 1) {
    *err = E_MALFORMED;
    return -1;
  }
  *err = check_header(token, (size_t)(d1 - token));
  if (!*err)
    *err = check_signature(token, (size_t)(d2 - token), d2 + 1, (size_t)(end - d2 - 1), secret,
                           secret_len);
  if (!*err) *err = read_claims(d1 + 1, (size_t)(d2 - d1 - 1), now_s, out);
  if (*err) {
    jwt_claims_free(out);
    return -1;
  }
  return 0;
}

void jwt_claims_free(jwt_claims *c) {
  free(c->symbols);
  c->symbols = NULL;
  c->nsymbols = 0;
}

bool jwt_allows_symbol(const jwt_claims *c, const char *sym) {
  if (c->all_symbols) return true;
  size_t n = strlen(sym);
  for (size_t i = 0; i < c->nsymbols; i++) {
    const char *p = c->symbols[i];
    size_t pl = strlen(p);
    if (pl && p[pl - 1] == '*') {
      if (n >= pl - 1 && !memcmp(sym, p, pl - 1)) return true;
    } else if (pl == n && !memcmp(sym, p, n)) {
      return true;
    }
  }
  return false;
}
