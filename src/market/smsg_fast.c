/* stream_msg's fast tiers: plain market data without a jansson tree.
 *
 * Why this exists: callgrind put json_loadb at about 37,000 instructions per
 * quote of a batch and the validation of its tree at 6,500, against 2,400
 * for everything the pipeline does afterwards. Items that are flat objects
 * of plain values (every quote, trade, bar and status Alpaca sends) are read
 * by the scanner of smsg_scan.c instead, checked against the same
 * field tables with the same rules, and their payload encoded at once, up to
 * the seq and epoch smsg_encode appends.
 *
 * All items are checked before the first callback, so the fast path can give
 * up anywhere at no cost but time: on anything it does not handle (an escape,
 * a nested object, an exponent, a duplicate key, a control message, an
 * invalid item) the jansson path runs on the whole buffer as it always did,
 * and words every error, counts every skip and makes every control callback.
 * test/fuzz/fuzz_stream_msg.c runs both paths on every input and requires
 * the same callbacks and byte-identical payloads. */
#include "smsg_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/inline.h"
#include "smsg_scan.h"

/* One checked item: its encoded body and where its symbols are. */
typedef struct {
  size_t body_off, body_len;
  const char *syms;   /* "S", or news' "symbols" array ('[' to ']') */
  size_t syms_len;
  size_t nsyms;       /* 1, or the number of news symbols */
  smsg_kind kind;
  uint32_t num_off[SMSG_MAX_FIELDS];   /* see smsg_fast_msg.num_off */
  double num[SMSG_MAX_FIELDS];         /* see smsg_msg.num */
  uint32_t num_set;                    /* with SMSG_OPT_NUMBERS only */
  int64_t t_ns;                        /* see smsg_msg.t_ns */
  bool has_t;
} fast_item;

/* Bodies and items of a buffer of up to a few dozen quotes (a feed's usual
 * message) fit on the stack; larger buffers allocate once or twice per
 * buffer, never per item. */
#define FAST_STACK_BYTES 8192
#define FAST_STACK_ITEMS 48
/* Items of a large buffer are counted at one per this many bytes when their
 * table is first sized: a quote is about 130 bytes; smaller ones regrow it. */
#define FAST_ITEM_BYTES_MIN 100
/* Room reserved for one compact item's body (see fast_compact_item); a
 * larger item takes the scanner's path, which has no such limit. */
#define FAST_COMPACT_ROOM 1024
/* Every field's value costs at most this much more encoded than in the
 * input: smsg__put_double's longest output ("-1.2345678901234567e-308"). */
#define FAST_VALUE_SLACK 40

typedef struct {
  const char *src;    /* the buffer parsed */
  bool numbers;       /* SMSG_OPT_NUMBERS: fast_item.num is kept */
  char *body;
  size_t len, cap;
  fast_item *items;
  size_t n, items_cap;
  char body_stack[FAST_STACK_BYTES];
  fast_item items_stack[FAST_STACK_ITEMS];
} fast_out;

/* Where the value of field i (a number) is in the buffer, for
 * smsg_msg_number; other fields are not read back. */
static void fast_note_value(const fast_out *out, fast_item *fi, int i, const field_spec *f, const char *v) {
  if (f->type == F_PRICE || f->type == F_UINT) fi->num_off[i] = (uint32_t)(v - out->src);
}

/* Checks a time (smsg_time_valid's rules) and keeps "t" converted for
 * smsg_msg_time: every reader of the message's time (the candles, per
 * trade) gets an integer, with no second pass over the text. */
static TD_HOT_INLINE bool fast_time(fast_item *fi, const field_spec *f, const char *s, size_t n) {
  int64_t sec;
  uint32_t nsec;
  if (smsg__time_parse(s, n, &sec, &nsec) != 0) return false;
  if (f->name[0] == 't' && f->name[1] == 0) {
    fi->t_ns = smsg__time_ns(sec, nsec);
    fi->has_t = true;
  }
  return true;
}

/* Test hooks, for the tests that #include this file: fast_disabled runs the
 * jansson path alone; the counters say which path buffers took. */
static bool fast_disabled;
static uint64_t fast_buffers, fast_abandoned, fast_scanned_items;

static void fast_out_init(fast_out *o) {
  o->body = o->body_stack;
  o->len = 0;
  o->cap = FAST_STACK_BYTES;
  o->items = o->items_stack;
  o->n = 0;
  o->items_cap = FAST_STACK_ITEMS;
}

/* The heap tables of the last large buffer, kept for the next one.
 * Allocating and freeing ~200 KiB per POSTed batch let malloc hand the top
 * of the heap back to the kernel (brk) and fault it in again for the next
 * batch: ~150 brk calls and ~15,000 page faults a second under wrk. Tables
 * up to FAST_KEEP_BYTES are kept; a parse nested in a callback finds none
 * and allocates its own. */
#define FAST_KEEP_BYTES (2 * 1024 * 1024)
static struct {
  char *body;
  size_t cap;
  fast_item *items;
  size_t items_cap;
} fast_kept;

/* Heap tables for a buffer of len bytes: the kept ones when large enough. */
static void fast_out_reserve(fast_out *o, size_t len) {
  size_t cap = len + FAST_COMPACT_ROOM;
  size_t nitems = len / FAST_ITEM_BYTES_MIN + FAST_STACK_ITEMS;
  if (fast_kept.body && fast_kept.cap >= cap) {
    o->body = fast_kept.body;
    o->cap = fast_kept.cap;
    fast_kept.body = NULL;
  } else {
    char *b = malloc(cap);
    if (b) {
      o->body = b;
      o->cap = cap;
    }
  }
  if (fast_kept.items && fast_kept.items_cap >= nitems) {
    o->items = fast_kept.items;
    o->items_cap = fast_kept.items_cap;
    fast_kept.items = NULL;
  } else {
    fast_item *it = malloc(nitems * sizeof(*it));
    if (it) {
      o->items = it;
      o->items_cap = nitems;
    }
  }
}

static void fast_out_free(fast_out *o) {
  if (o->body != o->body_stack) {
    if (o->cap <= FAST_KEEP_BYTES && (!fast_kept.body || fast_kept.cap < o->cap)) {
      free(fast_kept.body);
      fast_kept.body = o->body;
      fast_kept.cap = o->cap;
    } else {
      free(o->body);
    }
  }
  if (o->items != o->items_stack) {
    if (o->items_cap * sizeof(fast_item) <= FAST_KEEP_BYTES &&
        (!fast_kept.items || fast_kept.items_cap < o->items_cap)) {
      free(fast_kept.items);
      fast_kept.items = o->items;
      fast_kept.items_cap = o->items_cap;
    } else {
      free(o->items);
    }
  }
}

/* Room for `more` elements of `size` bytes in an array that starts on the
 * stack and moves to the heap when it outgrows it. */
static int fast_grow(void **arr, void *stack, size_t *cap, size_t used, size_t more, size_t size) {
  if (*cap - used >= more) return 0;
  size_t n = *cap * 2 > used + more ? *cap * 2 : used + more;
  void *p = *arr == stack ? malloc(n * size) : realloc(*arr, n * size);
  if (!p) return -1;
  if (*arr == stack) memcpy(p, stack, used * size);
  *arr = p;
  *cap = n;
  return 0;
}

/* The field of `ks` named k[0..n), or -1. Senders mostly keep Alpaca's
 * order, so the search starts after the last field found. */
static int fast_field(const kind_spec *ks, const char *k, size_t n, int hint) {
  for (int j = 0; j < ks->nfields; j++) {
    int i = hint + j < ks->nfields ? hint + j : hint + j - ks->nfields;
    const char *name = ks->fields[i].name;
    if (name[0] != k[0]) continue;   /* an empty key reads its closing quote */
    size_t m = 1;
    while (m < n && name[m] == k[m]) m++;   /* keys hold no NUL: stops at name's */
    if (m == n && name[m] == 0) return i;
  }
  return -1;
}

/* The next string of a value array from p; the scanner made sure the array
 * holds only strings without escapes. */
static const char *fast_elem(const char *p, const char **s, size_t *n) {
  while (*p != '"') p++;
  *s = ++p;
  while (*p != '"') p++;
  *n = (size_t)(p - *s);
  return p + 1;
}

/* Copies n bytes: short runs (keys, codes, prices, symbols) without a call
 * to memcpy, by two overlapping fixed-size moves. */
static inline char *put_bytes(char *o, const char *s, size_t n) {
  if (n > 0 && n < 4) {
    o[0] = s[0];
    o[n / 2] = s[n / 2];
    o[n - 1] = s[n - 1];
  } else if (n >= 8 && n <= 16) {
    uint64_t a, b;
    memcpy(&a, s, 8);
    memcpy(&b, s + n - 8, 8);
    memcpy(o, &a, 8);
    memcpy(o + n - 8, &b, 8);
  } else if (n >= 4 && n < 8) {
    uint32_t a, b;
    memcpy(&a, s, 4);
    memcpy(&b, s + n - 4, 4);
    memcpy(o, &a, 4);
    memcpy(o + n - 4, &b, 4);
  } else if (n) {
    memcpy(o, s, n);
  }
  return o + n;
}

/* jansson reads "-0" and "-0.00" as zero, which passes ">= 0". */
static bool fast_nonneg(const smsg_pair *v) {
  if (v->val[0] != '-') return true;
  for (size_t i = 1; i < v->val_len; i++)
    if (v->val[i] != '0' && v->val[i] != '.') return false;
  return true;
}

static bool fast_check_array(const smsg_pair *v, const field_spec *f) {
  if (v->count > (f->type == F_CODES ? SMSG_MAX_CONDITIONS : SMSG_MAX_NEWS_SYMBOLS)) return false;
  const char *p = v->val, *s;
  size_t n;
  for (size_t i = 0; i < v->count; i++) {
    p = fast_elem(p, &s, &n);
    if (f->type == F_CODES ? n > SMSG_CODE_MAX : !smsg_symbol_valid(s, n)) return false;
  }
  return true;
}

/* check_field's rules on a scanned value. */
static bool fast_check(const smsg_pair *v, const field_spec *f) {
  switch (f->type) {
  case F_TYPE:
    return true;
  case F_SYMBOL:
    return v->type == SMSG_V_STRING && smsg_symbol_valid(v->val, v->val_len);
  case F_CODE:
    return v->type == SMSG_V_STRING && v->val_len <= SMSG_CODE_MAX;
  case F_TEXT:
    return v->type == SMSG_V_STRING;
  case F_PRICE:
    return (v->type == SMSG_V_INT || v->type == SMSG_V_REAL) && fast_nonneg(v);
  case F_UINT:
    return v->type == SMSG_V_INT && fast_nonneg(v);
  case F_TIME:   /* the text is checked by fast_time */
    return v->type == SMSG_V_STRING;
  case F_CODES:
  case F_SYMBOLS:
    return v->type == SMSG_V_ARRAY && fast_check_array(v, f);
  }
  return false;
}

/* A real literal (checked >= 0) as smsg__put_double prints the double jansson's
 * strtod reads from it. With at most 9 decimals and 15 digits, that is the
 * literal without trailing zeros: smsg__put_double tries k = 0, 1, ... decimals
 * and stops at the literal's own k, because two distinct decimals of at most
 * 15 digits are distinct doubles (DBL_DIG) and round(v * 10^k) is exact
 * below 10^15. Anything else is converted. */
static char *fast_put_real(char *o, const char *s, size_t n) {
  if (s[0] == '-') {   /* -0.0 */
    *o++ = '0';
    return o;
  }
  size_t ip = 0;
  while (s[ip] != '.') ip++;
  size_t fl = n - ip - 1;
  while (fl && s[ip + fl] == '0') fl--;
  if (fl <= 9 && ip <= 15 && ip + fl <= 15) {
    return put_bytes(o, s, fl ? ip + 1 + fl : ip);
  }
  return smsg__put_double(o, smsg__number_strtod(s, n));
}

/* put_value's output for a checked value. */
static char *fast_put_value(char *o, const smsg_pair *v) {
  switch (v->type) {
  case SMSG_V_STRING:   /* no escapes, no control characters: put_str copies */
    *o++ = '"';
    o = put_bytes(o, v->val, v->val_len);
    *o++ = '"';
    return o;
  case SMSG_V_INT:
    if (v->val[0] == '-') {   /* -0 */
      *o++ = '0';
      return o;
    }
    return put_bytes(o, v->val, v->val_len);
  case SMSG_V_REAL:
    return fast_put_real(o, v->val, v->val_len);
  case SMSG_V_ARRAY: {   /* compact: drop whitespace between the strings */
    bool in = false;
    for (size_t i = 0; i < v->val_len; i++) {
      char c = v->val[i];
      if (c == '"') in = !in;
      if (in || (c != ' ' && c != '\t' && c != '\n' && c != '\r')) *o++ = c;
    }
    return o;
  }
  default:
    return o;
  }
}

/* Maps the item's keys to its kind's fields. Gives up on duplicates (batch
 * mode rejects them, stream mode keeps the last: jansson decides). */
static int fast_map(const smsg_item *it, const kind_spec *ks, const smsg_pair **slot,
                    size_t *bound) {
  const smsg_pair *unknown[SMSG_SCAN_MAX_UNKNOWN];
  int nu = 0, hint = 0;
  for (int i = 0; i < it->npairs; i++) {
    const smsg_pair *v = &it->pairs[i];
    int f = fast_field(ks, v->key, v->key_len, hint);
    if (f >= 0) {
      if (slot[f]) return -1;
      slot[f] = v;
      hint = f + 1;
      *bound += v->key_len + v->val_len + FAST_VALUE_SLACK;
      continue;
    }
    for (int u = 0; u < nu; u++)
      if (unknown[u]->key_len == v->key_len && !memcmp(unknown[u]->key, v->key, v->key_len))
        return -1;
    if (nu == SMSG_SCAN_MAX_UNKNOWN) return -1;
    unknown[nu++] = v;
  }
  return 0;
}

/* item_check and encode_into for one scanned item: appends its body and
 * record to `out`, or returns -1 when the jansson path must decide. */
static int fast_item_add(fast_out *out, const smsg_item *it) {
  const smsg_pair *t = NULL;
  for (int i = 0; i < it->npairs && !t; i++)
    if (it->pairs[i].key_len == 1 && it->pairs[i].key[0] == 'T') t = &it->pairs[i];
  if (!t || t->type != SMSG_V_STRING || t->val_len != 1) return -1;
  int k = smsg__kind_of_char(t->val[0]);
  if (k < 0) return -1;
  const kind_spec *ks = &smsg__kinds[k];
  const smsg_pair *slot[SMSG_MAX_FIELDS] = {0};
  size_t bound = 16;
  if (fast_map(it, ks, slot, &bound) < 0) return -1;
  if (out->cap - out->len < bound &&
      fast_grow((void **)&out->body, out->body_stack, &out->cap, out->len, bound, 1) < 0)
    return -1;
  if (out->n == out->items_cap &&
      fast_grow((void **)&out->items, out->items_stack, &out->items_cap, out->n, 1,
                sizeof(fast_item)) < 0)
    return -1;
  fast_item *fi = &out->items[out->n];
  fi->kind = (smsg_kind)k;
  fi->nsyms = 1;
  memset(fi->num_off, 0, sizeof(fi->num_off));
  fi->num_set = 0;
  fi->has_t = false;
  char *start = out->body + out->len, *o = start;
  *o++ = '{';
  for (int i = 0; i < ks->nfields; i++) {
    const field_spec *f = &ks->fields[i];
    const smsg_pair *v = slot[i];
    if (v && v->type == SMSG_V_NULL && !f->required) v = NULL;
    if (!v) {
      if (f->required) return -1;
      continue;
    }
    if (!fast_check(v, f) || (f->type == F_TIME && !fast_time(fi, f, v->val, v->val_len))) return -1;
    fast_note_value(out, fi, i, f, v->val);
    /* SMSG_OPT_NUMBERS: this tier is rare (keys out of order, negative
     * numbers), so its values are read from the checked literal */
    if (out->numbers && smsg__number_fields[k] >> i & 1) {
      fi->num[i] = smsg__literal_value(v->val);
      fi->num_set |= 1u << i;
    }
    /* put_key(o, f->name, i == 0) from the sender's key, which equals the
     * name, without strlen. */
    if (i) *o++ = ',';
    *o++ = '"';
    o = put_bytes(o, v->key, v->key_len);
    *o++ = '"';
    *o++ = ':';
    if (f->type == F_TYPE) {   /* put_str(o, ks->type, 1): a letter */
      o[0] = '"';
      o[1] = ks->type[0];
      o[2] = '"';
      o += 3;
    } else {
      o = fast_put_value(o, v);
    }
    if (f->type == F_SYMBOL || f->type == F_SYMBOLS) {
      fi->syms = v->val;
      fi->syms_len = v->val_len;
      if (f->type == F_SYMBOLS) fi->nsyms = v->count;
    }
  }
  fi->body_off = out->len;
  fi->body_len = (size_t)(o - start);
  out->len += fi->body_len;
  out->n++;
  return 0;
}

/* ---- the compact one-pass form ---------------------------------------------
 * Feeds and POSTed batches send items compact and in Alpaca's key order,
 * with plain ASCII strings: {"T":"q","S":"AAPL","bx":"V","bp":189.5,...}.
 * Such an item is validated and encoded here in one pass over its bytes,
 * without the scanner's pair table and the search of every key in the
 * kind's fields (callgrind: 3,400 -> ~1,000 instructions per quote). Keys
 * must come in the table's order, optional fields may be left out; anything
 * else (whitespace, another order, an unknown or repeated key, null, a
 * negative number, an exponent, a non-ASCII or escaped string, news, an
 * invalid value) makes it return NULL having written nothing, and the
 * scanner reads the item as before. What it accepts, fast_item_add accepts
 * with the same output, so the differential fuzzer covers it too. */


/* Test hook: items that took the compact form. */
static uint64_t fast_compact_items;

/* ,"name": of every field but news' as one masked 8-byte word: every such
 * name has at most 2 bytes, so the key is one load and one comparison. */
typedef struct {
  uint64_t word, mask;
  size_t len;
} compact_lit;

static compact_lit compact_lits[SMSG_KIND_COUNT][SMSG_MAX_FIELDS];
static bool compact_lits_ready;

static void compact_lits_init(void) {
  for (int k = 0; k < SMSG_KIND_COUNT; k++) {
    for (int i = 0; i < smsg__kinds[k].nfields; i++) {
      char lit[8] = {0};
      size_t n = strlen(smsg__kinds[k].fields[i].name);
      compact_lit *c = &compact_lits[k][i];
      if (n + 4 > sizeof(lit)) continue;   /* len 0: never matches (news) */
      lit[0] = ',';
      lit[1] = '"';
      memcpy(lit + 2, smsg__kinds[k].fields[i].name, n);
      lit[n + 2] = '"';
      lit[n + 3] = ':';
      unsigned char m[8] = {0};
      memset(m, 0xff, n + 4);
      memcpy(&c->word, lit, 8);
      memcpy(&c->mask, m, 8);
      c->len = n + 4;
    }
  }
  compact_lits_ready = true;
}

/* The byte after ,"name": when the key at p is the field's, else NULL. */
static const char *compact_key(const compact_lit *c, const char *p, const char *e) {
  if (!c->len || e - p <= (ptrdiff_t)c->len) return NULL;
  uint64_t w;
  if (e - p >= 8) {
    memcpy(&w, p, 8);
  } else {
    w = 0;
    memcpy(&w, p, c->len);
  }
  return (w & c->mask) == c->word ? p + c->len : NULL;
}

/* '"', plain bytes, '"' from p: the byte after the closing quote, or NULL. */
static TD_HOT_INLINE const char *compact_string(const char *p, const char *e, size_t max) {
  if (p == e || *p != '"') return NULL;
  const char *s = ++p;
  while (p < e && smsg__plain[(unsigned char)*p]) p++;
  if (p == e || *p != '"' || (size_t)(p - s) > max) return NULL;
  return p + 1;
}

/* The compact form is compiled twice (fast_compact_item), its helpers
 * forced inline (TD_HOT_INLINE): as it was, and keeping numbers' values
 * (SMSG_OPT_NUMBERS), so that a parse without the option runs no
 * instruction of the second. */
/* The digits from p, appended to *m when keep (the value's, gathered while
 * they are checked): the first byte that is not a digit. */
static TD_HOT_INLINE const char *compact_digits(const char *p, const char *e, bool keep, uint64_t *m) {
  if (!keep) {
    while (p < e && *p >= '0' && *p <= '9') p++;
    return p;
  }
  uint64_t v = *m;
  for (; p < e && *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
  *m = v;
  return p;
}

/* A number as scan_number reads it, but never negative: the end, or NULL.
 * *real says whether it has a fraction. With val, its value goes there
 * (smsg__literal_value's, from the digits gathered in this one pass: m /
 * 10^k, Clinger's fast path, up to 15 digits; strtod past them). */
static TD_HOT_INLINE const char *compact_number(const char *p, const char *e, bool *real, double *val) {
  const char *s = p, *f = p;
  uint64_t m = 0;
  if (p < e && *p == '0') {
    p++;
  } else if (p < e && *p >= '1' && *p <= '9') {
    p = compact_digits(p, e, val != NULL, &m);
  } else {
    return NULL;
  }
  size_t int_digits = (size_t)(p - s);
  *real = p < e && *p == '.';
  if (*real) {
    f = ++p;
    p = compact_digits(p, e, val != NULL, &m);
    if (p == f) return NULL;
  } else if (int_digits > SMSG_SCAN_INT_DIGITS_MAX) {
    return NULL;
  }
  if ((size_t)(p - s) > SMSG_SCAN_NUM_MAX || (p < e && (*p == 'e' || *p == 'E'))) return NULL;
  if (val) {   /* smsg__literal_value's rule, for a literal without a sign */
    size_t n = (size_t)(p - s), digits = n - *real;
    /* m < 10^15 here: the signed conversion is exact, and one instruction
     * where the unsigned one is a dozen */
    *val = digits > SMSG_NUMBER_FAST_DIGITS ? smsg__number_strtod(s, n)
                                            : (double)(int64_t)m / smsg__pow10[*real ? p - f : 0];
  }
  return p;
}

/* ["code",...] without whitespace: the byte after ']', or NULL. */
static const char *compact_codes(const char *p, const char *e) {
  if (p == e || *p++ != '[') return NULL;
  if (p < e && *p == ']') return p + 1;
  for (size_t n = 1; n <= SMSG_MAX_CONDITIONS; n++) {
    if (!(p = compact_string(p, e, SMSG_CODE_MAX)) || p == e) return NULL;
    if (*p == ']') return p + 1;
    if (*p++ != ',') return NULL;
  }
  return NULL;
}

/* A quoted symbol: what compact_string then smsg_symbol_valid accept, as
 * symbol bytes are plain. */
static TD_HOT_INLINE const char *compact_symbol(const char *p, const char *e) {
  if (p == e || *p != '"') return NULL;
  const char *s = ++p;
  while (p < e && smsg__symbol_byte[(unsigned char)*p]) p++;
  size_t n = (size_t)(p - s);
  return p < e && *p == '"' && n >= 1 && n <= TD_SYMBOL_MAX ? p + 1 : NULL;
}

/* A quoted RFC 3339 time. The bytes smsg_time_valid accepts are all plain,
 * so it alone decides once the closing quote is found within its limit. */
static TD_HOT_INLINE const char *compact_time(fast_item *fi, const field_spec *f, const char *p, const char *e) {
  if (p == e || *p != '"') return NULL;
  size_t room = (size_t)(e - p - 1);
  const char *q = memchr(p + 1, '"', room < SMSG_TIME_MAX + 1 ? room : SMSG_TIME_MAX + 1);
  return q && fast_time(fi, f, p + 1, (size_t)(q - p - 1)) ? q + 1 : NULL;
}

/* A number of field i, its value kept in fi->num[i] when bit i of keep is
 * set (and the bit set in *kept): each case a compact_number of its own, so
 * that neither tests whether to keep per digit. */
static TD_HOT_INLINE const char *compact_kept_number(fast_item *fi, int i, const char *p, const char *e, bool *real,
                                                      uint32_t keep, uint32_t *kept) {
  if (!(keep >> i & 1)) return compact_number(p, e, real, NULL);
  *kept |= 1u << i;   /* the item is dropped if the number is not valid */
  return compact_number(p, e, real, &fi->num[i]);
}

/* One value of field i (f) at p, checked: its end, or NULL. The values of
 * the numbers whose bits keep has are kept (compact_kept_number). */
static TD_HOT_INLINE const char *compact_value(fast_item *fi, const field_spec *f, int i, const char *p, const char *e,
                                                bool *real, uint32_t keep, uint32_t *kept) {
  const char *q;
  *real = false;
  switch (f->type) {
  case F_SYMBOL:
    return compact_symbol(p, e);
  case F_CODE:
    return compact_string(p, e, SMSG_CODE_MAX);
  case F_TEXT:
    return compact_string(p, e, FAST_COMPACT_ROOM);
  case F_TIME:
    return compact_time(fi, f, p, e);
  case F_PRICE:
    return compact_kept_number(fi, i, p, e, real, keep, kept);
  case F_UINT:
    q = compact_kept_number(fi, i, p, e, real, keep, kept);
    return *real ? NULL : q;
  case F_CODES:
    return compact_codes(p, e);
  default:   /* F_TYPE is the first key only; F_SYMBOLS is news' */
    return NULL;
  }
}

/* Checks and encodes the item at p ('{') into out, or returns NULL having
 * written nothing. Returns the byte after the item's '}'. With numbers,
 * keeps the values of its smsg__number_fields in fi->num. */
static TD_HOT_INLINE const char *compact_item(fast_out *out, const char *p, const char *e, bool numbers) {
  if (e - p < 9 || memcmp(p, "{\"T\":\"", 6) != 0 || p[7] != '"') return NULL;
  int k = smsg__kind_of_char(p[6]);
  if (k < 0 || k == SMSG_NEWS) return NULL;
  const kind_spec *ks = &smsg__kinds[k];
  if (!compact_lits_ready) compact_lits_init();
  if ((out->cap - out->len < FAST_COMPACT_ROOM &&
       fast_grow((void **)&out->body, out->body_stack, &out->cap, out->len, FAST_COMPACT_ROOM, 1) < 0) ||
      (out->n == out->items_cap &&
       fast_grow((void **)&out->items, out->items_stack, &out->items_cap, out->n, 1, sizeof(fast_item)) < 0))
    return NULL;
  fast_item *fi = &out->items[out->n];
  memset(fi->num_off, 0, sizeof(fi->num_off));
  fi->has_t = false;
  char *start = out->body + out->len, *o = start, *lim = start + FAST_COMPACT_ROOM;
  o = put_bytes(o, p, 8);   /* {"T":"q" */
  p += 8;
  int i = 1;                /* every kind's table starts with "T" */
  const compact_lit *lits = compact_lits[k];
  uint32_t keep = numbers ? smsg__number_fields[k] : 0, kept = 0;
  while (p < e && *p == ',') {
    const char *v = NULL;
    for (; i < ks->nfields && !(v = compact_key(&lits[i], p, e)); i++)
      if (ks->fields[i].required) return NULL;
    if (!v) return NULL;
    const field_spec *f = &ks->fields[i++];
    bool real;
    const char *end = compact_value(fi, f, i - 1, v, e, &real, keep, &kept);
    if (!end || (size_t)(lim - o) < (size_t)(end - p) + FAST_VALUE_SLACK) return NULL;
    if (f->type == F_SYMBOL) {
      fi->syms = v + 1;
      fi->syms_len = (size_t)(end - v - 2);
    }
    fast_note_value(out, fi, i - 1, f, v);
    if (real) {
      o = put_bytes(o, p, (size_t)(v - p));   /* ,"key": */
      o = fast_put_real(o, v, (size_t)(end - v));
    } else {
      o = put_bytes(o, p, (size_t)(end - p));
    }
    p = end;
  }
  if (p == e || *p != '}') return NULL;
  for (; i < ks->nfields; i++)
    if (ks->fields[i].required) return NULL;
  if (numbers) fi->num_set = kept;
  fi->kind = (smsg_kind)k;
  fi->nsyms = 1;
  fi->body_off = out->len;
  fi->body_len = (size_t)(o - start);
  out->len += fi->body_len;
  out->n++;
  fast_compact_items++;
  return p + 1;
}

static const char *fast_compact_item(fast_out *out, const char *p, const char *e) {
  return compact_item(out, p, e, false);
}

static const char *fast_compact_item_numbers(fast_out *out, const char *p, const char *e) {
  return compact_item(out, p, e, true);
}

static void fast_set_symbol(smsg_msg *m, struct smsg_fast_msg *fm, const char *s, size_t n) {
  put_bytes(fm->symbol, s, n);   /* checked: 1..TD_SYMBOL_MAX bytes */
  fm->symbol[n] = 0;
  m->symbol_len = n;
}

/* deliver() for every checked item, in order. */
static size_t fast_deliver(const fast_out *out, smsg_msg_cb on_msg, void *ud) {
  struct smsg_fast_msg fm;
  smsg_msg m;
  memset(&m, 0, sizeof(m));
  m.fast = &fm;
  m.symbol = fm.symbol;
  size_t delivered = 0;
  for (size_t i = 0; i < out->n; i++) {
    const fast_item *fi = &out->items[i];
    m.kind = fi->kind;
    m.channel = smsg__kinds[fi->kind].channel;
    m.index = i;
    fm.body = out->body + fi->body_off;
    fm.body_len = fi->body_len;
    fm.src = out->src;
    fm.num_off = fi->num_off;
    if (out->numbers) {
      m.num = fi->num;
      m.num_set = fi->num_set;
    }
    m.t_ns = fi->t_ns;
    m.has_t = fi->has_t;
    if (fi->kind != SMSG_NEWS) {
      fast_set_symbol(&m, &fm, fi->syms, fi->syms_len);
      on_msg(ud, &m);
      delivered++;
      continue;
    }
    const char *p = fi->syms, *s;
    size_t n;
    for (size_t j = 0; j < fi->nsyms; j++) {
      p = fast_elem(p, &s, &n);
      fast_set_symbol(&m, &fm, s, n);
      on_msg(ud, &m);
      delivered++;
    }
  }
  return delivered;
}

/* Checks and encodes every item, then delivers them all. Returns the number
 * of items, or -1 having made no callback: the jansson path's turn. */
int smsg__fast_parse(const char *buf, size_t len, unsigned opts, smsg_msg_cb on_msg, void *ud, size_t *delivered) {
  if (fast_disabled) return -1;
  if (len > UINT32_MAX) return -1;   /* value offsets are 32 bits */
  fast_out out;
  fast_out_init(&out);
  out.src = buf;
  out.numbers = opts & SMSG_OPT_NUMBERS;
  /* Bodies are about as long as their items: a large buffer gets its room
   * at once rather than by doubling (and copying) from the stack's. */
  if (len > FAST_STACK_BYTES) fast_out_reserve(&out, len);
  smsg_scan sc;
  smsg_item it;
  smsg__scan_init(&sc, buf, len);
  int r;
  for (;;) {
    const char *item = smsg__scan_item_start(&sc), *end;
    if (item && (end = out.numbers ? fast_compact_item_numbers(&out, item, sc.end)
                                   : fast_compact_item(&out, item, sc.end))) {
      smsg__scan_item_done(&sc, end);
      continue;
    }
    if ((r = smsg__scan_item(&sc, &it)) != SMSG_SCAN_ITEM) break;
    if (fast_item_add(&out, &it) < 0) {
      r = SMSG_SCAN_GIVE_UP;
      break;
    }
    fast_scanned_items++;
  }
  if (r != SMSG_SCAN_DONE || out.n > INT_MAX) {
    fast_out_free(&out);
    fast_abandoned++;
    return -1;
  }
  fast_buffers++;
  *delivered = fast_deliver(&out, on_msg, ud);
  int n = (int)out.n;
  fast_out_free(&out);
  return n;
}

/* Which tier read the items, for /status (quotes.parse_tiers). */
void smsg_get_tier_stats(smsg_tier_stats *out) {
  *out = (smsg_tier_stats){.compact_items = fast_compact_items,
                           .scanned_items = fast_scanned_items,
                           .jansson_items = smsg__jansson_items,
                           .fast_abandoned = fast_abandoned};
}
