/* The scanner of stream_msg's fast path (see smsg_scan.h for why
 * it exists). A state machine over tokens: one state per position in the
 * grammar, each token read by a short loop, no recursion (the depth is fixed:
 * root array, item, value array). Whatever it does not recognise makes it
 * give up rather than guess; smsg_parse.c then asks jansson, which words the
 * error. */
#include "smsg_scan.h"

#include <string.h>

#include "base/inline.h"
#include "base/utf8.h"

static bool is_ws(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/* The string scan runs for every key and string value: inlined into the
 * state machine (TD_HOT_INLINE), with the rare cases (non-ASCII, giving up)
 * kept out of it (TD_COLD). */

/* 1 for the bytes a string may hold as they are: 0x20..0x7e except '"'
 * and '\\'. DEL (0x7f) is valid JSON, but the encoder writes it as \u007f
 * (json_quote): left to jansson's tier, so that both tiers give the same
 * payload (the differential fuzzer found it). A table lookup per byte beats
 * word-at-a-time tricks here: most strings (keys, codes, symbols) are one
 * to four bytes long. */
#define plain smsg__plain
#define P0 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
#define P1 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
const unsigned char smsg__plain[256] = {
  P0, P0,                                              /* 0x00-0x1f: control */
  1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,      /* 0x22 '"' */
  P1, P1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,      /* 0x5c '\\' */
  P1,
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,      /* 0x7f DEL */
  P0, P0, P0, P0, P0, P0, P0, P0,                      /* 0x80-0xff: UTF-8 */
};

/* The first byte from p that is not plain string content, or e. */
static TD_HOT_INLINE const char *skip_plain(const char *p, const char *e) {
  for (; e - p >= 4; p += 4) {
    if (!plain[(unsigned char)p[0]]) return p;
    if (!plain[(unsigned char)p[1]]) return p + 1;
    if (!plain[(unsigned char)p[2]]) return p + 2;
    if (!plain[(unsigned char)p[3]]) return p + 3;
  }
  while (p < e && plain[(unsigned char)*p]) p++;
  return p;
}

/* scan_string past its first byte that is not plain: non-ASCII bytes are
 * taken when the whole string is valid UTF-8; an escape or a control
 * character is left to jansson. */
static TD_COLD const char *scan_string_rest(const char *start, const char *p, const char *e, size_t *n) {
  for (;;) {
    if (p == e) return NULL;
    unsigned char c = (unsigned char)*p;
    if (c == '"') break;
    if (c < 0x80) return NULL;
    p = skip_plain(p + 1, e);
  }
  if (!utf8_valid(start, (size_t)(p - start))) return NULL;
  *n = (size_t)(p - start);
  return p + 1;
}

/* A string after its opening quote, up to the closing one. No escapes, no
 * control characters (jansson rejects those raw); bytes from 0x80 must form
 * valid UTF-8, which jansson checks too. Returns the byte after the closing
 * quote, or NULL. */
static TD_HOT_INLINE const char *scan_string(const char *p, const char *e, const char **s, size_t *n) {
  const char *q = skip_plain(p, e);
  *s = p;
  if (q < e && *q == '"') {
    *n = (size_t)(q - p);
    return q + 1;
  }
  return scan_string_rest(p, q, e, n);
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)? : jansson's grammar without the exponent,
 * which is left to jansson. What follows the literal is the caller's state's
 * business (a digit after "0" or a second '.' makes it give up). */
static const char *scan_number(const char *p, const char *e, smsg_pair *v) {
  const char *s = p;
  if (*p == '-') p++;
  if (p == e) return NULL;
  if (*p == '0') {
    p++;
  } else if (*p >= '1' && *p <= '9') {
    while (p < e && is_digit(*p)) p++;
  } else {
    return NULL;
  }
  size_t int_digits = (size_t)(p - s) - (*s == '-');
  v->type = SMSG_V_INT;
  if (p < e && *p == '.') {
    const char *f = ++p;
    while (p < e && is_digit(*p)) p++;
    if (p == f) return NULL;
    v->type = SMSG_V_REAL;
  }
  if (p < e && (*p == 'e' || *p == 'E')) return NULL;
  if ((size_t)(p - s) > SMSG_SCAN_NUM_MAX) return NULL;
  if (v->type == SMSG_V_INT && int_digits > SMSG_SCAN_INT_DIGITS_MAX) return NULL;
  v->val = s;
  v->val_len = (size_t)(p - s);
  return p;
}

static const char *scan_word(const char *p, const char *e, const char *w, size_t n, smsg_pair *v) {
  v->val = p;
  v->val_len = n;
  return (size_t)(e - p) >= n && !memcmp(p, w, n) ? p + n : NULL;
}

/* A value other than an array; '[' is handled by the states. */
static const char *scan_scalar(const char *p, const char *e, smsg_pair *v) {
  switch (*p) {
  case '"':
    v->type = SMSG_V_STRING;
    return scan_string(p + 1, e, &v->val, &v->val_len);
  case 't':
    v->type = SMSG_V_TRUE;
    return scan_word(p, e, "true", 4, v);
  case 'f':
    v->type = SMSG_V_FALSE;
    return scan_word(p, e, "false", 5, v);
  case 'n':
    v->type = SMSG_V_NULL;
    return scan_word(p, e, "null", 4, v);
  default:
    return scan_number(p, e, v);
  }
}

void smsg__scan_init(smsg_scan *s, const char *buf, size_t len) {
  s->p = buf;
  s->end = buf + len;
  s->state = SCAN_ROOT;
  s->root_array = false;
}

const char *smsg__scan_item_start(smsg_scan *s) {
  const char *p = s->p, *e = s->end;
  for (;;) {
    while (p < e && is_ws(*p)) p++;
    if (p == e) return NULL;
    switch (s->state) {
    case SCAN_ROOT:   /* a single object is the item; '[' opens the list */
      if (*p == '{') return s->p = p;
      if (*p != '[') return NULL;
      s->root_array = true;
      s->state = SCAN_ITEM_FIRST;
      s->p = ++p;
      break;
    case SCAN_ITEM_FIRST:
    case SCAN_ITEM:
      return *p == '{' ? (s->p = p) : NULL;
    case SCAN_ITEM_NEXT:
      if (*p != ',') return NULL;
      s->state = SCAN_ITEM;
      s->p = ++p;
      break;
    default:
      return NULL;
    }
  }
}

void smsg__scan_item_done(smsg_scan *s, const char *end) {
  s->p = end;
  s->state = s->root_array ? SCAN_ITEM_NEXT : SCAN_END;
}

static TD_COLD int give_up(smsg_scan *s) {
  s->p = s->end;
  s->state = SCAN_ROOT;   /* at the end, SCAN_ROOT gives up again */
  return SMSG_SCAN_GIVE_UP;
}

/* The state lives in a local while the loop runs. Two shortcuts skip a turn
 * of the loop in the common compact form: a key directly followed by ':'
 * goes to SCAN_VALUE, a scalar directly followed by ',' to SCAN_KEY. */
int smsg__scan_item(smsg_scan *s, smsg_item *it) {
  const char *p = s->p, *e = s->end;
  smsg_scan_state st = s->state;
  smsg_pair *v = NULL;   /* the pair being read */
  int np = 0;            /* it->npairs, stored when the item is done */
  for (;;) {
    if (p == e) {
      if (st != SCAN_END) return give_up(s);
      s->p = p;
      s->state = st;
      return SMSG_SCAN_DONE;
    }
    char c = *p;
    if ((unsigned char)c <= ' ') {
      if (!is_ws(c)) return give_up(s);
      p++;
      continue;
    }
    switch (st) {
    case SCAN_ROOT:
      if (c != '[' && c != '{') return give_up(s);
      s->root_array = c == '[';
      st = c == '[' ? SCAN_ITEM_FIRST : SCAN_KEY_FIRST;
      p++;
      break;
    case SCAN_ITEM_FIRST:
      if (c == ']') {
        st = SCAN_END;
        p++;
        break;
      }
      /* fall through */
    case SCAN_ITEM:
      if (c != '{') return give_up(s);
      st = SCAN_KEY_FIRST;
      p++;
      break;
    case SCAN_KEY_FIRST:
      if (c == '}') goto item_done;
      /* fall through */
    case SCAN_KEY:
      if (c != '"' || np == SMSG_SCAN_MAX_PAIRS) return give_up(s);
      v = &it->pairs[np++];
      if (!(p = scan_string(p + 1, e, &v->key, &v->key_len))) return give_up(s);
      if (p < e && *p == ':') {
        p++;
        st = SCAN_VALUE;
      } else {
        st = SCAN_COLON;
      }
      break;
    case SCAN_COLON:
      if (c != ':') return give_up(s);
      st = SCAN_VALUE;
      p++;
      break;
    case SCAN_VALUE:
      if (c == '[') {
        v->type = SMSG_V_ARRAY;
        v->val = p++;
        v->count = 0;
        st = SCAN_ELEM_FIRST;
        break;
      }
      if (!(p = scan_scalar(p, e, v))) return give_up(s);
      if (p < e && *p == ',') {
        p++;
        st = SCAN_KEY;
      } else {
        st = SCAN_PAIR_NEXT;
      }
      break;
    case SCAN_ELEM_FIRST:
      if (c == ']') goto array_done;
      /* fall through */
    case SCAN_ELEM: {
      const char *str;
      size_t n;
      if (c != '"' || !(p = scan_string(p + 1, e, &str, &n))) return give_up(s);
      v->count++;
      st = SCAN_ELEM_NEXT;
      break;
    }
    case SCAN_ELEM_NEXT:
      if (c == ']') goto array_done;
      if (c != ',') return give_up(s);
      st = SCAN_ELEM;
      p++;
      break;
    case SCAN_PAIR_NEXT:
      if (c == '}') goto item_done;
      if (c != ',') return give_up(s);
      st = SCAN_KEY;
      p++;
      break;
    case SCAN_ITEM_NEXT:
      if (c == ']') {
        st = SCAN_END;
        p++;
        break;
      }
      if (c != ',') return give_up(s);
      st = SCAN_ITEM;
      p++;
      break;
    case SCAN_END:
      return give_up(s);
    }
    continue;
  array_done:
    v->val_len = (size_t)(++p - v->val);
    st = SCAN_PAIR_NEXT;
    continue;
  item_done:
    it->npairs = np;
    s->p = p + 1;
    s->state = s->root_array ? SCAN_ITEM_NEXT : SCAN_END;
    return SMSG_SCAN_ITEM;
  }
}
