/* Private to stream_msg: the scanner of its fast path (smsg_scan.c).
 *
 * Why it exists: profiled with callgrind, jansson's json_loadb cost about
 * 37,000 instructions per quote of a POST /quotes batch, building a tree the
 * pipeline reads once. The scanner tokenizes each item of the buffer into a
 * fixed table of (key, value span, type) pairs instead, without allocating,
 * and gives up (returns SMSG_SCAN_GIVE_UP) on anything it does not handle, so
 * that smsg_parse.c can run the jansson path on the whole buffer as before.
 *
 * What it accepts is a subset of what jansson accepts, read the same way: a
 * JSON array of objects, or one object, whose values are strings without
 * backslash escapes (valid UTF-8, no control characters), numbers without an
 * exponent, true, false, null, or arrays of such strings. */
#ifndef TD_SMSG_SCAN_H
#define TD_SMSG_SCAN_H

#include <stdbool.h>
#include <stddef.h>

#include "market/stream_msg.h"

/* Keys an item may carry beyond its kind's fields (unknown ones, e.g. a
 * sender's own "seq"); an item with more goes to the jansson path. */
#define SMSG_SCAN_MAX_UNKNOWN 8
#define SMSG_SCAN_MAX_PAIRS (SMSG_MAX_FIELDS + SMSG_SCAN_MAX_UNKNOWN)
/* Longest number literal taken: without an exponent, 40 characters cannot
 * overflow a double (jansson's "real number overflow"). */
#define SMSG_SCAN_NUM_MAX 40
/* jansson reads integers as long long: 18 digits always fit, 19 may not. */
#define SMSG_SCAN_INT_DIGITS_MAX 18

typedef enum {
  SMSG_V_STRING,   /* val: the bytes between the quotes */
  SMSG_V_INT,      /* val: the literal, no '.' (jansson: an integer) */
  SMSG_V_REAL,     /* val: the literal, with a '.' (jansson: a real) */
  SMSG_V_TRUE,
  SMSG_V_FALSE,
  SMSG_V_NULL,
  SMSG_V_ARRAY     /* val: '[' to ']' of `count` strings */
} smsg_vtype;

typedef struct {
  const char *key;
  size_t key_len;
  const char *val;
  size_t val_len;
  size_t count;
  smsg_vtype type;
} smsg_pair;

/* One object of the buffer. */
typedef struct {
  int npairs;
  smsg_pair pairs[SMSG_SCAN_MAX_PAIRS];
} smsg_item;

/* Where the scanner is in the grammar, between two tokens. */
typedef enum {
  SCAN_ROOT,        /* before the root: '[' or '{' */
  SCAN_ITEM_FIRST,  /* after the root '[': an item or ']' */
  SCAN_ITEM,        /* after ',' in the root array: an item */
  SCAN_KEY_FIRST,   /* after an item's '{': a key or '}' */
  SCAN_KEY,         /* after ',' in an item: a key */
  SCAN_COLON,       /* after a key: ':' */
  SCAN_VALUE,       /* after ':': a value */
  SCAN_ELEM_FIRST,  /* after a value's '[': a string or ']' */
  SCAN_ELEM,        /* after ',' in a value's array: a string */
  SCAN_ELEM_NEXT,   /* after a string in a value's array: ',' or ']' */
  SCAN_PAIR_NEXT,   /* after a value: ',' or '}' */
  SCAN_ITEM_NEXT,   /* after an item of the root array: ',' or ']' */
  SCAN_END          /* after the root: whitespace up to the end */
} smsg_scan_state;

typedef struct {
  const char *p, *end;
  smsg_scan_state state;
  bool root_array;
} smsg_scan;

enum { SMSG_SCAN_GIVE_UP = -1, SMSG_SCAN_DONE = 0, SMSG_SCAN_ITEM = 1 };

/* 1 for the bytes a string may hold as they are: 0x20..0x7e except '"' and
 * '\\'. Strings of other bytes (escapes, UTF-8) are the scanner's business,
 * DEL jansson's (see smsg_scan.c). */
extern const unsigned char smsg__plain[256];

void smsg__scan_init(smsg_scan *s, const char *buf, size_t len);
/* Between items: the '{' that opens the next one, after the whitespace, '['
 * or ',' before it, or NULL when the next token is anything else. A caller
 * that reads the item itself reports its end to smsg__scan_item_done; one
 * that does not calls smsg__scan_item as usual, which then reads it. */
const char *smsg__scan_item_start(smsg_scan *s);
/* The item at smsg__scan_item_start's '{' ended just before `end`. */
void smsg__scan_item_done(smsg_scan *s, const char *end);
/* The next item into *it: SMSG_SCAN_ITEM, SMSG_SCAN_DONE at the end of a
 * well-formed buffer, or SMSG_SCAN_GIVE_UP (and on every later call). */
int smsg__scan_item(smsg_scan *s, smsg_item *it);

#endif
