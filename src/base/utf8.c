/* Incremental UTF-8 validation: a small explicit state machine (utf8.h) in
 * which each state names the range the next byte must fall in. The ranges
 * follow RFC 3629's table of well-formed byte sequences. */
#include "base/utf8.h"

#include <string.h>

#define UTF8_ASCII_MASK 0x8080808080808080ull

/* The state after a lead byte at a character boundary. */
static utf8_state utf8_lead(uint8_t c) {
  if (c < 0x80) return UTF8_OK;
  if (c < 0xC2) return UTF8_INVALID; /* stray continuation, or overlong C0/C1 */
  if (c < 0xE0) return UTF8_TAIL1;
  if (c == 0xE0) return UTF8_E0;
  if (c == 0xED) return UTF8_ED;
  if (c < 0xF0) return UTF8_TAIL2;
  if (c == 0xF0) return UTF8_F0;
  if (c < 0xF4) return UTF8_TAIL3;
  if (c == 0xF4) return UTF8_F4;
  return UTF8_INVALID; /* F5..FF would encode above U+10FFFF */
}

static utf8_state utf8_step(utf8_state s, uint8_t c) {
  bool tail = c >= 0x80 && c <= 0xBF;
  switch (s) {
  case UTF8_OK: return utf8_lead(c);
  case UTF8_TAIL1: return tail ? UTF8_OK : UTF8_INVALID;
  case UTF8_TAIL2: return tail ? UTF8_TAIL1 : UTF8_INVALID;
  case UTF8_TAIL3: return tail ? UTF8_TAIL2 : UTF8_INVALID;
  case UTF8_E0: return c >= 0xA0 && c <= 0xBF ? UTF8_TAIL1 : UTF8_INVALID;
  case UTF8_ED: return c >= 0x80 && c <= 0x9F ? UTF8_TAIL1 : UTF8_INVALID;
  case UTF8_F0: return c >= 0x90 && c <= 0xBF ? UTF8_TAIL2 : UTF8_INVALID;
  case UTF8_F4: return c >= 0x80 && c <= 0x8F ? UTF8_TAIL2 : UTF8_INVALID;
  case UTF8_INVALID: break;
  }
  return UTF8_INVALID;
}

int utf8_feed(utf8_state *s, const void *data, size_t n) {
  const uint8_t *p = data, *end = p + n;
  utf8_state st = *s;
  while (p < end && st != UTF8_INVALID) {
    if (st == UTF8_OK) {
      /* Market data and JSON are almost all ASCII: skip it 8 bytes a step. */
      while (end - p >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        if (w & UTF8_ASCII_MASK) break;
        p += 8;
      }
      if (p == end) break;
    }
    st = utf8_step(st, *p++);
  }
  *s = st;
  return st == UTF8_INVALID ? -1 : 0;
}

bool utf8_valid(const void *data, size_t n) {
  utf8_state s = UTF8_OK;
  return utf8_feed(&s, data, n) == 0 && utf8_complete(&s);
}
