/* Hexadecimal digits, both ways: the one table and the one decoder. */
#ifndef TD_HEX_H
#define TD_HEX_H

#define HEX_DIGITS "0123456789abcdef"

/* The value of hex digit `c` (either case), or -1. */
static inline int hex_value(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

#endif
