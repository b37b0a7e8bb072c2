/* Base64 digits (RFC 4648): the one decoder of a digit, for both alphabets
 * (standard: WebSocket keys; URL-safe: JWT). Encoding uses OpenSSL's
 * EVP_EncodeBlock where it is needed. */
#ifndef TD_BASE64_H
#define TD_BASE64_H

#include <stdbool.h>

/* The value of digit `c`, or -1; `url` picks the URL-safe alphabet ('-' and
 * '_' instead of '+' and '/'). */
static inline int base64_value(int c, bool url) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (url ? '-' : '+')) return 62;
  if (c == (url ? '_' : '/')) return 63;
  return -1;
}

#endif
