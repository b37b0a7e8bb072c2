/* Incremental UTF-8 validation (RFC 3629): the state is carried across calls,
 * so a text message may be checked fragment by fragment and a code point may
 * be split anywhere. Overlong forms, UTF-16 surrogates (U+D800..U+DFFF) and
 * code points above U+10FFFF are rejected at the first byte that makes the
 * sequence impossible. Runs of ASCII are checked 8 bytes at a time. */
#ifndef TD_UTF8_H
#define TD_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  UTF8_OK = 0,    /* at a character boundary */
  UTF8_TAIL1,     /* one continuation byte (80..BF) missing */
  UTF8_TAIL2,     /* two continuation bytes missing */
  UTF8_TAIL3,     /* three continuation bytes missing */
  UTF8_E0,        /* after E0: A0..BF (no overlong 3-byte form) */
  UTF8_ED,        /* after ED: 80..9F (no surrogates) */
  UTF8_F0,        /* after F0: 90..BF (no overlong 4-byte form) */
  UTF8_F4,        /* after F4: 80..8F (nothing above U+10FFFF) */
  UTF8_INVALID    /* sticky: the input can never become valid */
} utf8_state;

static inline void utf8_init(utf8_state *s) { *s = UTF8_OK; }
/* Validates the next n bytes. Returns 0 while the input may still be valid,
 * -1 once it cannot be (and on every later call). */
int utf8_feed(utf8_state *s, const void *data, size_t n);
/* Whether the input fed so far ends on a character boundary. */
static inline bool utf8_complete(const utf8_state *s) { return *s == UTF8_OK; }
/* One-shot: whether data[0..n) is complete, valid UTF-8. */
bool utf8_valid(const void *data, size_t n);

#endif
