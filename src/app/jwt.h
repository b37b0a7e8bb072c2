/* HS256 JSON Web Tokens (RFC 7519, compact JWS form) for the access control
 * of the streaming endpoints. Only HS256 is accepted: the algorithm is fixed
 * by configuration, never chosen by the token ("none", RS256 and the rest
 * are refused), and the signature is checked before the claims are parsed.
 *
 * Claims used: "exp" and "nbf" (NumericDate, optional; a token without "exp"
 * does not expire) and "symbols", an optional array of strings each an exact
 * symbol ("AAPL"), a prefix pattern with a trailing "*" ("BRK.*"), or "*".
 * A token without "symbols" allows every symbol. */
#ifndef TD_JWT_H
#define TD_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/td_limits.h"

/* Longer tokens are refused before any decoding: a header line holds them,
 * and 8 KiB leaves room for a few hundred symbol patterns. */
#define JWT_MAX_TOKEN 8192
/* Symbol patterns one token may carry. */
#define JWT_MAX_SYMBOLS 512

typedef struct jwt_claims {
  bool has_exp, has_nbf;
  double exp, nbf;           /* seconds since the epoch */
  bool all_symbols;          /* no "symbols" claim, or "*" among them */
  size_t nsymbols;
  /* Patterns as given: an exact symbol or a prefix followed by '*'. */
  char (*symbols)[TD_SYMBOL_MAX + 2];
} jwt_claims;

/* Verifies token[0..len) with `secret` at time `now_s` (seconds since the
 * epoch). Returns 0 and fills `out` (release with jwt_claims_free), or -1
 * with *err one of the static strings "malformed", "unsupported alg",
 * "bad signature", "expired", "not yet valid", "no secret". */
int jwt_verify(const char *token, size_t len, const char *secret, size_t secret_len,
               int64_t now_s, jwt_claims *out, const char **err);
void jwt_claims_free(jwt_claims *c);
bool jwt_allows_symbol(const jwt_claims *c, const char *sym);

/* base64url without padding (RFC 7515 section 2): decodes in[0..n) into out,
 * which must hold n * 3 / 4 bytes. Returns the decoded length, or -1 for a
 * character outside the alphabet, '=' padding, an impossible length, or
 * nonzero unused bits (so that every value has exactly one encoding). */
long jwt_b64url_decode(const char *in, size_t n, unsigned char *out);

#endif
