/* Writing RESP by hand: a bulk string into a buffer the caller sized.
 * hiredis's redisFormatCommandArgv prints each length with sprintf; the
 * publishers write a command per message or per bar, where that cost more
 * than everything else they do. */
#ifndef TD_RESP_PUT_H
#define TD_RESP_PUT_H

#include <stddef.h>
#include <string.h>

#include "base/fmt_num.h"

/* Room resp_put_bulk needs around n bytes: "$", the length, two CRLFs. */
#define RESP_BULK_OVERHEAD (1 + FMT_U64_MAX + 4)

/* $<n>\r\n<s>\r\n at o; returns the end. */
static inline char *resp_put_bulk(char *o, const char *s, size_t n) {
  *o++ = '$';
  if (n >= 10 && n < 1000) {
    if (n >= 100) *o++ = (char)('0' + n / 100);
    *o++ = (char)('0' + n / 10 % 10);
    *o++ = (char)('0' + n % 10);
  } else {
    o = fmt_u64(o, n);
  }
  *o++ = '\r';
  *o++ = '\n';
  memcpy(o, s, n);
  o += n;
  *o++ = '\r';
  *o++ = '\n';
  return o;
}

#endif
